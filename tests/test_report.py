"""haq_rl.report: tables, figures (values read back from the artists) and write_report.

Two real LeNet-5 searches run once per session (a few seconds each): a random search on
the model-size env and a uniform baseline on BISMO-edge latency, so both a proxy cost
profile (no latency/energy) and a hardware profile (latency and energy) are covered.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from haq_rl import report
from haq_rl.errors import MissingPathError
from haq_rl.run.layout import LOCK_FILE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LENET_ENV = "haq_rl/LeNet5Size-v1"


@functools.lru_cache(maxsize=2)
def make_runs(base: Path) -> dict[str, Path]:
    """Run the two tiny searches under ``base`` (cached: once per session and folder)."""
    import torch

    from haq_rl.search import SearchConfig, run_search

    torch.set_num_threads(1)
    size_dir, latency_dir = base / "size-random", base / "edge-uniform"
    run_search(SearchConfig(env=LENET_ENV, method="random", episodes=6, seed=0, out=str(size_dir),
                            progress=False))
    run_search(SearchConfig(env=LENET_ENV, method="uniform", episodes=3, hardware="bismo-edge",
                            objective="latency", budget=0.5, out=str(latency_dir), progress=False))
    return {"size": size_dir, "latency": latency_dir}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"size": random search on model size, "latency": uniform baseline on bismo-edge latency}."""
    return make_runs(tmp_path_factory.getbasetemp() / "report-runs")


