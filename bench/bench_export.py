"""What a CPU runtime makes of the exported models: onnxruntime latency of float, all-INT8
and the searched mixed-precision export of one run (medians and ratios in one run).

    .venv/bin/python bench/bench_export.py runs/default

The float model is torch's own ONNX export; all-INT8 is uniform 8/8 (post-training) in
the same QDQ form as the searched export (the run's fine-tuned checkpoint). onnxruntime
runs on one thread, batch 1 and batch 256, after warm-up.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from haq_rl.export import export_onnx  # noqa: E402
from haq_rl.export.onnx_qdq import _torch_export  # noqa: E402
from haq_rl.finetune import uniform_policy  # noqa: E402
from haq_rl.run.layout import CONFIG_FILE  # noqa: E402
from haq_rl.task.spec import TaskSpec  # noqa: E402
from haq_rl.task.task import load_task  # noqa: E402


def _median_ms(session, batch: torch.Tensor, repeats: int) -> float:
    feed = {"input": batch.numpy()}
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", nargs="?", default="runs/default")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    run = Path(args.run_dir)
    task = load_task(TaskSpec.from_dict(json.loads((run / CONFIG_FILE).read_text())["env"]))
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    buffer = io.BytesIO()
    _torch_export(task.model.cpu().eval(), task.splits.test.tensors[0][:1], buffer, 21)
    (work / "float.onnx").write_bytes(buffer.getvalue())
    shutil.copy(run / CONFIG_FILE, work / CONFIG_FILE)
    uniform_policy(task, 8).to_json(work / "int8.json", budget=1.0)
    int8 = export_onnx(work / "int8.json", out=work / "int8.onnx")
    searched = export_onnx(run, out=work / "searched.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    images = task.splits.test.tensors[0]
    rows = []
    for name, path, accuracy in (("float", work / "float.onnx", None), ("all-INT8 (8/8)", int8.path, int8.onnx_accuracy),
                                 ("searched", searched.path, searched.onnx_accuracy)):
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rows.append({"model": name, "file_kib": path.stat().st_size / 1024,
                     "batch1_ms": _median_ms(session, images[:1], args.repeats),
                     "batch256_ms": _median_ms(session, images[:256], max(5, args.repeats // 10)),
                     "test_accuracy": accuracy})
    for row in rows:
        row["batch1_vs_float"] = row["batch1_ms"] / rows[0]["batch1_ms"]
        row["batch256_vs_float"] = row["batch256_ms"] / rows[0]["batch256_ms"]
    path = write_results("export_runtime", rows, f"onnxruntime (CPU, 1 thread) on {task.spec.id}, run {run}",
                         "python bench/bench_export.py " + " ".join(sys.argv[1:]))
    print(path.read_text())


if __name__ == "__main__":
    main()
