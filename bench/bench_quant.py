"""Benchmark of haq_rl.quant on the default model (pretrained MobileNetV2, mnist5k).

Measures, in one process:

* accuracy on the test split of float and uniform w/a policies (8/8 ... 2/2) for every
  activation calibration method (per-channel weights), plus per-tensor weights at 4/4;
* the cost of evaluating one (mixed) policy on the reward split relative to the float
  forward of the same model and data: raw forward over pre-built batches and the
  ``evaluate_accuracy`` loop the search uses; float and quantized runs are interleaved
  and medians reported, so machine load hits both alike;
* the cost of switching policy (``PolicyApplier.apply`` with warm caches) and of the
  first, cold apply (quantizing weights + clip ranges for a new bit width).

Writes bench/results/quant.csv and bench/results/quant.md.

    .venv/bin/python bench/bench_quant.py [--repeats 7] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from haq_rl.data import load_dataset, make_loader, make_splits
from haq_rl.pretrain import PretrainConfig, get_pretrained, load_checkpoint
from haq_rl.quant import ACT_CALIBRATIONS, PolicyApplier, QuantConfig, QuantPolicy
from haq_rl.training import evaluate_accuracy

log = logging.getLogger("bench_quant")
RESULTS = Path(__file__).resolve().parent / "results"
BITS = (8, 6, 4, 3, 2)


def _calibration(splits, batches: int = 4, batch_size: int = 128) -> list[torch.Tensor]:
    x = splits.search_train.tensors[0]
    return [x[i * batch_size:(i + 1) * batch_size] for i in range(batches)]


def accuracy_rows(model, splits, quick: bool) -> list[dict]:
    """Test-split accuracy of float and uniform policies per calibration method."""
    loader = make_loader(splits.test, batch_size=500)
    calib = _calibration(splits)
    rows = [{"section": "accuracy", "metric": "test_acc", "weights": "float",
             "calibration": "-", "w_bits": 32, "a_bits": 32,
             "value": evaluate_accuracy(model, loader), "unit": "%"}]
    configs = [("per_channel", m) for m in ACT_CALIBRATIONS] + [("per_tensor", "mse")]
    if quick:
        configs = configs[:1]
    for granularity, method in configs:
        config = QuantConfig(weight_granularity=granularity, act_calibration=method)
        bits_list = BITS if granularity == "per_channel" else (4,)
        with PolicyApplier(model, calib, config) as applier:
            for bits in bits_list:
                applier.apply(QuantPolicy.uniform(applier.layer_names, bits, bits))
                acc = evaluate_accuracy(model, loader)
                rows.append({"section": "accuracy", "metric": "test_acc", "weights": granularity,
                             "calibration": method, "w_bits": bits, "a_bits": bits,
                             "value": acc, "unit": "%"})
                log.info("%s %s %d/%d: %.2f%%", granularity, method, bits, bits, acc)
    return rows


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timing_rows(model, splits, repeats: int, seed: int = 0) -> list[dict]:
    """Evaluation overhead and policy switching cost."""
    reward = splits.reward_val
    batches = [x for x, _ in make_loader(reward, batch_size=250)]
    loader = make_loader(reward, batch_size=250)
    applier = PolicyApplier(model, _calibration(splits), QuantConfig())
    names = applier.layer_names
    rng = np.random.default_rng(seed)

    def random_policy() -> QuantPolicy:
        return QuantPolicy.from_arrays(names, rng.integers(2, 9, len(names)),
                                       rng.integers(2, 9, len(names)))

    # cold apply: nothing cached yet for these bit widths
    cold = [_timed(lambda: applier.apply(random_policy())) for _ in range(3)]
    for b in range(2, 9):  # warm every (layer, bits) so switching measures swaps only
        applier.apply(QuantPolicy.uniform(names, b, b))
    policies = [random_policy() for _ in range(2)]

    def forward() -> None:
        with torch.no_grad():
            for x in batches:
                model(x)

    fwd_float, fwd_quant, eval_float, eval_quant = [], [], [], []
    forward()  # warm-up (allocator, oneDNN primitives)
    for i in range(repeats):
        applier.restore()
        fwd_float.append(_timed(forward))
        eval_float.append(_timed(lambda: evaluate_accuracy(model, loader)))
        applier.apply(policies[i % 2])
        fwd_quant.append(_timed(forward))
        eval_quant.append(_timed(lambda: evaluate_accuracy(model, loader)))
    switch = []
    for i in range(200):
        switch.append(_timed(lambda i=i: applier.apply(policies[i % 2])))
    restore = [_timed(applier.restore) for _ in range(20)]
    applier.restore()

    med = statistics.median
    n = len(reward)
    rows = [
        ("quantizable_layers", len(names), "layers"),
        ("reward_images", n, "images"),
        ("float_forward_reward_split", med(fwd_float) * 1e3, "ms"),
        ("quant_forward_reward_split", med(fwd_quant) * 1e3, "ms"),
        ("forward_ratio_quant_over_float", med(fwd_quant) / med(fwd_float), "x"),
        ("float_evaluate_accuracy", med(eval_float) * 1e3, "ms"),
        ("quant_evaluate_accuracy", med(eval_quant) * 1e3, "ms"),
        ("evaluate_ratio_quant_over_float", med(eval_quant) / med(eval_float), "x"),
        ("switch_policy_warm", med(switch) * 1e3, "ms"),
        ("switch_policy_warm_p90", float(np.percentile(switch, 90)) * 1e3, "ms"),
        ("restore_float", med(restore) * 1e3, "ms"),
        ("first_apply_cold", med(cold) * 1e3, "ms"),
    ]
    return [{"section": "timing", "metric": m, "weights": "per_channel", "calibration": "mse",
             "w_bits": "", "a_bits": "", "value": v, "unit": u} for m, v, u in rows]


def write_results(rows: list[dict], command: str, threads: int, repeats: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    fields = ["section", "metric", "weights", "calibration", "w_bits", "a_bits", "value", "unit"]
    with open(RESULTS / "quant.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "value": f"{row['value']:.4f}"
                             if isinstance(row["value"], float) else row["value"]})
    acc = [r for r in rows if r["section"] == "accuracy"]
    lines = [f"Command: `{command}` (torch {torch.__version__}, {threads} threads, "
             f"{repeats} interleaved repeats, medians)", ""]
    float_acc = next(r["value"] for r in acc if r["weights"] == "float")
    cols = [(r["weights"], r["calibration"]) for r in acc if r["weights"] != "float"]
    cols = list(dict.fromkeys(cols))
    lines.append("| w/a bits | " + " | ".join(f"{w.replace('_', '-')} w, {c}" for w, c in cols)
                 + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    lines.append("| float | " + " | ".join(f"{float_acc:.2f}" for _ in cols) + " |")
    for bits in BITS:
        cells = []
        for w, c in cols:
            hit = [r["value"] for r in acc if (r["weights"], r["calibration"]) == (w, c)
                   and r["w_bits"] == bits]
            cells.append(f"{hit[0]:.2f}" if hit else "-")
        lines.append(f"| {bits}/{bits} | " + " | ".join(cells) + " |")
    lines += ["", "| timing metric | value |", "|---|---|"]
    for r in rows:
        if r["section"] == "timing":
            value = r["value"]
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {r['metric']} | {shown} {r['unit']} |")
    (RESULTS / "quant.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="one calibration method only")
    parser.add_argument("--checkpoint", default="",
                        help="pretrained checkpoint file (default: get_pretrained's cache)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python bench/bench_quant.py " + " ".join(
        f"--{k}={v}" if not isinstance(v, bool) else f"--{k}" for k, v in vars(args).items()
        if v not in (False, 0, "")).replace("--repeats=", "--repeats ").replace(
        "--threads=", "--threads ")
    torch.manual_seed(0)
    if args.checkpoint:
        model, _meta = load_checkpoint(args.checkpoint)
    else:
        model, _meta = get_pretrained(PretrainConfig(model="mobilenetv2"))
    model.eval()
    splits = make_splits(load_dataset("mnist5k"))
    rows = timing_rows(model, splits, args.repeats)
    rows += accuracy_rows(model, splits, args.quick)
    write_results(rows, command.strip(), torch.get_num_threads(), args.repeats)
    log.info("wrote %s and %s", RESULTS / "quant.csv", RESULTS / "quant.md")
    print((RESULTS / "quant.md").read_text())  # noqa: T201 - a script's report


if __name__ == "__main__":
    main()
