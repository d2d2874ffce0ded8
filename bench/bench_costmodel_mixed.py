"""Does the measured table predict mixed float/INT8 models (issue 38, items 2 and 4)?

Policies keep a random share of the layers float (w_bits 32) and run the rest as INT8
(``--runtime ort``); each is exported and timed whole, side by side with the float model, and
compared with two predictions from tables measured on this machine, both as ratios to the
float model's time:

- ``layer sum``: each layer's time alone (the measured table: its float column for a float
  layer, its INT8 cell for an INT8 one), nothing else;
- ``with boundaries``: plus, where a float layer meets an INT8 one in layer order, the
  boundary the export writes there, timed alone on that tensor's shape (a QuantizeLinear in
  front of an INT8 layer after a float one or the input, a per-channel DequantizeLinear in
  front of a float layer after an INT8 one), plus the model outside its quantizable layers in
  each form (the whole float model less its layers' float sum; the whole all-INT8 model less
  its layers' INT8 sum and its input's Q), mixed by the policy's share of INT8 layers.

The float model and the all-INT8 policy calibrate the second prediction's rest (they are
exact by construction): the medians and Spearman are over the mixed policies only.

    .venv/bin/python bench/bench_costmodel_mixed.py --batches 1 64 --policies 20 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ort_session, write_results  # noqa: E402

from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.export.layer_pattern import boundary_model, call_overhead_model  # noqa: E402
from haq_rl.export.qdq_graph import torch_export  # noqa: E402
from haq_rl.hardware.layer_spec import LayerSpec  # noqa: E402
from haq_rl.hardware.measured import TABLE_FILE, measure_profile  # noqa: E402
from haq_rl.hardware.ort_timing import median_ms, time_boundary  # noqa: E402
from haq_rl.quant import QuantPolicy  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402

FLOAT_BITS = 32


def input_shape(spec: LayerSpec, batch: int) -> tuple[int, ...]:
    """The shape of a layer's input tensor (a Linear on tokens reads batch x tokens rows)."""
    if spec.kind == "linear":
        return (batch * max(1, spec.in_h * spec.in_w), spec.in_channels)
    return (batch, spec.in_channels, spec.in_h, spec.in_w)


def mixed_policies(task: Any, count: int, seed: int) -> dict[str, QuantPolicy]:
    """All-INT8 (8/8) and ``count`` policies with a random share (10-90 %) of float layers, INT8
    weights of 4-8 bits elsewhere (activations at 8)."""
    rng = np.random.default_rng(seed)
    names = task.layer_names
    chosen = {"all INT8": QuantPolicy.uniform(names, 8, 8, name="all INT8")}
    while len(chosen) < count + 1:
        share = rng.uniform(0.1, 0.9)
        floats = rng.uniform(size=len(names)) < share
        if floats.all() or not floats.any():
            continue
        w = np.where(floats, FLOAT_BITS, rng.integers(4, 9, len(names)))
        a = np.where(floats, FLOAT_BITS, 8)
        label = f"mixed {len(chosen) - 1} ({int(floats.sum())} float)"
        chosen[label] = QuantPolicy.from_arrays(names, w, a, name=label)
    return chosen


