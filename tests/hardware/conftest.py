"""Test helpers: MobileNetV2-224 layer shapes in pure Python (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from haq_rl.hardware import LayerSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
HAQ_TABLE = REPO_ROOT.parent / "shared" / "reference" / "haq_mobilenetv2_cloud_latency_table.npy"


def conv_spec(name: str, cin: int, cout: int, k: int, s: int, h: int, groups: int = 1,
              batch: int = 1) -> LayerSpec:
    out = (h + 2 * (k // 2) - k) // s + 1
    kind = "conv" if groups == 1 else ("depthwise" if groups == cin == cout else "grouped")
    return LayerSpec(name, kind, cin, cout, k, s, groups, h, h, out, out, batch)


def mobilenetv2_224_specs(batch: int = 1) -> list[LayerSpec]:
    """The 53 quantizable layers of MobileNetV2 (width 1.0) at 224 px, module order."""
    specs = [conv_spec("features.0.0", 3, 32, 3, 2, 224, batch=batch)]
    h, cin, idx = 112, 32, 1
    for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                       [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
        for i in range(n):
            hid = cin * t
            if t != 1:
                specs.append(conv_spec(f"features.{idx}.expand", cin, hid, 1, 1, h, batch=batch))
            dw = conv_spec(f"features.{idx}.dw", hid, hid, 3, s if i == 0 else 1, h, groups=hid, batch=batch)
            specs += [dw, conv_spec(f"features.{idx}.project", hid, c, 1, 1, dw.out_h, batch=batch)]
            cin, h, idx = c, dw.out_h, idx + 1
    specs.append(conv_spec("features.18", 320, 1280, 1, 1, h, batch=batch))
    specs.append(LayerSpec("classifier", "linear", 1280, 1000, 1, 1, 1, 1, 1, 1, 1, batch))
    return specs


@pytest.fixture(scope="session")
def haq_table_path() -> Path:
    if not HAQ_TABLE.is_file():
        pytest.skip(f"HAQ's published table not found at {HAQ_TABLE} (../shared/reference is not "
                    "part of the repository)")
    return HAQ_TABLE
