"""Does the measured onnxruntime table predict what the exported model costs end to end?

For N policies (float, uniform 8/8, uniform 4/4, a searched one and random ones) this bench
compares the *predicted* latency ratio, read from the table ``haq-rl profile --measure
ort-cpu`` writes (each layer timed alone), with the *measured* ratio of the whole model
exported with ``--runtime ort`` and timed in onnxruntime, both relative to the float model:

    predicted = sum_l table[l, w_l, a_l] / sum_l float_l
    measured  = median time(exported policy) / median time(float model), same round

The table holds the quantizable layers only; the rest of the model (residual adds, pooling,
the input's quantization) is what the whole float model takes beyond its layers' sum. The
second prediction adds that rest, unchanged, to both sums (it orders the policies the same).

It reports the median relative error and the Spearman over the policies, as the hardware
bar does for the BitFusion simulator.

    .venv/bin/python bench/bench_costmodel_ort.py --batches 1 64 --random 8 --rounds 3

Every model is timed in every round, one after the other (1 thread); a round's ratios are
to the float model of the same round, and the table gives the median over the rounds and
the spread, so a noisy shared machine shows as a spread.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ort_session, write_results  # noqa: E402

from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.export.qdq_graph import torch_export  # noqa: E402
from haq_rl.finetune import uniform_policy  # noqa: E402
from haq_rl.hardware.measured import TABLE_FILE, measure_profile  # noqa: E402
from haq_rl.hardware.ort_timing import median_ms  # noqa: E402
from haq_rl.quant import QuantPolicy  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402

#: A searched policy of the default model (the guided agent at budget 0.3, bench_search).
SEARCHED = RESULTS / "supernet_quality_runs" / "b0.3-guided-s0" / "best_policy.json"




def policies(task: Any, randoms: int, seed: int) -> dict[str, QuantPolicy | None]:
    """Float (None), uniform 8/8 and 4/4, the searched policy and ``randoms`` random ones."""
    chosen: dict[str, QuantPolicy | None] = {"float": None, "uniform 8/8": uniform_policy(task, 8),
                                             "uniform 4/4": uniform_policy(task, 4)}
    if SEARCHED.is_file():
        chosen["searched (guided, 0.3)"] = QuantPolicy.from_json(SEARCHED)
    rng = np.random.default_rng(seed)
    layers = len(task.layers)
    for index in range(randoms):
        # A random share of the layers keeps 8-bit activations, so the policies spread
        # between all-INT8 and all-clamped.
        share = rng.uniform(0.0, 1.0)
        w = rng.integers(2, 9, layers)
        a = np.where(rng.uniform(size=layers) < share, 8, rng.integers(2, 8, layers))
        chosen[f"random {index}"] = QuantPolicy.from_arrays(task.layer_names, w, a, name=f"random {index}")
    return chosen


def predicted_ratio(by_cell: pd.Series, layer_float_ms: float, policy: QuantPolicy | None, names: list[str]) -> float:
    """The table's latency of ``policy`` (``by_cell``: latency by layer, w_bits, a_bits) over
    its float latency ``layer_float_ms`` (1.0 for the float model)."""
    if policy is None:
        return 1.0
    total = sum(float(by_cell[(name, int(w), int(a))])
                for name, w, a in zip(names, policy.w_bits, policy.a_bits, strict=True))
    return total / layer_float_ms


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="haq_rl/MobileNetV2Edge-v1")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--random", type=int, default=8, help="random policies besides the four named ones")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50, help="runs per median (batch > 1: a fifth)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    task = load_task(args.env)
    work = Path(tempfile.mkdtemp(prefix="bench-costmodel-"))
    chosen = policies(task, args.random, args.seed)
    models: dict[str, Path] = {}
    buffer = io.BytesIO()
    torch_export(task.model.cpu().eval(), task.splits.test.tensors[0][:1], buffer, 21)
    models["float"] = work / "float.onnx"
    models["float"].write_bytes(buffer.getvalue())
    for index, (name, policy) in enumerate(chosen.items()):
        if policy is None:
            continue
        policy.to_json(work / f"p{index}.json", budget=1.0)
        models[name] = export_onnx(work / f"p{index}.json", out=work / f"p{index}.onnx", runtime="ort", task=task).path
        print(f"exported {name}", flush=True)
    sessions = {name: ort_session(path) for name, path in models.items()}
    images = task.splits.test.tensors[0].numpy()
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for batch in args.batches:
        table_dir = work / f"table-b{batch}"
        specs = [layer.with_batch(batch) for layer in task.layers]
        measure_profile(specs, batch, table_dir, model_name=task.spec.model, repeats=max(5, args.repeats // 2))
        table = pd.read_csv(table_dir / TABLE_FILE)
        feed = {"input": images[:batch]}
        repeats = args.repeats if batch == 1 else max(5, args.repeats // 5)
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, run_session in sessions.items():
                times[name].append(median_ms(run_session, feed, repeats, warmup=3))
        by_cell = table.set_index(["layer", "w_bits", "a_bits"])["latency"]
        layer_float_ms = float(table.groupby("layer")["float_latency"].first().sum())
        rest_ms = max(0.0, statistics.median(times["float"]) - layer_float_ms)
        predicted, measured, with_rest = [], [], []
        for name in models:
            ratios = [mine / base for mine, base in zip(times[name], times["float"], strict=True)]
            want = predicted_ratio(by_cell, layer_float_ms, chosen[name], task.layer_names)
            got = statistics.median(ratios)
            want_rest = (want * layer_float_ms + rest_ms) / (layer_float_ms + rest_ms)
            predicted.append(want)
            measured.append(got)
            with_rest.append(want_rest)
            rows.append({"batch": batch, "policy": name, "predicted_ratio": want, "measured_ratio": got,
                         "measured_spread": f"{min(ratios):.3f}-{max(ratios):.3f}",
                         "error_pct": 100 * (want - got) / got, "predicted_with_rest": want_rest,
                         "error_with_rest_pct": 100 * (want_rest - got) / got,
                         "measured_ms": statistics.median(times[name])})
        errors = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
        errors_rest = [abs(p - m) / m for p, m in zip(with_rest, measured, strict=True)]
        quantized = [i for i, name in enumerate(models) if name != "float"]
        summary.append({
            "batch": batch, "policies": len(models),
            "median_abs_error_pct": 100 * statistics.median(errors),
            "max_abs_error_pct": 100 * max(errors),
            "median_abs_error_with_rest_pct": 100 * statistics.median(errors_rest),
            "spearman": float(spearmanr(predicted, measured).statistic),
            "spearman_quantized_only": float(spearmanr([predicted[i] for i in quantized],
                                                       [measured[i] for i in quantized]).statistic),
            "table_layer_sum_vs_model_float_ms": layer_float_ms / statistics.median(times["float"]),
        })
    import onnxruntime

    command = "python bench/bench_costmodel_ort.py " + " ".join(sys.argv[1:])
    title = (f"onnxruntime {onnxruntime.__version__} (CPU, 1 thread) on {task.spec.id}: predicted vs measured "
             f"latency ratio to float, {args.rounds} rounds")
    write_results("costmodel_ort_policies", rows, title + ", per policy", command)
    path = write_results("costmodel_ort", summary, title, command)
    print((RESULTS / "costmodel_ort_policies.md").read_text())
    print(path.read_text())


if __name__ == "__main__":
    main()
