"""End-to-end latency (issue 38, item 3): policies exported and timed whole in onnxruntime on
this CPU, beside the float model and uniform 8/8, in fine-tune, report and evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from haq_rl.cli import main  # noqa: E402
from haq_rl.errors import ConfigError  # noqa: E402
from haq_rl.export.end_to_end import FLOAT_NAME, REFERENCE_NAME, end_to_end_fields, time_end_to_end  # noqa: E402
from haq_rl.finetune.policies import uniform_policy  # noqa: E402
from haq_rl.quant import QuantPolicy  # noqa: E402
from haq_rl.task import load_task  # noqa: E402

ORT_ENV = "haq_rl/MobileNetV2OrtCpu-v0"


@pytest.fixture(scope="module")
def ort_task():
    return load_task(ORT_ENV)


def test_policies_are_timed_whole_beside_float_and_the_8bit_reference(ort_task):
    names = ort_task.layer_names
    w = np.where(np.arange(len(names)) % 3 == 0, 32, 6)  # every third layer float
    mixed = QuantPolicy.from_arrays(names, w, np.where(w == 32, 32, 8))
    four = uniform_policy(ort_task, 4)
    timed = time_end_to_end(ort_task, {"4/4": four, "again 4/4": four, "mixed": mixed}, rounds=3, repeats=10)
    assert set(timed) == {FLOAT_NAME, REFERENCE_NAME, "4/4", "again 4/4", "mixed"}
    assert timed[REFERENCE_NAME].ratio == timed[REFERENCE_NAME].ratio_low == timed[REFERENCE_NAME].fastest_ratio == 1.0
    for latency in timed.values():
        assert 0 < latency.measured_low_ms <= latency.measured_ms <= latency.measured_high_ms
        assert latency.ratio_low <= latency.ratio <= latency.ratio_high
        assert latency.fastest_ratio > 0
    assert timed["again 4/4"] == timed["4/4"]  # one graph, one session, the same numbers
    # Fused INT8 kernels beat float Conv on every x86 CPU (by 40 % here without VNNI).
    assert timed["4/4"].measured_ms < timed[FLOAT_NAME].measured_ms


def test_a_latency_budget_the_whole_model_breaks_is_flagged(ort_task):
    latency_task = load_task(ORT_ENV, objective="latency", budget=0.95)
    fields = end_to_end_fields(latency_task, {"8/8": uniform_policy(latency_task, 8)}, rounds=1, repeats=3)
    assert fields["8/8"]["measured_within_budget"] is False  # ratio 1 > 0.95
    assert fields["8/8"]["measured_latency_ratio"] == 1.0
    sized = end_to_end_fields(ort_task, {"8/8": uniform_policy(ort_task, 8)}, rounds=1, repeats=3)
    assert sized["8/8"]["measured_within_budget"] is None  # a size budget: latency is information


def test_a_simulated_target_is_not_timed():
    task = load_task("haq_rl/LeNet5Size-v1")
    assert end_to_end_fields(task, {"8/8": uniform_policy(task, 8)}) == {}
    with pytest.raises(ConfigError, match="'size'|ort-cpu"):
        time_end_to_end(task, {})


@pytest.mark.slow  # 90 s on 2 shared cores: a search, a fine-tune's evaluations, a report, two evaluates
def test_finetune_report_and_evaluate_give_predicted_and_measured_latency(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", ORT_ENV, "--method", "random", "--episodes", "4", "--out", str(run), "--no-progress"]) == 0
    assert main(["finetune", str(run), "--epochs", "0", "--no-compare", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "measured end to end" in out and "search top 1" in out
    metrics = json.loads((run / "metrics.json").read_text())
    searched = next(row for row in metrics["rows"] if row["name"] == "searched")
    assert searched["measured_latency_ms"] > 0 and searched["measured_within_budget"] is None  # size budget
    low, high = searched["measured_latency_spread_ms"]
    assert low <= searched["measured_latency_ms"] <= high
    top = metrics["end_to_end"]["top_policies"]
    assert 1 <= len(top) <= 5 and all(entry["cost_ratio"] <= metrics["env"]["budget"] + 1e-9 for entry in top)
    assert len({(tuple(e["w_bits"]), tuple(e["a_bits"])) for e in top}) == len(top)  # distinct policies
    assert metrics["end_to_end"]["float"]["measured_latency_ms"] > 0
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "## Measured end to end" in report or "### Measured end to end" in report
    capsys.readouterr()
    assert main(["evaluate", str(run / "best_policy.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["end_to_end"]["policy"]["measured_latency_ratio"] > 0
    assert result["end_to_end"]["predicted_latency_ratio"] == pytest.approx(searched["latency_ratio"])
    assert main(["evaluate", str(run / "best_policy.json"), "--no-measure", "--json"]) == 0
    assert "end_to_end" not in json.loads(capsys.readouterr().out)
