import numpy as np
import pytest

from haq_rl.hardware import (
    CostTable,
    compare_tables,
    load_profile,
    pearson,
    rankdata,
    relative_error,
    spearman,
)
from tests.hardware.conftest import mobilenetv2_224_specs


def test_rankdata_ties_and_spearman():
    assert np.array_equal(rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    x = np.arange(20.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert np.allclose(relative_error([11, 9], [10, 10]), 0.1)


def test_explains_haq_cloud_table(haq_table_path):
    """Acceptance: bismo-cloud reproduces HAQ's published MobileNetV2 table."""
    reference = np.load(haq_table_path)
    table = CostTable.build(mobilenetv2_224_specs(16), load_profile("bismo-cloud"))
    result = compare_tables(table.cycles, reference, policies=1000, seed=0)
    assert result.median_rel_error <= 0.05
    assert result.spearman_policies >= 0.99
    assert result.pearson_entries >= 0.999
    for ours, ref in result.uniform_totals.values():
        assert abs(ours - ref) / ref < 0.03


def test_torch_extraction_matches_pure_python(haq_table_path):
    models = pytest.importorskip("haq_rl.models", reason="haq_rl.models needs torch")
    if not hasattr(models, "extract_layer_specs"):
        pytest.skip("haq_rl.models.extract_layer_specs not written yet")
    model = models.build_model("mobilenetv2", num_classes=1000, in_channels=3, input_size=224)
    specs = models.extract_layer_specs(model, (3, 224, 224), batch=16)
    ours = mobilenetv2_224_specs(16)
    assert len(specs) == len(ours) == 53
    strip = [(s.kind, s.in_channels, s.out_channels, s.kernel, s.stride, s.groups, s.in_h, s.out_h,
              s.batch) for s in specs]
    assert strip == [(s.kind, s.in_channels, s.out_channels, s.kernel, s.stride, s.groups, s.in_h,
                      s.out_h, s.batch) for s in ours]
    cycles = CostTable.build(specs, load_profile("bismo-cloud")).cycles
    assert compare_tables(cycles, np.load(haq_table_path)).median_rel_error <= 0.05
