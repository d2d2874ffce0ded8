"""How BitFusion energy scales with bits, per network, and where it goes.

For each network and input size: the energy of uniform B/B on every layer over 8/8
(no pinned layers), weight-only and activation-only 2-bit policies, and the share of
each term of the simulator's accounting (core, weight/input/output buffers, DRAM) at
8/8 and at 2/2. Pure cost-model arithmetic, no training (seconds).

    .venv/bin/python bench/bench_energy_scaling.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from haq_rl.hardware import bitfusion_schedule, load_profile  # noqa: E402
from haq_rl.models import build_model, extract_layer_specs  # noqa: E402

#: (model, input size, input channels, classes, batch): the mnist5k sizes of the shipped
#: envs and the ImageNet sizes of the papers (BitFusion's batch 16 for ResNet-18).
NETWORKS = [
    ("lenet5", 28, 1, 10, 1),
    ("resnet8", 28, 1, 10, 1),
    ("resnet18", 28, 1, 10, 1),
    ("mobilenetv2", 28, 1, 10, 1),
    ("resnet18", 224, 3, 1000, 1),
    ("resnet18", 224, 3, 1000, 16),
    ("mobilenetv2", 224, 3, 1000, 1),
]
PARTS = ("core", "wbuf", "ibuf", "obuf", "dram")


def _energy(specs: list, w: int, a: int, params: dict[str, Any]) -> dict[str, float]:
    total = dict.fromkeys(PARTS, 0.0)
    for spec in specs:
        breakdown = bitfusion_schedule(spec, w, a, params).energy_breakdown_uj
        for part in PARTS:
            total[part] += float(np.asarray(breakdown[part]).ravel()[0])
    return total


def main() -> None:
    params = dict(load_profile("bitfusion").params)
    rows = []
    for model, size, channels, classes, batch in NETWORKS:
        net = build_model(model, num_classes=classes, in_channels=channels, input_size=size)
        specs = extract_layer_specs(net, (channels, size, size), batch=batch)
        reference = _energy(specs, 8, 8, params)
        total8 = sum(reference.values())
        row: dict[str, Any] = {"network": model, "input": size, "batch": batch,
                               "energy_8/8_uJ": total8}
        for bits in (6, 4, 3, 2):
            row[f"{bits}/{bits}"] = sum(_energy(specs, bits, bits, params).values()) / total8
        row["w2/a8"] = sum(_energy(specs, 2, 8, params).values()) / total8
        row["w8/a2"] = sum(_energy(specs, 8, 2, params).values()) / total8
        low = _energy(specs, 2, 2, params)
        for part in PARTS:
            row[f"{part}_8/8"] = reference[part] / total8
        for part in PARTS:
            row[f"{part}_2/2"] = low[part] / total8
        rows.append(row)
        print(model, size, batch, f"{row['2/2']:.3f}", flush=True)
    path = write_results("energy_scaling", rows, "BitFusion energy over 8/8 (uniform on every layer) and its parts",
                         "python bench/bench_energy_scaling.py")
    print(path.read_text())


if __name__ == "__main__":
    main()