def predict(policy: QuantPolicy | None, names: list[str], by_cell: pd.Series, floats_ms: dict[str, float],
            q_ms: list[float], dq_ms: list[float]) -> tuple[float, float, float]:
    """(layer-sum ms, boundary ms, INT8 share) of a policy (None: the float model)."""
    layers = 0.0
    boundaries = 0.0
    integer = [False] * len(names) if policy is None else [int(w) < FLOAT_BITS for w in policy.w_bits]
    for index, name in enumerate(names):
        if integer[index]:
            layers += float(by_cell[(name, int(policy.w_bits[index]), int(policy.a_bits[index]))])  # type: ignore[union-attr]
            if index == 0 or not integer[index - 1]:
                boundaries += q_ms[index]
        else:
            layers += floats_ms[name]
            if index > 0 and integer[index - 1]:
                boundaries += dq_ms[index]
    return layers, boundaries, sum(integer) / len(names)


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="haq_rl/MobileNetV2OrtCpu-v0")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--policies", type=int, default=20, help="mixed float/INT8 policies")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="runs per median (batch > 1: a fifth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-images", type=int, default=1000,
                        help="test images of the export's agreement check")
    args = parser.parse_args()
    task = load_task(args.env, weight_method="linear", pin_first_last=False)
    # The export checks onnxruntime against PyTorch on the test split; timing is this bench's
    # subject, so the check runs on its first --check-images (the whole split took a minute per
    # export on a shared 2-core machine).
    inputs, labels = task.splits.test.tensors
    test = TensorDataset(inputs[:args.check_images], labels[:args.check_images])
    task.splits = dataclasses.replace(task.splits, test=test)
    work = Path(tempfile.mkdtemp(prefix="bench-costmodel-mixed-"))
    chosen: dict[str, QuantPolicy | None] = {"float": None, **mixed_policies(task, args.policies, args.seed)}
    models: dict[str, Path] = {}
    buffer = io.BytesIO()
    torch_export(task.model.cpu().eval(), task.splits.test.tensors[0][:1], buffer, 21)
    models["float"] = work / "float.onnx"
    models["float"].write_bytes(buffer.getvalue())
    for index, (name, policy) in enumerate(chosen.items()):
        if policy is None:
            continue
        policy.to_json(work / f"p{index}.json", budget=1.0)
        result = export_onnx(work / f"p{index}.json", out=work / f"p{index}.onnx", runtime="ort", task=task,
                             allow_mismatch=True)
        models[name] = result.path
        print(f"exported {name}: {result.integer_kernels} integer kernels, agreement {100 * result.agreement:.2f} %",
              flush=True)
    sessions = {name: ort_session(path) for name, path in models.items()}
    images = task.splits.test.tensors[0].numpy()
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    names = task.layer_names
    for batch in args.batches:
        repeats = args.repeats if batch == 1 else max(5, args.repeats // 5)
        table_dir = work / f"table-b{batch}"
        measure_profile([layer.with_batch(batch) for layer in task.layers], batch, table_dir,
                        model_name=task.spec.model, repeats=repeats)
        table = pd.read_csv(table_dir / TABLE_FILE)
        by_cell = table.set_index(["layer", "w_bits", "a_bits"])["latency"]
        floats_ms = table.groupby("layer")["float_latency"].first().to_dict()
        edges = [time_boundary(input_shape(layer, batch), repeats, 3, boundary_model, call_overhead_model)
                 for layer in task.layers]
        q_ms, dq_ms = [q for q, _ in edges], [dq for _, dq in edges]
        feed = {"input": images[:batch]}
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, session in sessions.items():
                times[name].append(median_ms(session, feed, repeats, warmup=3))
        whole = {name: statistics.median(values) for name, values in times.items()}
        parts = {name: predict(policy, names, by_cell, floats_ms, q_ms, dq_ms) for name, policy in chosen.items()}
        rest_float = whole["float"] - parts["float"][0]
        rest_int8 = whole["all INT8"] - parts["all INT8"][0] - parts["all INT8"][1]
        float_sum = parts["float"][0]
        fastest = {name: min(values) for name, values in times.items()}
        for name in models:
            layers, boundaries, share = parts[name]
            ratios = [mine / base for mine, base in zip(times[name], times["float"], strict=True)]
            measured = statistics.median(ratios)
            # The least disturbed round of each model: on a shared machine interference only
            # ever adds time, so the fastest round is the closest to the model's own cost.
            measured_fastest = fastest[name] / fastest["float"]
            plain = layers / float_sum
            full = (layers + boundaries + (1 - share) * rest_float + share * rest_int8) / whole["float"]
            rows.append({"batch": batch, "policy": name, "int8_share": share, "measured_ratio": measured,
                         "measured_spread": f"{min(ratios):.3f}-{max(ratios):.3f}",
                         "fastest_round_ratio": measured_fastest,
                         "layer_sum_ratio": plain, "layer_sum_error_pct": 100 * (plain - measured) / measured,
                         "with_boundaries_ratio": full, "with_boundaries_error_pct": 100 * (full - measured) / measured,
                         "boundary_ms": boundaries, "measured_ms": whole[name]})
        mixed = [row for row in rows if row["batch"] == batch and row["policy"].startswith("mixed")]
        measured_ratios = [row["measured_ratio"] for row in mixed]
        fastest_ratios = [row["fastest_round_ratio"] for row in mixed]
        for kind in ("layer_sum", "with_boundaries"):
            predicted = [row[f"{kind}_ratio"] for row in mixed]
            fastest_errors = [abs(100 * (p - m) / m) for p, m in zip(predicted, fastest_ratios, strict=True)]
            summary.append({
                "batch": batch, "prediction": kind, "mixed_policies": len(mixed),
                "median_abs_error_pct": statistics.median(abs(row[f"{kind}_error_pct"]) for row in mixed),
                "max_abs_error_pct": max(abs(row[f"{kind}_error_pct"]) for row in mixed),
                "spearman": float(spearmanr(predicted, measured_ratios).statistic),
                "fastest_round_median_error_pct": statistics.median(fastest_errors),
                "fastest_round_spearman": float(spearmanr(predicted, fastest_ratios).statistic),
                "float_model_ms": whole["float"], "rest_float_ms": rest_float, "rest_int8_ms": rest_int8,
            })
        print(pd.DataFrame([row for row in summary if row["batch"] == batch]).to_string(index=False), flush=True)
    import onnxruntime

    command = "python bench/bench_costmodel_mixed.py " + " ".join(sys.argv[1:])
    title = (f"onnxruntime {onnxruntime.__version__} (CPU, 1 thread) on {task.spec.id}: mixed float/INT8 policies, "
             f"predicted vs measured latency ratio to float, {args.rounds} rounds")
    write_results("costmodel_mixed_policies", rows, title + ", per policy", command)
    path = write_results("costmodel_mixed", summary, title, command)
    print((RESULTS / "costmodel_mixed_policies.md").read_text())
    print(path.read_text())


if __name__ == "__main__":
    main()
