"""The shipped benchmark (haq_rl/supernet/tabulated.py): instant predictor envs and the table."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

import haq_rl.env  # noqa: F401  (registers the ids)
from haq_rl.supernet.predictor import PREDICTOR_SAMPLES, PredictedEvaluator, walled_random_policies
from haq_rl.supernet.tabulated import (
    BENCHMARK_DIR,
    MANIFEST_NAME,
    ORIGIN_PREDICTOR_SAMPLE,
    TabulatedEvaluator,
    ship_table,
    shipped_table,
    stratified_sample,
)

PREDICTOR_ID = "haq_rl/MobileNetV2Edge-v2"
TABULATED_ID = "haq_rl/MobileNetV2EdgeTabulated-v1"
FIRST_TABULATED_ID = "haq_rl/MobileNetV2EdgeTabulated-v0"  # deprecated, its own 280-row table


@pytest.fixture(scope="module")
def tabulated_env():
    env = gym.make(TABULATED_ID)
    yield env
    env.close()


def _predictor_samples_ship() -> bool:
    return all(entry["rows"] >= PREDICTOR_SAMPLES for entry in
               json.loads((BENCHMARK_DIR / MANIFEST_NAME).read_text())["tables"].values())


@pytest.mark.skipif(not _predictor_samples_ship(), reason="the shipped table holds fewer than the predictor's "
                    "200 samples (rebuild: python bench/build_benchmark_table.py)")
def test_the_predictor_reward_needs_no_supernet_on_a_fresh_machine(tmp_path, monkeypatch):
    # An empty cache: the float model and data come from the package, the predictor from the
    # shipped samples; nothing is trained and no supernet is written.
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path))
    env = gym.make(PREDICTOR_ID, reward_source="predictor")
    try:
        evaluator = env.unwrapped.scorer.evaluator
        assert isinstance(evaluator, PredictedEvaluator) and evaluator.source is None
        env.reset(seed=0)
        terminated = False
        while not terminated:
            _, reward, terminated, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(-info["kl"]) and info["kl"] > 0
        assert 0 <= info["accuracy"] <= 100 and info["cost_ratio"] <= info["budget_ratio"] + 1e-9
    finally:
        env.close()
    assert not list(tmp_path.glob("supernet/*.pt"))


def test_the_shipped_samples_are_the_predictor_samples_of_the_task(tabulated_env):
    # The first rows are exactly the policies sample_policies draws (seed 0) for this task, so
    # once all 200 ship the predictor is the one a local build would fit.
    scorer = tabulated_env.unwrapped.scorer
    table = shipped_table(tabulated_env.unwrapped.task)
    samples = table.predictor_samples()
    assert 20 <= len(samples.kl) <= PREDICTOR_SAMPLES
    stream = walled_random_policies(scorer, seed=0)
    for w, a in zip(samples.w_bits[:20], samples.a_bits[:20], strict=True):
        expected_w, expected_a = next(stream)
        assert np.array_equal(w, expected_w) and np.array_equal(a, expected_a)
    assert (table.origin[:PREDICTOR_SAMPLES] == ORIGIN_PREDICTOR_SAMPLE).all()
    assert np.isfinite(table.kl).all() and (table.kl >= 0).all()


def test_the_tabulated_reward_answers_from_the_table_where_it_can(tabulated_env):
    scorer = tabulated_env.unwrapped.scorer
    assert isinstance(scorer.evaluator, TabulatedEvaluator)
    table = scorer.evaluator.table
    row = len(table.kl) - 1
    info = scorer.score(table.w_bits[row].astype(np.int64), table.a_bits[row].astype(np.int64), enforce=False)
    assert info["reward_from"] == "table" and info["kl"] == table.kl[row] and info["reward"] == -table.kl[row]
    tabulated = {(w.tobytes(), a.tobytes()) for w, a in zip(table.w_bits, table.a_bits, strict=True)}
    rng = np.random.default_rng(1)
    while True:  # a policy the table does not hold: the predictor fitted on the table answers
        w, a = rng.integers(2, 9, table.w_bits.shape[1]), rng.integers(2, 9, table.w_bits.shape[1])
        w, a, _ = scorer.apply_wall(w, a)
        if (w.astype(np.uint8).tobytes(), a.astype(np.uint8).tobytes()) not in tabulated:
            break
    info = scorer.score(w, a)
    assert info["reward_from"] == "predictor" and info["kl"] > 0


def test_a_tampered_table_is_not_used(tabulated_env, tmp_path, caplog):
    folder = tmp_path / "benchmark"
    shutil.copytree(BENCHMARK_DIR, folder)
    name = "mobilenetv2edgetabulated-v1.npz"  # the table TABULATED_ID pins
    assert name in json.loads((folder / MANIFEST_NAME).read_text())["tables"]
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    assert shipped_table(tabulated_env.unwrapped.task, folder=folder) is None
    assert "fails its SHA-256 check" in caplog.text


def test_a_task_without_a_table_is_refused_in_one_line(tmp_path):
    from haq_rl.errors import ConfigError

    with pytest.raises(ConfigError, match="no shipped table for task .* tables ship for: haq_rl/"):
        gym.make("haq_rl/LeNet5Size-v1", reward_source="tabulated")


def test_the_stratified_sample_spreads_over_costs_and_rewards():
    rng = np.random.default_rng(0)
    ratios, rewards = rng.uniform(0.2, 1, 600), rng.normal(size=600)
    picked = stratified_sample(ratios, rewards, 60)
    assert len(picked) == len(set(picked)) == 60
    bins = np.argsort(np.argsort(ratios))[picked] // 100  # six equal-count bins of the cost ratio
    assert np.bincount(bins, minlength=6).tolist() == [10] * 6
    assert sorted(bins[:6]) == list(range(6))  # every prefix is stratified
    # within a bin, both ends of the reward range are taken
    in_bin = np.argsort(ratios)[:100]
    first_bin = [i for i, b in zip(picked, bins, strict=True) if b == 0]
    assert rewards[first_bin].max() == rewards[in_bin].max() and rewards[first_bin].min() == rewards[in_bin].min()


def test_the_shipped_coefficients_predict_as_the_fit_on_the_shipped_rows(tabulated_env):
    # What ships is the fit's ridge coefficients (loaded without sklearn): refitting the rows
    # with the same kind gives the same predictions.
    from haq_rl.supernet.predictor import BitsPredictor

    evaluator = tabulated_env.unwrapped.scorer.evaluator
    table = evaluator.table
    refit = BitsPredictor(evaluator.predictor.kind, evaluator.predictor.bits).fit(table.rows())
    rng = np.random.default_rng(2)
    w, a = rng.integers(2, 9, (50, table.w_bits.shape[1])), rng.integers(2, 9, (50, table.w_bits.shape[1]))
    for shipped, fitted in zip(evaluator.predictor.predict(w, a), refit.predict(w, a), strict=True):
        np.testing.assert_allclose(shipped, fitted, rtol=1e-9, atol=1e-12)


def test_the_integer_program_prices_the_tabulated_task_from_the_table(tabulated_env, tmp_path, monkeypatch):
    # hawq / guided with sensitivity=supernet: priced on the shipped evaluations, no supernet.
    from haq_rl.task.sources import trained_prices

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path))
    prices = trained_prices(tabulated_env.unwrapped.task, progress=False)  # the tabulated row's prices
    assert prices.weight.shape == (len(prices.layer_names), 7) and (prices.weight >= 0).all()
    assert (prices.weight[:, -1] == 0).all() and (np.diff(prices.weight, axis=1) <= 0).all()
    assert not list(tmp_path.glob("supernet/*"))


def test_the_predictor_reward_uses_the_shipped_samples_only_when_all_ship(tabulated_env, caplog):
    # A partial build (fewer rows than the predictor's 200 samples) must not change what
    # reward_source=predictor means: it is then built here, as without a shipped file.
    from haq_rl.supernet.tabulated import shipped_evaluator

    evaluator = shipped_evaluator(tabulated_env.unwrapped.task)
    if _predictor_samples_ship():
        assert isinstance(evaluator, PredictedEvaluator) and evaluator.fit_report["samples"] == PREDICTOR_SAMPLES
    else:
        assert evaluator is None and "of the predictor's 200 samples: building them here" in caplog.text


def _rows(table, count: int | None = None) -> dict:
    return {key: list(getattr(table, key)[:count]) for key in ("w_bits", "a_bits", "kl", "accuracy", "origin")}


def test_each_tabulated_id_keeps_its_own_table(tabulated_env):
    # v1 pins the large table by name; v0 names none, so it keeps the task's default table
    # (the first shipped: 280 rows), and those are exactly v1's first rows (one stream).
    from haq_rl.env.registration import DeprecatedEnvWarning

    large = tabulated_env.unwrapped.scorer.evaluator.table
    with pytest.warns(DeprecatedEnvWarning):
        env = gym.make(FIRST_TABULATED_ID)
    try:
        small = env.unwrapped.scorer.evaluator.table
    finally:
        env.close()
    assert len(small.kl) == 280 < len(large.kl)
    for key, values in _rows(small).items():
        np.testing.assert_array_equal(np.array(_rows(large, 280)[key]), np.array(values), err_msg=key)


def test_an_unknown_table_is_refused_in_one_line():
    from haq_rl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"table='nope-v9': not a shipped table of task \S+; its tables: "
                                          r"mobilenetv2edgetabulated-v0, mobilenetv2edgetabulated-v1$"):
        gym.make("haq_rl/MobileNetV2EdgeSupernet-v0", reward_source="tabulated",
                 reward_options={"epochs": 3, "table": "nope-v9"})


def test_a_shipped_name_is_never_rewritten_and_a_new_one_is_found_by_name(tabulated_env, tmp_path):
    from haq_rl.errors import ConfigError
    from haq_rl.task import load_task

    folder = tmp_path / "benchmark"
    shutil.copytree(BENCHMARK_DIR, folder)
    task = tabulated_env.unwrapped.task
    work = {**_rows(tabulated_env.unwrapped.scorer.evaluator.table, 300), "sample": {}}
    with pytest.raises(ConfigError, match="already ships .* rows, not 300: .* under a new name"):
        ship_table(TABULATED_ID, task, work, command="test", name="mobilenetv2edgetabulated-v1", folder=folder)
    ship_table(TABULATED_ID, task, work, command="test", name="test-v9", folder=folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())["tables"]
    assert manifest["test-v9.npz"]["rows"] == 300 and not manifest["test-v9.npz"]["default"]
    named = load_task(TABULATED_ID, reward_options={"epochs": 3, "table": "test-v9"})
    assert len(shipped_table(named, folder=folder).kl) == 300
    unnamed = load_task(FIRST_TABULATED_ID)
    assert len(shipped_table(unnamed, folder=folder).kl) == 280  # the default table is still the first


def test_the_shipped_sample_ranks_the_fine_tuned_accuracy_as_documented(tabulated_env):
    # docs/leaderboard.md: Spearman 0.910 of the tabulated reward against the 1-epoch
    # fine-tuned test accuracy over the stratified sample (bench/results/benchmark_table_spearman.md).
    from scipy.stats import spearmanr

    table = tabulated_env.unwrapped.scorer.evaluator.table
    assert len(table.sample_index) >= 60 and np.isfinite(table.sample_finetuned).all()
    rho = spearmanr(-table.kl[table.sample_index], table.sample_finetuned).statistic
    assert rho == pytest.approx(0.9101, abs=5e-5) and rho >= 0.9
