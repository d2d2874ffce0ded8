import numpy as np

from haq_rl.hardware import CostTable, LayerSpec, bismo_cost, load_profile
from tests.hardware.conftest import mobilenetv2_224_specs

BITS = np.arange(1, 9)
W, A = BITS[:, None], BITS[None, :]


def test_hand_computed_conv_cloud():
    # 1x1 conv 96 -> 576 at 14x14, batch 16 on 16x256x16, 256 bits/cycle, weights once per image:
    # kt = 1, Tn = 16, Nt = 196 -> 13 column tiles, 36 row tiles.
    params = load_profile("bismo-cloud").params
    spec = LayerSpec("c", "conv", 96, 576, 1, 1, 1, 14, 14, 14, 14, batch=16)
    cost = bismo_cost(spec, 4, 2, params)
    ex = 16 * 1 * 36 * 13 * 4 * 2
    af = 16 * 1 * 196 * 2
    wf = 16 * 1 * (576 + 13 - 1) * 4
    assert cost.cycles == max(ex, af, wf) == ex
    assert cost.bound == "compute"
    assert np.isclose(cost.latency_ms, ex / 200e3)
    assert cost.energy_uj > 0


def test_hand_computed_linear_and_depthwise():
    params = load_profile("bismo-cloud").params
    fc = LayerSpec("fc", "linear", 1280, 1000, 1, 1, 1, 1, 1, 1, 1, batch=16)
    # Tn = 1, Nt = 16, kt = 5: WF = 5 * 1000 * w (flat in a) as in HAQ's table row.
    cost = bismo_cost(fc, W, A, params)
    assert np.array_equal(cost.cycles[:, 0], 5000 * BITS)
    assert (cost.bound[:7, :7] == "weight-fetch").all()
    dw = LayerSpec("dw", "depthwise", 96, 96, 3, 2, 96, 112, 112, 56, 56, batch=16)
    # 6 blocks of 16 channels, K = 144 -> kt = 1; AF = 6 * 16 * 3136 * a.
    cost = bismo_cost(dw, W, A, params)
    assert np.array_equal(cost.cycles[0], 6 * 16 * 3136 * BITS)
    assert (cost.bound[:, 0] == "activation-fetch").all()


def _tables():
    edge = CostTable.build(mobilenetv2_224_specs(1), load_profile("bismo-edge"))
    cloud = CostTable.build(mobilenetv2_224_specs(16), load_profile("bismo-cloud"))
    return edge, cloud


def test_edge_depthwise_memory_bound():
    edge, _ = _tables()
    dw = [i for i, k in enumerate(edge.kinds) if k == "depthwise"]
    memory = 0
    for i in dw:
        c = edge.cycles[i]
        grows_a = c[3, 7] / c[3, 1]       # w=4: a 2 -> 8
        grows_w = c[7, 3] / c[1, 3]       # a=4: w 2 -> 8
        if edge.bound[i, 3, 3] == "activation-fetch" and grows_a >= 3.9 and grows_w < 1.1:
            memory += 1
    assert memory >= 0.8 * len(dw), f"only {memory} of {len(dw)} depthwise layers memory bound"


def test_cloud_large_pointwise_compute_bound():
    _, cloud = _tables()
    big_1x1 = [i for i, s in enumerate(cloud.specs)
               if s.kind == "conv" and s.kernel == 1 and s.out_channels >= 96 and s.out_h >= 14]
    assert len(big_1x1) >= 8
    for i in big_1x1:
        assert cloud.bound[i, 7, 7] == "compute", cloud.specs[i]
        # cost ~ w * a at high bits
        assert np.isclose(cloud.cycles[i, 7, 7] / cloud.cycles[i, 3, 7], 2.0, rtol=0.01)
        assert np.isclose(cloud.cycles[i, 7, 7] / cloud.cycles[i, 7, 3], 2.0, rtol=0.01)


def test_edge_vs_cloud_energy_and_per_tile_refetch():
    params = dict(load_profile("bismo-edge").params)
    spec = LayerSpec("c", "conv", 64, 64, 3, 1, 1, 56, 56, 56, 56)
    once = bismo_cost(spec, W, A, params)
    params["weight_fetch"] = "per_tile"
    per_tile = bismo_cost(spec, W, A, params)
    assert (per_tile.cycles >= once.cycles).all() and (per_tile.energy_uj > once.energy_uj).all()
