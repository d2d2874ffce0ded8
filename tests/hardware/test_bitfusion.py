import numpy as np
import pytest

from haq_rl.hardware import CostTable, LayerSpec, bitfusion_schedule, load_profile, perf_factor
from tests.hardware.conftest import mobilenetv2_224_specs

PARAMS = load_profile("bitfusion").params
BITS = np.arange(2, 9)


def test_perf_factor_steps():
    assert perf_factor(np.array(8), np.array(8)) == 1
    assert perf_factor(np.array(4), np.array(4)) == 4
    assert perf_factor(np.array(2), np.array(2)) == 16
    assert perf_factor(np.array(3), np.array(8)) == 2  # 3 bits speed up like 4
    assert perf_factor(np.array(5), np.array(8)) == 1  # 5..7 bits like 8
    assert perf_factor(np.array(1), np.array(1)) == 16  # below the 2-bit minimum


def test_compute_cycles_hand_computed():
    # 3x3 conv 256 -> 256 at 16x16, batch 1: whole-layer compute (tiles that divide the
    # layer) = ceil(256/32) * 256 pixels * 9 taps * ceil(256 / (16 pf)).
    spec = LayerSpec("c", "conv", 256, 256, 3, 1, 1, 16, 16, 16, 16)
    sched = bitfusion_schedule(spec, BITS, BITS, PARAMS)
    expected = {8: 8 * 256 * 9 * 16, 4: 8 * 256 * 9 * 4, 2: 8 * 256 * 9 * 1}
    for bits, cycles in expected.items():
        assert sched.compute_cycles[bits - 2] == cycles
    # Speed-up steps at 2/4/8 bits only: 5..8 equal compute, 3 and 4 equal.
    c = sched.compute_cycles
    assert c[3] == c[4] == c[5] == c[6] and c[1] == c[2] and c[0] < c[1] < c[3]
    total = sched.cycles
    assert total[6] / total[2] > 2.5 and total[2] / total[0] > 2.0  # 8 -> 4 -> 2 bits
    assert (total >= c).all()


def test_memory_bound_fc_stalls_and_dram_energy():
    fc = LayerSpec("fc", "linear", 2048, 1000, 1, 1, 1, 1, 1, 1, 1)
    sched = bitfusion_schedule(fc, BITS, BITS, PARAMS)
    assert sched.memory_bound.all()
    assert (sched.stall_cycles > sched.compute_cycles).all()
    # cycles ~ DRAM bits / 192 per cycle: weights dominate, so cost grows with w.
    assert np.allclose(sched.cycles, sched.dram_bits / 192, rtol=0.02)
    assert sched.energy_breakdown_uj["dram"][6] > 0.9 * sched.energy_uj[6]
    total = sum(sched.energy_breakdown_uj.values())
    assert np.allclose(total, sched.energy_uj)


def test_large_activation_layers_dram_dominated():
    conv = LayerSpec("c1", "conv", 3, 32, 3, 2, 1, 224, 224, 112, 112)
    sched = bitfusion_schedule(conv, 8, 8, PARAMS)
    parts = sched.energy_breakdown_uj
    assert parts["dram"] > 0.5 * sched.energy_uj
    assert parts["dram"] > max(v for k, v in parts.items() if k != "dram")


def test_depthwise_as_single_channel_convs():
    dw = LayerSpec("dw", "depthwise", 32, 32, 3, 1, 32, 112, 112, 112, 112)
    sched = bitfusion_schedule(dw, BITS, BITS, PARAMS)
    # 32 channels x 12544 pixels x ceil(1/32) x ceil(9 / (16 pf)) = 1: no gain from fewer bits.
    assert (sched.compute_cycles == 32 * 12544).all()


def test_mobilenetv2_table_and_min_bits():
    table = CostTable.build(mobilenetv2_224_specs(1), load_profile("bitfusion"))
    assert np.isfinite(table.latency_ms).all() and np.isfinite(table.energy_uj).all()
    assert np.array_equal(table.cycles[:, 0, :], table.cycles[:, 1, :])  # 1 bit costed as 2
    assert set(np.unique(table.bound)) <= {"compute", "memory"}
    assert table.min_bits == 2


def test_no_tiling_fits():
    params = dict(PARAMS, wgt_buffer_kib=0.001, act_buffer_kib=0.001, out_buffer_kib=0.001)
    with pytest.raises(ValueError, match="fits"):
        bitfusion_schedule(LayerSpec("c", "conv", 64, 64, 3, 1, 1, 8, 8, 8, 8), 8, 8, params)