def write_metrics(run_dir: Path, searched_accuracy: float = 97.7, searched_cost: float = 0.26) -> dict:
    """A metrics.json in the format of ``haq-rl finetune`` (values made up)."""
    policy = json.loads((run_dir / "best_policy.json").read_text())
    w = [layer["w_bits"] for layer in policy["layers"].values()]
    a = [layer["a_bits"] for layer in policy["layers"].values()]
    common = {"latency_ms": 0.1, "energy_uj": 30.0, "bops": 1e7, "within_budget": True}
    rows = [
        {"name": "float", "w_bits": 32, "a_bits": 32, "accuracy_before": 98.0, "accuracy": 98.0,
         **common, "size_bytes": 266360.0, "cost_ratio": None, "latency_ratio": None,
         "energy_ratio": None, "size_ratio": 4.0},
        {"name": "uniform 8/8", "w_bits": 8, "a_bits": 8, "accuracy_before": 97.9, "accuracy": 98.1,
         **common, "size_bytes": 66590.0, "cost_ratio": 1.0, "latency_ratio": 1.0, "energy_ratio": 1.0,
         "size_ratio": 1.0},
        {"name": "uniform 4/4", "w_bits": 4, "a_bits": 4, "accuracy_before": 96.0, "accuracy": 97.2,
         **common, "size_bytes": 33000.0, "cost_ratio": 0.47, "latency_ratio": 0.4, "energy_ratio": 0.35,
         "size_ratio": 0.5},
        {"name": "searched", "w_bits": w, "a_bits": a, "accuracy_before": 96.5, "accuracy": searched_accuracy,
         **common, "size_bytes": 17000.0, "cost_ratio": searched_cost, "latency_ratio": 0.5, "energy_ratio": 0.45,
         "size_ratio": 0.26},
    ]
    metrics = {"format_version": 1, "env": {}, "finetune": {"epochs": 1, "lr": 0.001, "seed": 0}, "rows": rows,
               "searched_vs_uniform4": {"accuracy_margin": 0.5, "latency_ratio": 1.25, "cost_ratio": None}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------- loading and tables
def test_load_run(runs):
    run = report.load_run(runs["size"])
    assert run.path == runs["size"] and run.label == "size-random"
    assert run.metrics is None
    assert run.layers == run.policy.layer_names
    raw = pd.read_csv(runs["size"] / "episodes.csv")
    assert len(run.episodes) == len(raw) == 6
    assert list(run.episodes.columns) == list(raw.columns)
    np.testing.assert_allclose(run.episodes["reward"], raw["reward"])
    assert run.episodes["w:features.0"].dtype == np.int64


def test_episodes_running_best_matches_best_policy(runs):
    for key in ("size", "latency"):
        run = report.load_run(runs[key])
        frame = report.episodes(run)
        within = frame["cost_ratio"] <= run.budget + 1e-9
        assert (frame["within_budget"] == within).all()
        expected = frame["reward"].where(within).cummax().ffill()
        np.testing.assert_allclose(frame["best_reward"], expected)
        metrics = run.policy.metadata["metrics"]
        assert frame["best_reward"].iloc[-1] == pytest.approx(metrics["reward"])
        assert frame["best_accuracy"].iloc[-1] == pytest.approx(metrics["accuracy"])


def test_policy_table_costs_match_search(runs):
    size = report.policy_table(runs["size"])
    run = report.load_run(runs["size"])
    assert list(size["layer"]) == run.layers
    assert set(size["kind"]) == {"conv", "linear"}
    np.testing.assert_array_equal(size["w_bits"], run.policy.w_bits)
    np.testing.assert_array_equal(size["a_bits"], run.policy.a_bits)
    # The table rebuilt from config.json gives the costs the search recorded.
    assert size["size_bytes"].sum() == pytest.approx(run.policy.metadata["metrics"]["size_bytes"])
    assert size["size_bytes_8bit"].sum() == pytest.approx(run.config["reference_cost"])
    assert size["share"].sum() == pytest.approx(1.0)
    assert size["latency_ms"].isna().all() and size["latency_ms_share"].isna().all()

    latency = report.policy_table(runs["latency"])
    metrics = report.load_run(runs["latency"]).policy.metadata["metrics"]
    assert latency["latency_ms"].sum() == pytest.approx(metrics["latency_ms"])
    assert latency["energy_uj"].sum() == pytest.approx(metrics["energy_uj"])
    np.testing.assert_allclose(latency["share"], latency["latency_ms_share"])
    assert latency["latency_ms_share_8bit"].sum() == pytest.approx(1.0)
    assert (latency["macs"] > 0).all()


def test_uniform_baselines(runs):
    uniform = report.uniform_baselines(runs["latency"])
    episodes = pd.read_csv(runs["latency"] / "episodes.csv")
    assert list(uniform["bits"]) == list(range(8, 1, -1))
    assert uniform.loc[0, "cost_ratio"] == pytest.approx(1.0)
    # The uniform search evaluates the largest width within budget first, then 8/8, 7/7, ...
    evaluated = uniform.dropna(subset=["accuracy"]).sort_values("cost_ratio")
    ordered = episodes.sort_values("cost_ratio")
    assert len(evaluated) == len(episodes) == 3
    np.testing.assert_allclose(evaluated["cost_ratio"], ordered["cost_ratio"])
    np.testing.assert_allclose(evaluated["accuracy"], ordered["accuracy"])
    assert uniform["within_budget"].iloc[-1]


def test_pareto_front():
    df = pd.DataFrame({"cost": [0.5, 0.3, 0.3, 0.8, 0.2, np.nan, 0.9],
                       "acc": [90.0, 85.0, 88.0, 89.0, 70.0, 99.0, 95.0]})
    front = report.pareto_front(df, "cost", "acc")
    assert list(front.index) == [4, 2, 0, 6]
    assert list(front["acc"]) == [70.0, 88.0, 90.0, 95.0]
    assert report.pareto_front(df.iloc[:0], "cost", "acc").empty


def test_comparison_table(runs, tmp_path):
    assert report.comparison_table(runs["size"]) is None
    run_dir = copy_run(runs["size"], tmp_path / "run")
    write_metrics(run_dir)
    table = report.comparison_table(run_dir)
    assert list(table["name"]) == ["float", "uniform 8/8", "uniform 4/4", "searched"]
    assert list(table.columns[:4]) == ["name", "w_bits", "a_bits", "accuracy_before"]
    policy = report.load_run(run_dir).policy
    assert table["mean_w_bits"].iloc[-1] == pytest.approx(np.mean(policy.w_bits))
    best = report.best_table([run_dir, runs["latency"]])
    assert list(best["finetuned_accuracy"].fillna(-1)) == [97.7, -1]


# --------------------------------------------------------------------------- figures
def test_plot_bits_heights_are_the_policy(runs):
    table = report.policy_table(runs["size"])
    figure = report.plot_bits(runs["size"])
    ax_w, ax_a = figure.axes
    np.testing.assert_array_equal([bar.get_height() for bar in ax_w.containers[0]], table["w_bits"])
    np.testing.assert_array_equal([bar.get_height() for bar in ax_a.containers[0]], table["a_bits"])
    colors = {kind: report.KIND_COLORS[kind] for kind in table["kind"]}
    import matplotlib.colors as mcolors
    for bar, kind in zip(ax_w.containers[0], table["kind"], strict=True):
        assert mcolors.to_hex(bar.get_facecolor()) == colors[kind]
    assert [t.get_text() for t in ax_w.get_xticklabels()] == list(table["layer"])
    assert ax_w.get_ylabel() == "bits" and "Weight bits" in ax_w.get_title()


def test_plot_bits_several_runs_grouped(runs, tmp_path):
    other = copy_run(runs["latency"], tmp_path / "other")
    figure = report.plot_bits([runs["size"], other])
    ax_w = figure.axes[0]
    assert [c.get_label() for c in ax_w.containers] == ["size-random", "other"]
    for container, run_dir in zip(ax_w.containers, [runs["size"], other], strict=True):
        policy = report.load_run(run_dir).policy
        np.testing.assert_array_equal([b.get_height() for b in container], policy.w_bits)


def test_plot_cost_share_heights_are_the_shares(runs):
    table = report.policy_table(runs["latency"])
    figure = report.plot_cost_share(runs["latency"])
    assert len(figure.axes) == 2  # latency and energy
    for ax, metric in zip(figure.axes, ("latency_ms", "energy_uj"), strict=True):
        searched, reference = ax.containers
        assert searched.get_label() == "searched" and reference.get_label() == "8/8"
        np.testing.assert_allclose([b.get_height() for b in searched], 100 * table[f"{metric}_share"])
        np.testing.assert_allclose([b.get_height() for b in reference], 100 * table[f"{metric}_share_8bit"])
        assert "%" in ax.get_ylabel()
    # A proxy profile (size) has no latency or energy: its objective's share is plotted.
    size_axes = report.plot_cost_share(runs["size"]).axes
    assert len(size_axes) == 1 and "weight size" in size_axes[0].get_title()


def _line(ax, label):
    matches = [line for line in ax.get_lines() if line.get_label() == label]
    assert matches, f"no line {label!r} in {[line.get_label() for line in ax.get_lines()]}"
    return matches[0]


def test_plot_curve_lines_are_the_episodes(runs):
    csv = pd.read_csv(runs["size"] / "episodes.csv")
    frame = report.episodes(runs["size"])
    figure = report.plot_curve(runs["size"])
    ax_reward, ax_acc = figure.axes
    reward = _line(ax_reward, "size-random reward")
    np.testing.assert_allclose(reward.get_xdata(), csv["episode"])
    np.testing.assert_allclose(reward.get_ydata(), csv["reward"])
    np.testing.assert_allclose(_line(ax_acc, "size-random accuracy").get_ydata(), csv["accuracy"])
    np.testing.assert_allclose(_line(ax_reward, "size-random best reward").get_ydata(), frame["best_reward"])
    np.testing.assert_allclose(_line(ax_acc, "size-random accuracy of best-reward policy").get_ydata(),
                               frame["best_accuracy"])
    # The phase is shaded and named in the legend.
    assert "phase: random" in [t.get_text() for t in ax_reward.get_legend().get_texts()]
    assert ax_reward.get_ylabel() == "reward" and "%" in ax_acc.get_ylabel()


def test_plot_pareto_front_and_uniform(runs):
    frame = report.episodes(runs["latency"])
    front = report.pareto_front(frame, "cost_ratio", "accuracy")
    figure = report.plot_pareto(runs["latency"])
    ax = figure.axes[0]
    line = _line(ax, "edge-uniform Pareto front")
    np.testing.assert_allclose(line.get_xdata(), front["cost_ratio"])
    np.testing.assert_allclose(line.get_ydata(), front["accuracy"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "uniform B/B" in legend and "budget 0.5" in legend
    # Uniform 2/2 was never evaluated here (the search stopped within budget): a cost-only line.
    assert "uniform B/B cost (not evaluated)" in legend
    assert "ratio to uniform 8/8" in ax.get_xlabel()


# --------------------------------------------------------------------------- write_report
def test_write_report_single_run_default_out(runs, tmp_path):
    run_dir = copy_run(runs["size"], tmp_path / "run")
    path = report.write_report([run_dir])
    assert path == run_dir / "report.md"
    text = path.read_text()
    assert "Not fine-tuned yet" in text
    for name in ("bits", "cost_share", "curve", "pareto"):
        assert is_png(run_dir / "report" / f"{name}.png"), name
        assert f"(report/{name}.png)" in text
    for name in ("policy_table", "episodes", "pareto", "uniform"):
        assert (run_dir / "report" / f"{name}.csv").is_file()
    # The CSVs are the data of the figures.
    table = pd.read_csv(run_dir / "report" / "policy_table.csv")
    figure = report.plot_bits(run_dir)
    np.testing.assert_array_equal([b.get_height() for b in figure.axes[0].containers[0]], table["w_bits"])
    pareto_csv = pd.read_csv(run_dir / "report" / "pareto.csv")
    line = _line(report.plot_pareto(run_dir).axes[0], "run Pareto front")
    np.testing.assert_allclose(line.get_ydata(), pareto_csv["accuracy"])
    # Written through a temporary folder: nothing left behind but the directory's lock file;
    # a second report replaces the first.
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]
    report.write_report(run_dir)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]
    assert is_png(run_dir / "report" / "bits.png")


def test_write_report_with_metrics(runs, tmp_path):
    run_dir = copy_run(runs["size"], tmp_path / "run")
    write_metrics(run_dir)
    out = report.write_report([run_dir], tmp_path / "out")
    text = out.read_text()
    assert "Not fine-tuned yet" not in text
    assert "| searched |" in text and "| uniform 4/4 |" in text
    assert "Searched vs uniform 4/4: accuracy margin 0.5, latency ratio 1.25, cost ratio -." in text
    csv = pd.read_csv(tmp_path / "out" / "report" / "comparison.csv")
    assert list(csv["name"]) == ["float", "uniform 8/8", "uniform 4/4", "searched"]


def test_write_report_compares_runs(runs, tmp_path):
    out = report.write_report([runs["size"], runs["latency"]], tmp_path / "cmp")
    text = out.read_text()
    assert "size-random vs edge-uniform" in text and "## Best policy of each run" in text
    files = tmp_path / "cmp" / "report"
    summary = pd.read_csv(files / "runs.csv")
    assert list(summary["run"]) == ["size-random", "edge-uniform"]
    assert list(summary["method"]) == ["random", "uniform"]
    for name in ("bits", "cost_share", "curve", "pareto"):
        assert is_png(files / f"{name}.png")
    for label in ("size-random", "edge-uniform"):
        assert (files / f"policy_table-{label}.csv").is_file()
    # Overlaid curves: one reward line per run.
    labels = [line.get_label() for line in report.plot_curve([runs["size"], runs["latency"]]).axes[0].get_lines()]
    assert "size-random reward" in labels and "edge-uniform reward" in labels
    # Runs of the source dirs are untouched.
    assert not (runs["size"] / "report.md").exists()


# --------------------------------------------------------------------------- reports that conclude
def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _offsets(ax, label: str) -> np.ndarray:
    (collection,) = [c for c in ax.collections if c.get_label() == label]
    return np.asarray(collection.get_offsets())


def test_pareto_after_finetune_shows_what_the_user_keeps(runs, tmp_path):
    """The searched policy tied uniform 4/4 at more cost (issue 35's walk-through): the front
    is computed on the fine-tuned points and leaves it out; the star sits where fine-tuning
    put it; uniform 8/8 and 4/4 are fine-tuned points, not "(not evaluated)" lines."""
    run_dir = copy_run(runs["size"], tmp_path / "run")
    write_metrics(run_dir, searched_accuracy=97.2, searched_cost=0.5)
    figure = report.plot_pareto(run_dir)
    ax = figure.axes[0]
    front = _line(ax, "run Pareto front (fine-tuned)")
    np.testing.assert_allclose(front.get_xdata(), [0.47, 1.0])
    np.testing.assert_allclose(front.get_ydata(), [97.2, 98.1])
    np.testing.assert_allclose(_offsets(ax, "run searched policy, fine-tuned"), [[0.5, 97.2]])
    searched = report.load_run(run_dir).policy.metadata["metrics"]
    np.testing.assert_allclose(_offsets(ax, "run searched policy, as searched (reward split)"),
                               [[searched["cost_ratio"], searched["accuracy"]]])
    np.testing.assert_allclose(sorted(map(tuple, _offsets(ax, "run fine-tuned (test)"))),
                               [(0.47, 97.2), (0.5, 97.2), (1.0, 98.1)])
    legend = _legend(ax)
    assert "run float 98.00% (pretrained, not fine-tuned)" in legend
    assert "run Pareto front" not in legend  # the episodes' front is not what the user keeps
    # The cost-only lines are for uniform policies nothing measured: 8/8 and 4/4 were fine-tuned.
    uniform = report.uniform_baselines(run_dir)
    assert dict(zip(uniform["bits"], uniform["finetuned_accuracy"].fillna(-1), strict=True))[4] == 97.2
    cost_lines = [t.get_text().strip() for t in ax.texts if "/" in t.get_text() and t.get_rotation() == 90]
    assert "8/8" not in cost_lines and "4/4" not in cost_lines
    figure.savefig(tmp_path / "pareto_finetuned.png", dpi=80)  # looked at by eye when changed
    assert is_png(tmp_path / "pareto_finetuned.png")


def test_report_says_when_a_uniform_policy_matches_the_search(runs, tmp_path):
    run_dir = copy_run(runs["size"], tmp_path / "run")
    write_metrics(run_dir, searched_accuracy=97.2, searched_cost=0.5)
    text = report.write_report(run_dir).read_text()
    assert ("**Uniform 4/4 matches or beats the searched policy** after the same fine-tune: 97.20 % vs 97.20 % "
            "test accuracy at cost ratio 0.470 vs 0.500.") in text
    assert "The float row is the pretrained model, not fine-tuned; every quantized row had 1 epoch(s)" in text
    assert "1 quantized row(s) score above float (98.00 %)" in text  # uniform 8/8 at 98.1
    assert "| float (pretrained, not fine-tuned) |" in text
    assert "## Pareto front of the fine-tuned policies" in text
    pareto = pd.read_csv(run_dir / "report" / "pareto.csv")
    assert list(pareto["name"]) == ["uniform 4/4", "uniform 8/8"]
    uniform = pd.read_csv(run_dir / "report" / "uniform.csv").set_index("bits")
    assert uniform.loc[8, "finetuned_accuracy"] == 98.1 and uniform.loc[4, "finetuned_accuracy"] == 97.2


def test_report_says_when_the_search_wins(runs, tmp_path):
    run_dir = copy_run(runs["size"], tmp_path / "run")
    write_metrics(run_dir, searched_accuracy=97.7, searched_cost=0.5)
    text = report.write_report(run_dir).read_text()
    assert "matches or beats" not in text
    assert ("The searched policy beats every uniform policy that costs as little: 97.70 % test accuracy at cost "
            "ratio 0.500, against 97.20 % for uniform 4/4 at 0.470 (+0.50 points).") in text
    write_metrics(run_dir, searched_accuracy=97.7, searched_cost=0.26)
    assert "No uniform policy fine-tuned here costs as little as the searched one" in \
        report.write_report(run_dir).read_text()


def test_report_before_finetune_says_so(runs):
    lines = report.conclusions(runs["latency"])
    assert lines[-1].startswith("Not fine-tuned yet: accuracies are post-training, on the reward split.")


def test_pinned_layers_are_marked(runs, tmp_path):
    from haq_rl.search import SearchConfig, run_search

    assert not report.policy_table(runs["size"])["pinned"].any()  # this env pins nothing
    assert "pinned at 8 bits" not in _legend(report.plot_bits(runs["size"]).axes[0])
    run_dir = tmp_path / "pinned"
    run_search(SearchConfig(env=LENET_ENV, method="random", episodes=2, out=str(run_dir), progress=False,
                            env_overrides={"pin_first_last": True}))
    table = report.policy_table(run_dir)
    assert list(table["pinned"]) == [True] + [False] * (len(table) - 2) + [True]
    figure = report.plot_bits(run_dir)
    for ax in figure.axes:
        assert "pinned at 8 bits" in _legend(ax)
        shaded = [patch for patch in ax.patches if patch.get_facecolor()[:3] == pytest.approx((0.851, 0.851, 0.851),
                                                                                             abs=1e-3)]
        assert len(shaded) == 2
    figure.savefig(tmp_path / "bits_pinned.png", dpi=80)
    assert is_png(tmp_path / "bits_pinned.png")
    text = report.write_report(run_dir).read_text()
    assert "| pinned at 8 bits |" in text and "held at 8 bits by the env" in text


# --------------------------------------------------------------------------- bad input
def test_missing_files_name_the_file(runs, tmp_path):
    no_policy = copy_run(runs["size"], tmp_path / "no_policy")
    (no_policy / "best_policy.json").unlink()
    with pytest.raises(MissingPathError, match="best_policy.json"):
        report.load_run(no_policy)
    no_config = copy_run(runs["size"], tmp_path / "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(MissingPathError, match="config.json"):
        report.write_report([no_config], tmp_path / "out")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(MissingPathError, match="not a run directory"):
        report.load_run(a_file)
    with pytest.raises(MissingPathError, match="not found"):
        report.load_run(tmp_path / "nowhere")
