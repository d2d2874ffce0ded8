"""Evaluations per second of an evaluation-bound random search with 1 and 2 workers, on the
process and Ray backends (medians of repeated runs, speed-ups measured in the same run).

    .venv/bin/python bench/bench_workers.py --episodes 16 --repeats 3

The env is the default ``MobileNetV2Edge-v1`` (about 1.4 s per evaluation on one CPU
thread), so the evaluations dominate. Every process uses one torch thread (the main
process too), so 2 workers use 2 cores. The rate is steady state: rows recorded after the
first batch over the time since that batch, so startup (task, calibration, workers) is
left out; it is reported separately. A local Ray instance (``num_cpus`` = the cores) is
started once for all Ray runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from haq_rl.search import SearchConfig, run_search  # noqa: E402
from haq_rl.search.harness import Recorder  # noqa: E402
from haq_rl.task.spec import DEFAULT_ENV_ID  # noqa: E402


def _timed_search(config: SearchConfig) -> tuple[float, float]:
    """(steady-state evaluations per second, seconds before the first batch was recorded)."""
    stamps: list[float] = []
    record = Recorder.record

    def stamped(self: Recorder, info: dict[str, Any], phase: str) -> None:
        record(self, info, phase)
        stamps.append(time.perf_counter())

    Recorder.record = stamped  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        result = run_search(config)
    finally:
        Recorder.record = record  # type: ignore[method-assign]
    first = config.workers  # the first batch ends at row `workers`
    rate = (len(stamps) - first) / (stamps[-1] - stamps[first - 1])
    assert result.evaluations == len(stamps), "a repeated random policy would skew the rate"
    return rate, stamps[first - 1] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default=DEFAULT_ENV_ID)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["process", "ray"])
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the cores skews every rate: reported
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    rows = []
    for backend in args.backends:
        if backend == "ray":
            import ray

            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        rates: dict[int, list[float]] = {1: [], 2: []}
        startup: dict[int, list[float]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for workers in (1, 2):
                out = work / f"{backend}-{workers}-{repeat}"
                rate, setup = _timed_search(SearchConfig(
                    env=args.env, method="random", episodes=args.episodes, seed=repeat, out=str(out),
                    progress=False, workers=workers, backend=backend))
                rates[workers].append(rate)
                startup[workers].append(setup)
                print(f"{backend} workers={workers} repeat={repeat}: {rate:.3f} evaluations/s", flush=True)
                shutil.rmtree(out)
        for workers in (1, 2):
            rows.append({"backend": backend, "workers": workers,
                         "evaluations_per_s": statistics.median(rates[workers]),
                         "min": min(rates[workers]), "max": max(rates[workers]),
                         "speedup_vs_1": statistics.median(rates[workers]) / statistics.median(rates[1]),
                         "startup_s": statistics.median(startup[workers])})
        if backend == "ray":
            ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    path = write_results(
        "workers", rows,
        f"Random search on {args.env}: evaluations/s, medians of {args.repeats} runs of {args.episodes} "
        f"episodes, {os.cpu_count()} cores (load average {load_before:.1f} before, {load:.1f} after)",
        "python bench/bench_workers.py " + " ".join(sys.argv[1:]))
    print(path.read_text())


if __name__ == "__main__":
    main()
