"""Benchmark: time to build a full CostTable (bits 1..8 x 1..8) per hardware profile.

Models: ResNet-50 and MobileNetV2 at 224 px, layer shapes computed in pure Python
(no torch needed). Writes ``bench/results/costtable.csv`` and ``costtable.md``.

    .venv/bin/python bench/bench_costtable.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from haq_rl.hardware import CostTable, LayerSpec, load_profile, profile_names

RESULTS = Path(__file__).resolve().parent / "results"


def _conv(name: str, cin: int, cout: int, k: int, s: int, h: int, groups: int = 1,
          batch: int = 1) -> tuple[LayerSpec, int]:
    out = (h + 2 * (k // 2) - k) // s + 1
    kind = "conv" if groups == 1 else ("depthwise" if groups == cin == cout else "grouped")
    return LayerSpec(name, kind, cin, cout, k, s, groups, h, h, out, out, batch), out


def resnet50_specs(batch: int = 1) -> list[LayerSpec]:
    """The 54 Conv2d/Linear layers of torchvision's ResNet-50 at 224 px, in module order."""
    specs = []
    spec, h = _conv("conv1", 3, 64, 7, 2, 224, batch=batch)
    specs.append(spec)
    h = (h + 2 - 3) // 2 + 1  # 3x3/2 max-pool: 112 -> 56
    cin = 64
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            pre = f"layer{stage}.{b}"
            c1, _ = _conv(f"{pre}.conv1", cin, width, 1, 1, h, batch=batch)
            c2, h2 = _conv(f"{pre}.conv2", width, width, 3, s, h, batch=batch)  # stride on the 3x3 (v1.5)
            c3, _ = _conv(f"{pre}.conv3", width, width * 4, 1, 1, h2, batch=batch)
            specs += [c1, c2, c3]
            if b == 0:
                down, _ = _conv(f"{pre}.downsample.0", cin, width * 4, 1, s, h, batch=batch)
                specs.append(down)
            cin, h = width * 4, h2
    specs.append(LayerSpec("fc", "linear", 2048, 1000, 1, 1, 1, 1, 1, 1, 1, batch))
    return specs


def mobilenetv2_specs(batch: int = 1) -> list[LayerSpec]:
    """The 53 Conv2d/Linear layers of MobileNetV2 (width 1.0) at 224 px, in module order."""
    specs = []
    spec, h = _conv("features.0.0", 3, 32, 3, 2, 224, batch=batch)
    specs.append(spec)
    cin, idx = 32, 1
    for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                       [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
        for i in range(n):
            hid = cin * t
            if t != 1:
                specs.append(_conv(f"features.{idx}.expand", cin, hid, 1, 1, h, batch=batch)[0])
            dw, h2 = _conv(f"features.{idx}.dw", hid, hid, 3, s if i == 0 else 1, h, groups=hid, batch=batch)
            specs += [dw, _conv(f"features.{idx}.project", hid, c, 1, 1, h2, batch=batch)[0]]
            cin, h, idx = c, h2, idx + 1
    specs.append(_conv("features.18", 320, 1280, 1, 1, h, batch=batch)[0])
    specs.append(LayerSpec("classifier", "linear", 1280, 1000, 1, 1, 1, 1, 1, 1, 1, batch))
    return specs


MODELS = {"resnet50": resnet50_specs, "mobilenetv2": mobilenetv2_specs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for model, make in MODELS.items():
        for name in profile_names():
            profile = load_profile(name)
            specs = make(profile.batch)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                table = CostTable.build(specs, profile, max_bits=8)
                times.append(time.perf_counter() - start)
            lat8 = table.uniform_cost(8, "latency") if table.has("latency") else float("nan")
            lat4 = table.uniform_cost(4, "latency") if table.has("latency") else float("nan")
            rows.append({
                "model": model, "profile": name, "cost_model": profile.cost_model, "batch": profile.batch,
                "layers": len(specs), "repeats": args.repeats,
                "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
                "latency_ms_8_8": round(lat8, 3), "latency_ms_4_4": round(lat4, 3),
            })
            print(f"{model:12s} {name:12s} median {rows[-1]['median_s']:.4f} s "
                  f"(min {rows[-1]['min_s']:.4f} s over {args.repeats})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    # Atomic writes: a crashed run never leaves half a results file behind.
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".csv.tmp")
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, args.out / "costtable.csv")
    lines = [
        "| model | profile | cost model | batch | layers | median build (s) | min (s) | latency 8/8 (ms) | latency 4/4 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['profile']} | {r['cost_model']} | {r['batch']} | {r['layers']} | "
                     f"{r['median_s']:.4f} | {r['min_s']:.4f} | {r['latency_ms_8_8']} | {r['latency_ms_4_4']} |")
    lines += ["", f"Bits 1..8 x 1..8, median of {args.repeats} cold builds per row; "
              f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
              f"{os.cpu_count()} CPUs (shared). Command: `.venv/bin/python bench/bench_costtable.py`."]
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".md.tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, args.out / "costtable.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
