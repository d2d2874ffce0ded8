"""What a CPU runtime makes of the exported models: onnxruntime latency of the float model,
the reference export (exact simulation) and the ``--runtime ort`` export (integer kernels),
each for all-INT8 (uniform 8/8, post-training) and the run's searched policy (its fine-tuned
checkpoint).

    .venv/bin/python bench/bench_export.py runs/default --rounds 3
    .venv/bin/python bench/bench_export.py runs/ortcpu --rounds 3 --name export_ortcpu

Every model is timed in every round, one after the other (onnxruntime, CPU, 1 thread,
batch 1 and batch 256, after warm-up); a round's ratios are to the float model of the same
round, and the table gives the median ratio over the rounds and its spread (min-max), so
a noisy shared machine shows as a spread, not as a bias.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ort_session, write_results  # noqa: E402

from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.export.qdq_graph import torch_export  # noqa: E402
from haq_rl.finetune import uniform_policy  # noqa: E402
from haq_rl.hardware.cpu import instruction_set  # noqa: E402
from haq_rl.hardware.ort_timing import median_ms  # noqa: E402
from haq_rl.run.layout import CONFIG_FILE  # noqa: E402
from haq_rl.task.spec import TaskSpec  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", nargs="?", default="runs/default")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of timing every model (the spread)")
    parser.add_argument("--repeats", type=int, default=100, help="runs per median at batch 1 (batch 256: 1/10)")
    parser.add_argument("--name", default="export_runtime", help="result file name (results/<name>.*)")
    args = parser.parse_args()
    run = Path(args.run_dir)
    task = load_task(TaskSpec.from_dict(json.loads((run / CONFIG_FILE).read_text())["env"]))
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    buffer = io.BytesIO()
    torch_export(task.model.cpu().eval(), task.splits.test.tensors[0][:1], buffer, 21)
    (work / "float.onnx").write_bytes(buffer.getvalue())
    shutil.copy(run / CONFIG_FILE, work / CONFIG_FILE)
    uniform_policy(task, 8).to_json(work / "int8.json", budget=1.0)
    models: dict[str, tuple[Path, Any]] = {"float": (work / "float.onnx", None)}
    for runtime in ("reference", "ort"):
        models[f"all-INT8, {runtime}"] = (work / f"int8_{runtime}.onnx", export_onnx(
            work / "int8.json", out=work / f"int8_{runtime}.onnx", runtime=runtime, task=task))
        models[f"searched, {runtime}"] = (work / f"searched_{runtime}.onnx", export_onnx(
            run, out=work / f"searched_{runtime}.onnx", runtime=runtime, task=task))
    # The VNNI-only form beside the portable default: its speed, and what it costs a CPU without VNNI.
    for name, source in (("all-INT8", work / "int8.json"), ("searched", run)):
        out = work / f"{name}_vnni.onnx"
        models[f"{name}, ort --isa vnni"] = (out, export_onnx(source, out=out, runtime="ort", isa="vnni", task=task,
                                                              allow_mismatch=True))
    sessions = {name: ort_session(path) for name, (path, _) in models.items()}
    images = task.splits.test.tensors[0].numpy()
    feeds = {1: {"input": images[:1]}, 256: {"input": images[:256]}}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch, repeats in ((1, args.repeats), (256, max(3, args.repeats // 10))):
            for name, run_session in sessions.items():
                times.setdefault((name, batch), []).append(median_ms(run_session, feeds[batch], repeats, warmup=3))
    rows = []
    for name, (path, result) in models.items():
        row: dict[str, Any] = {"model": name, "file_kib": round(path.stat().st_size / 1024)}
        for batch in (1, 256):
            ratios = [mine / base for mine, base in zip(times[(name, batch)], times[("float", batch)], strict=True)]
            row[f"batch{batch}_ms"] = statistics.median(times[(name, batch)])
            row[f"batch{batch}_vs_float"] = statistics.median(ratios)
            row[f"batch{batch}_spread"] = f"{min(ratios):.3f}-{max(ratios):.3f}"
        row["test_accuracy"] = "" if result is None else round(result.onnx_accuracy, 2)
        row["torch_accuracy"] = "" if result is None else round(result.torch_accuracy, 2)
        row["agreement"] = "" if result is None else round(result.agreement, 4)
        row["integer_kernels"] = "" if result is None or result.runtime != "ort" else \
            f"{result.integer_kernels}/{result.layers}"
        rows.append(row)
    import onnxruntime

    path = write_results(args.name, rows,
                         f"onnxruntime {onnxruntime.__version__} (CPU, 1 thread, {instruction_set()}) on "
                         f"{task.spec.id}, run {run}, {args.rounds} rounds", "python bench/bench_export.py " + " ".join(sys.argv[1:]))
    print(path.read_text())


if __name__ == "__main__":
    main()
