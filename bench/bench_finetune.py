"""Fine-tune recipes side by side: the legacy recipe vs learned step sizes (+ distillation).

Every case is one ``finetune_policy`` (1 epoch unless the recipe says otherwise, same seed
for every recipe) run in its own process with one torch thread, at most ``--jobs`` at a
time, so cases on the shared cores do not slow each other's threads. Accuracies are on
the test split; ``gap`` is to the float model on the same split; ``wall_s`` is per case
under that load (noisy: the cores are shared), so compare it only within one run.

    .venv/bin/python bench/bench_finetune.py --seeds 0 --jobs 2

Policies (``--cases``): ``hawq03`` (the default env's hawq policy at budget 0.3, stored in
bench/policies/), ``u4`` (default env, uniform 4/4), ``r8u3`` (ResNet8Edge-v0, uniform
3/3), ``lenet_w2`` (LeNet5Size-v1, uniform 2-bit weights), ``r18`` (ResNet18BitFusionEnergy-v0,
uniform 4/4: no searched policy of it is stored). Recipes (``--recipes``): ``legacy``
(max-abs, CE, SGD lr 5e-3), ``lsq`` (learned steps, CE only), ``lsq_kd`` (learned steps,
distillation 0.5 at T=2), ``new`` (the default FinetuneConfig; learned steps, CE only
since distillation did not win), ``new_fold`` (``new`` with fold_bn), ``new_3ep``
(``new`` for 3 epochs). Results written before distillation lost its place as the
default (bench/results/finetune_mobilenetv2*, finetune_small*) call ``lsq_kd`` "new".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results  # noqa: E402

POLICIES = Path(__file__).resolve().parent / "policies"
CASES: dict[str, tuple[str, str]] = {
    "hawq03": ("haq_rl/MobileNetV2Edge-v1", str(POLICIES / "mobilenetv2_edge_v1_hawq_b0.3_s0.json")),
    "u4": ("haq_rl/MobileNetV2Edge-v1", "uniform:4"),
    "r8u3": ("haq_rl/ResNet8Edge-v0", "uniform:3"),
    "lenet_w2": ("haq_rl/LeNet5Size-v1", "uniform:2"),
    "r18": ("haq_rl/ResNet18BitFusionEnergy-v0", "uniform:4"),
}
RECIPES: dict[str, dict[str, Any]] = {
    "legacy": {"legacy": True},
    "lsq": {"distill": 0.0},
    "lsq_kd": {"distill": 0.5},
    "new": {},
    "new_fold": {"fold_bn": True},
    "new_3ep": {"epochs": 3},
}


def run_case(env: str, policy: str, recipe: dict[str, Any], seed: int) -> dict[str, Any]:
    """One fine-tune in this process (the ``--worker`` entry point)."""
    import torch

    torch.set_num_threads(1)
    from haq_rl.finetune import FinetuneConfig, finetune_policy, uniform_policy
    from haq_rl.finetune.qat import test_loader
    from haq_rl.quant import QuantPolicy
    from haq_rl.task.spec import resolve_spec
    from haq_rl.task.task import load_task
    from haq_rl.training import evaluate_accuracy

    task = load_task(resolve_spec(env))
    quant_policy = (uniform_policy(task, int(policy.split(":")[1])) if policy.startswith("uniform:")
                    else QuantPolicy.from_json(policy))
    kwargs = {k: v for k, v in recipe.items() if k != "legacy"}
    config = (FinetuneConfig.legacy(seed=seed, compare=False, **kwargs) if recipe.get("legacy")
              else FinetuneConfig(seed=seed, compare=False, **kwargs))
    float_acc = evaluate_accuracy(task.model, test_loader(task), metric=task.metric)
    started = time.perf_counter()
    result = finetune_policy(task, quant_policy, config, progress=False)
    return {"float": float_acc, "before": result.accuracy_before, "after": result.accuracy,
            "wall_s": time.perf_counter() - started}


def _spawn(case: str, recipe: str, seed: int) -> dict[str, Any]:
    env, policy = CASES[case]
    command = [sys.executable, __file__, "--worker", json.dumps([env, policy, RECIPES[recipe], seed])]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    row: dict[str, Any] = {"case": case, "env": env, "policy": Path(policy).name, "recipe": recipe, "seed": seed}
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        row.update({"float": None, "before": None, "after": None, "gap": None, "wall_s": None,
                    "error": lines[-1] if lines else f"exit {out.returncode}"})
    else:
        result = json.loads(out.stdout.strip().splitlines()[-1])
        row.update({**result, "gap": result["after"] - result["float"], "error": ""})
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="+", default=["hawq03", "u4", "r8u3", "lenet_w2"], choices=list(CASES))
    parser.add_argument("--recipes", nargs="+", default=["legacy", "new"], choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="finetune")
    args = parser.parse_args()
    if args.worker:
        env, policy, recipe, seed = json.loads(args.worker)
        print(json.dumps(run_case(env, policy, recipe, seed)))
        return
    jobs = [(c, r, s) for s in args.seeds for c in args.cases for r in args.recipes]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda job: _spawn(*job), jobs))
    command = (f"python bench/bench_finetune.py --cases {' '.join(args.cases)} --recipes {' '.join(args.recipes)} "
               f"--seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs}")
    write_results(f"{args.name}_runs", rows, "Fine-tune recipes, per run (test split)", command)
    write_results(args.name, summarise(rows), "Fine-tune recipes: mean over seeds (test split)", command)
    print((RESULTS / f"{args.name}.md").read_text())


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean test accuracy and gap to float per (case, recipe); wall time relative to legacy."""
    out = []
    keys = list(dict.fromkeys((r["case"], r["recipe"]) for r in rows))
    for case, recipe in keys:
        done = [r for r in rows if r["case"] == case and r["recipe"] == recipe and not r["error"]]
        legacy = [r["wall_s"] for r in rows if r["case"] == case and r["recipe"] == "legacy" and not r["error"]]
        if not done:
            out.append({"case": case, "recipe": recipe, "seeds": 0, "float": None, "after": None, "gap": None,
                        "sd": None, "wall_vs_legacy": None})
            continue
        after = [r["after"] for r in done]
        wall = statistics.median(r["wall_s"] for r in done)
        out.append({"case": case, "recipe": recipe, "seeds": len(done), "float": done[0]["float"],
                    "after": statistics.mean(after), "gap": statistics.mean(r["gap"] for r in done),
                    "sd": statistics.stdev(after) if len(after) > 1 else 0.0,
                    "wall_vs_legacy": wall / statistics.median(legacy) if legacy else None})
    return out


if __name__ == "__main__":
    main()
