import numpy as np
import pytest

from haq_rl.errors import ConfigError, DataFormatError, PolicyError
from haq_rl.hardware import OBJECTIVES, CostTable, LayerSpec, load_profile
from tests.hardware.conftest import mobilenetv2_224_specs

SPECS = mobilenetv2_224_specs(1)


@pytest.fixture(scope="module")
def edge():
    return CostTable.build(SPECS, load_profile("bismo-edge"))


def test_arrays_and_names(edge):
    L = len(SPECS)
    for name in ("latency_ms", "cycles", "energy_uj", "size_bytes", "bops", "bound"):
        assert getattr(edge, name).shape == (L, 8, 8)
    assert edge.layer_names[0] == "features.0.0" and edge.kinds[1] == "depthwise"
    for objective in OBJECTIVES:
        assert edge.objective(objective).shape == (L, 8, 8)
    assert edge.size_bytes[-1, 7, 0] == 1280 * 1000  # 8-bit FC weights
    assert edge.bops[-1, 1, 3] == 1280 * 1000 * 2 * 4


def test_policy_cost_single_and_many(edge):
    L = len(SPECS)
    w = np.full(L, 4)
    a = np.full(L, 6)
    expected = edge.latency_ms[np.arange(L), 3, 5].sum()
    assert edge.policy_cost(w, a, "latency") == pytest.approx(expected)
    rng = np.random.default_rng(0)
    W = rng.integers(1, 9, (50, L))
    A = rng.integers(1, 9, (50, L))
    many = edge.policy_cost(W, A, "energy")
    assert many.shape == (50,)
    assert many[7] == pytest.approx(edge.policy_cost(W[7], A[7], "energy"))
    assert edge.uniform_cost(8, "size") == pytest.approx(edge.size_bytes[:, 7, 7].sum())
    lo, hi = edge.cost_range("latency")
    assert lo == pytest.approx(edge.uniform_cost(1)) and hi == pytest.approx(edge.uniform_cost(8))


def test_policy_errors(edge):
    L = len(SPECS)
    with pytest.raises(PolicyError, match="shape"):
        edge.policy_cost(np.full(L - 1, 4), np.full(L - 1, 4))
    with pytest.raises(PolicyError, match="1..8"):
        edge.policy_cost(np.full(L, 9), np.full(L, 4))
    with pytest.raises(LookupError):
        edge.policy_cost(np.full(L, 4), np.full(L, 4), "speed")


def test_proxies():
    bops = CostTable.build(SPECS, load_profile("bops"))
    with pytest.raises(ConfigError, match="no latency"):
        bops.objective("latency")
    assert bops.has("bops") and not bops.has("energy")
    assert (bops.bound == "proxy").all()
    size = CostTable.build(SPECS, load_profile("size"), kmeans_codebooks=True)
    assert size.size_bytes[0, 1, 0] == (3 * 9 * 32 * 2 + 4 * 32) / 8


def test_repeated_shapes_share_costs():
    spec = SPECS[5]
    twin = LayerSpec(**{**spec.to_dict(), "name": "twin"})
    table = CostTable.build([spec, twin], load_profile("bismo-cloud"))
    assert np.array_equal(table.cycles[0], table.cycles[1])


def _lookup_profile(tmp_path, table_name, unit="cycles"):
    text = (f"name: mylookup\ndescription: measured\nmodel: lookup\nmin_bits: 1\nmax_bits: 8\n"
            f"params:\n  table: {table_name}\n  unit: {unit}\n  clock_mhz: 100\n")
    path = tmp_path / "mylookup.yaml"
    path.write_text(text)
    return load_profile(path)


def test_lookup_npy_relative_path(tmp_path):
    reference = CostTable.build(SPECS, load_profile("bismo-edge")).cycles
    np.save(tmp_path / "t.npy", reference)
    table = CostTable.build(SPECS, _lookup_profile(tmp_path, "t.npy"))
    assert np.array_equal(table.cycles, reference)
    assert np.allclose(table.latency_ms, reference / 100e3)
    assert (table.bound == "measured").all() and np.isnan(table.energy_uj).all()
    with pytest.raises(DataFormatError, match="has 53 layers but the model has 52"):
        CostTable.build(SPECS[:-1], _lookup_profile(tmp_path, "t.npy"))


def test_lookup_csv_with_energy(tmp_path):
    specs = SPECS[:2]
    lines = ["layer,w_bits,a_bits,latency,energy"]
    for i, spec in enumerate(specs):
        for w in range(1, 9):
            for a in range(1, 9):
                name = spec.name if i else str(i)
                lines.append(f"{name},{w},{a},{w * a * (i + 1)},{w + a}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    table = CostTable.build(specs, _lookup_profile(tmp_path, "t.csv", unit="ms"))
    assert table.latency_ms[1, 2, 3] == 3 * 4 * 2
    assert table.energy_uj[0, 7, 7] == 16
    assert np.isclose(table.cycles[0, 0, 0], 100e3)


def test_lookup_missing_file(tmp_path):
    from haq_rl.errors import MissingPathError
    with pytest.raises(MissingPathError):
        CostTable.build(SPECS, _lookup_profile(tmp_path, "absent.npy"))
