"""``haq-rl search``: find a mixed-precision policy under a hardware budget."""

from __future__ import annotations

import argparse
import math
from typing import Any

from haq_rl.commands._common import (
    GIVEN_FLAGS,
    budget_arguments,
    name_given_model,
    parse_key_values,
    print_policy_table,
    record_given_flags,
    weights_path,
)
from haq_rl.errors import DEVICE_CHOICES
from haq_rl.task.spec import DEFAULT_ENV_ID


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from haq_rl.search import METHODS, SearchConfig

    defaults = SearchConfig()
    parser = subparsers.add_parser(
        "search", help="search a quantization policy (RL agent, peer or baseline)",
        description="Search a mixed-precision policy with an RL agent (default: guided DDPG), a peer "
                    "(hawq, tpe) or a baseline; "
                    "writes a run directory (config.json, episodes.csv, best_policy.json, agent.pt).")
    parser.add_argument("env", nargs="?", default=DEFAULT_ENV_ID,
                        help=f"registered env id or YAML spec (default {DEFAULT_ENV_ID})")
    parser.add_argument("--episodes", type=int, default=defaults.episodes,
                        help=f"episodes (policy evaluations) to run (default {defaults.episodes})")
    parser.add_argument("--budget", help="cost budget as a ratio of uniform 8/8 (0, 1]; one per objective "
                                         "with several objectives, e.g. --budget 0.5,0.6")
    parser.add_argument("--budgets", help="a budget-conditioned search of several budgets in one run, "
                                          "e.g. --budgets 0.3,0.4,0.5 (ascending)")
    parser.add_argument("--hw", dest="hardware",
                        help="hardware profile name or YAML path, or ort-cpu (onnxruntime timed on this CPU)")
    parser.add_argument("--objective", help="latency, energy, size or bops; several constrain all of them, "
                                            "e.g. --objective latency,energy --budget 0.5,0.6")
    parser.add_argument("--model", help="zoo name or package.module:factory (default: the env's)")
    parser.add_argument("--weights", type=weights_path, metavar="PATH",
                        help="trained weights (state_dict file) for the model: nothing is pretrained")
    parser.add_argument("--method", default=defaults.method, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", help="run directory (default runs/<env>-<method>-s<seed>)")
    parser.add_argument("--device", default=defaults.device, help=DEVICE_CHOICES)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted search")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every,
                        help="save the agent every K episodes (default %(default)s)")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="policy evaluations in parallel, each worker with its own model copy "
                             "(default %(default)s; docs/scaling.md)")
    parser.add_argument("--backend", default=defaults.backend,
                        help="process (this machine) or ray (Ray actors; pip install 'haq-rl[ray]')")
    parser.add_argument("--ray-address", help="an existing Ray cluster to run the workers on (--backend ray)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an env spec setting, e.g. --set finetune_steps=20")
    parser.add_argument("--agent", action="append", default=[], metavar="KEY=VALUE",
                        help="override an agent setting, e.g. --agent warmup_episodes=5")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the method, e.g. --option activations=separate (hawq), "
                             "--option startup_trials=10 (tpe)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)
    record_given_flags(parser)


#: --resume: the flags it takes (SearchConfig fields); any other flag is refused by run_search.
_FLAG_FIELDS = {"hardware": "hardware", "set": "env_overrides", "agent": "agent", "option": "options"}


def run(args: argparse.Namespace) -> int:
    from haq_rl.search import SearchConfig, run_search

    if args.resume is not None:
        name_given_model(args.model)  # --resume of a user model's run: named again
        return _report(run_search(SearchConfig(progress=not args.no_progress), resume=args.resume,
                                  resume_changes=_resume_changes(args)))
    config = SearchConfig(
        env=args.env, method=args.method, episodes=args.episodes,
        **budget_arguments(args.budget, args.objective, args.budgets),
        hardware=args.hardware, model=args.model, weights=args.weights,
        seed=args.seed, out=args.out,
        device=args.device, checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
        workers=args.workers, backend=args.backend, ray_address=args.ray_address,
        env_overrides=parse_key_values(args.set, "--set"), agent=parse_key_values(args.agent, "--agent"),
        options=parse_key_values(args.option, "--option"))
    return _report(run_search(config))


def _resume_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given with --resume, as SearchConfig fields (run_search refuses the ones
    that cannot change); the env positional counts as given when it is not the default."""
    given = set(getattr(args, GIVEN_FLAGS, ())) - {"resume", "no_progress"}
    changes: dict[str, Any] = {}
    for dest in sorted(given):
        value = getattr(args, dest)
        if dest == "set":
            value = parse_key_values(value, "--set")
        elif dest in ("agent", "option"):
            value = parse_key_values(value, f"--{dest}")
        changes[_FLAG_FIELDS.get(dest, dest)] = value
    if args.env != DEFAULT_ENV_ID:
        changes["env"] = args.env
    return changes


def _report(result: Any) -> int:
    if len(result.best_by_budget) > 1:
        _print_front(result.best_by_budget)
        print(f"run directory: {result.run_dir} (front.csv; one budget-<ratio>/ folder per budget: "
              "pass --budget B to finetune, evaluate and export)")
        return 0
    best = result.best
    # A profile that models no latency (size, bops) has none to print, not "nan ms".
    latency = f"latency {best['latency_ms']:.4f} ms, " if math.isfinite(best["latency_ms"]) else ""
    print(f"best policy (episode {best['episode']}): reward {best['reward']:.3f}, "
          f"accuracy {best['accuracy']:.2f}%, cost ratio {best['cost_ratio']:.3f}, "
          f"{latency}size {best['size_bytes'] / 1024:.1f} KiB")
    print_policy_table(result.best_policy_path)
    print(f"run directory: {result.run_dir}")
    return 0


def _print_front(best_by_budget: dict[float, dict]) -> None:
    """One line per budget: the best policy found within it."""
    print(f"{'budget':>6}  {'episode':>7}  {'reward':>8}  {'accuracy':>8}  {'cost ratio':>10}")
    for budget, best in sorted(best_by_budget.items()):
        print(f"{budget:>6g}  {best['episode']:>7}  {best['reward']:>8.3f}  {best['accuracy']:>8.2f}  "
              f"{best['cost_ratio']:>10.3f}")
