"""The bit-width supernet: switching, training, cache, resume, reward, hand-off to the fine-tune.

One LeNet-5 latency task (linear weights, activations searched too) trained for one epoch
(about 10 s on a core) in a cache of this module's own, shared by the tests here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from haq_rl.errors import CheckpointError, ConfigError, PolicyError, UnknownNameError
from haq_rl.quant import QuantPolicy
from haq_rl.quant.outputs import logits_of
from haq_rl.supernet import SupernetConfig, build_supernet, train_supernet
from haq_rl.supernet.reward import supernet_config
from haq_rl.task import load_task
from haq_rl.task.scoring import scorer_for_task

LENET = "haq_rl/LeNet5Size-v1"
#: LeNet-5 under a latency budget with linear weights: activations are searched as well,
#: so every part of the supernet (weight and activation widths) is exercised.
LATENCY = {"hardware": "bismo-edge", "objective": "latency", "budget": 0.4, "pin_first_last": False,
           "weight_method": "linear"}
#: The same task scored by its supernet, trained for one epoch.
SUPERNET = {**LATENCY, "reward_source": "supernet", "reward_options": {"epochs": 1}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder of this module's own (the shipped LeNet-5 needs no pretraining)."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("HAQ_RL_CACHE")
    os.environ["HAQ_RL_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("HAQ_RL_CACHE", None)
    else:
        os.environ["HAQ_RL_CACHE"] = previous


@pytest.fixture(scope="module")
def task(cache):
    return load_task(LENET, **SUPERNET)


@pytest.fixture(scope="module")
def trained(task):
    return train_supernet(task, supernet_config(task), progress=False)


def _reward_accuracy(model: torch.nn.Module, task) -> float:
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in task.reward_batches():
            correct += int((logits_of(model(inputs)).argmax(1) == labels).sum())
            total += len(labels)
    return 100.0 * correct / total


def test_float_mode_is_the_float_model_and_widths_are_checked(task):
    supernet = build_supernet(task)
    inputs = task.reward_batches()[0][0]
    with torch.no_grad():
        float_out = task.model(inputs)
        assert torch.equal(supernet.model(inputs), float_out)  # restored: nothing quantized
        supernet.set_bits(*supernet.smallest())
        assert not torch.allclose(supernet.model(inputs), float_out)
        supernet.restore()
        assert torch.equal(supernet.model(inputs), float_out)
    assert supernet.w_choices == [tuple(range(2, 9))] * len(task.layers)
    w, a = supernet.largest()
    w[1] = 9
    with pytest.raises(PolicyError, match="layer 'features.4'.*not 9/8"):
        supernet.set_bits(w, a)


def test_pinned_layers_and_weight_only_tasks_hold_only_8_bits(cache):
    pinned = build_supernet(load_task(LENET, **{**LATENCY, "pin_first_last": True}))
    assert pinned.w_choices[0] == pinned.a_choices[-1] == (8,)
    assert pinned.w_choices[1] == tuple(range(2, 9))
    weight_only = build_supernet(load_task(LENET))  # the size objective: activations stay at 8
    assert all(choices == (8,) for choices in weight_only.a_choices)


def test_trained_supernet_scores_low_widths_far_better_than_post_training(task, trained):
    """The point of the supernet: at 2 bits the float weights quantized as they are collapse
    (LeNet-5 2/2 post-training is near chance), while one epoch of sandwich training keeps
    most of the accuracy. The margins (20 points, 4x KL; measured 9x) are far beyond the seed noise."""
    supernet_scorer = scorer_for_task(task, progress=False)
    post_training = scorer_for_task(task.with_settings(reward_source="post_training"))
    low = supernet_scorer.uniform(2)
    ours = supernet_scorer.score(*low, enforce=False)
    theirs = post_training.score(*low, enforce=False)
    assert ours["accuracy"] > theirs["accuracy"] + 20
    assert ours["kl"] * 4 < theirs["kl"]
    high = supernet_scorer.score(*supernet_scorer.uniform(8), enforce=False)
    assert high["accuracy"] > ours["accuracy"] and high["kl"] < ours["kl"]
    assert trained.history["steps"] == 28 and len(trained.history["epoch_losses"]) == 1


def test_cache_is_reused_and_a_corrupt_entry_is_retrained(task, trained, caplog):
    again = train_supernet(task, supernet_config(task), progress=False)
    assert not again.trained_now and again.path == trained.path
    assert all(torch.equal(again.supernet.state_dict()[k], v) for k, v in trained.supernet.state_dict().items())
    data = bytearray(trained.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    trained.path.write_bytes(bytes(data))
    fresh = train_supernet(task, supernet_config(task), progress=False)
    assert fresh.trained_now
    assert "does not match its checksum" in caplog.text and "training it again" in caplog.text
    # Same recipe, same seed, same machine: the retrained weights are the same.
    assert all(torch.equal(fresh.supernet.state_dict()[k], v) for k, v in trained.supernet.state_dict().items())


def test_a_supernet_of_another_task_is_refused_in_one_line(task, trained, cache):
    other = load_task(LENET, **{**SUPERNET, "min_bits": 3})
    with pytest.raises(CheckpointError, match="trained for another task: its bit widths") as error:
        train_supernet(other, supernet_config(other), path=trained.path, progress=False)
    assert "\n" not in str(error.value)


@pytest.mark.slow  # two trainings in subprocesses: about 50 s
def test_killed_training_resumes_to_the_same_weights(task, trained, cache, tmp_path):
    """kill -9 after a checkpoint, rerun: the result equals the uninterrupted training's."""
    env = {**os.environ, "HAQ_RL_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    flags = [f"--set={key}={value}" for key, value in LATENCY.items()]
    command = [sys.executable, "-m", "haq_rl", "supernet", LENET, *flags, "--epochs", "1", "--no-progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "supernet").glob("*.partial.pt")) and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {process.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the supernet training at step" in resumed.stderr
    assert not list((tmp_path / "supernet").glob("*.partial.pt"))
    state = torch.load(tmp_path / "supernet" / trained.path.name, weights_only=True)["state_dict"]
    expected = trained.supernet.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.allclose(state[k].float(), v.float(), atol=1e-5) for k, v in expected.items())


def test_the_finetune_starts_from_exactly_what_the_reward_scored(task, trained):
    from haq_rl.supernet.handoff import supernet_start

    rng = np.random.default_rng(0)
    w = rng.integers(2, 9, len(task.layers))
    a = rng.integers(2, 9, len(task.layers))
    scores = scorer_for_task(task, progress=False).evaluator.scores(w, a)
    model = supernet_start(task, QuantPolicy.from_arrays(task.layer_names, w, a), progress=False)
    assert _reward_accuracy(model, task) == pytest.approx(scores.accuracy, abs=1e-9)


def test_predictor_reward_is_fast_and_ranks_like_the_supernet(task, trained):
    from scipy.stats import spearmanr

    from haq_rl.supernet.predictor import predictor_evaluator, sample_policies
    from haq_rl.supernet.reward import supernet_evaluator

    source = supernet_evaluator(task, trained)
    predicted = predictor_evaluator(task, source, trained, samples=40, progress=False)
    assert predicted.fit_report["samples"] == 40
    assert max(predicted.fit_report["cv_spearman"].values()) > 0.6
    # Held-out policies (another seed): the prediction orders them like the supernet does.
    from haq_rl.task.scoring import PolicyScorer

    held = sample_policies(PolicyScorer.from_task(task, evaluator=source), 15, seed=7)
    started = time.perf_counter()
    guesses = [predicted.scores(w, a).kl for w, a in zip(held.w_bits, held.a_bits, strict=True)]
    per_policy = (time.perf_counter() - started) / 15
    assert spearmanr(guesses, held.kl).statistic > 0.6
    assert per_policy < 0.05  # milliseconds, not a forward pass (a loose bound: shared cores)


def test_reward_source_is_validated():
    with pytest.raises(UnknownNameError, match="reward_source 'oracle'"):
        load_task(LENET, reward_source="oracle")
    with pytest.raises(ConfigError, match="finetune_steps=5 needs reward_source=post_training"):
        load_task(LENET, reward_source="supernet", finetune_steps=5)
    with pytest.raises(ConfigError, match="epochs=0"):
        SupernetConfig(epochs=0)


def test_search_finetune_and_evaluate_on_the_supernet_reward(task, trained, tmp_path, capsys):
    """The CLI end to end: a search scored by the supernet, then the fine-tune that starts from
    the supernet (auto) at 0 epochs, i.e. the retraining-free model, then its evaluation."""
    import json

    from haq_rl.cli import main

    run_dir = tmp_path / "run"
    flags = [f"--set={key}={value}" for key, value in SUPERNET.items()]
    assert main(["search", LENET, *flags, "--method", "random", "--episodes", "4", "--out", str(run_dir),
                 "--no-progress"]) == 0
    assert main(["finetune", str(run_dir), "--epochs", "0", "--no-compare", "--no-progress"]) == 0
    assert "from the supernet model" in capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["start"] == "supernet"
    searched = next(row for row in metrics["rows"] if row["name"] == "searched")
    assert searched["accuracy"] == searched["accuracy_before"]  # 0 epochs: nothing trained
    assert main(["evaluate", "--checkpoint", str(run_dir / "finetuned.pt")]) == 0
    assert f"{searched['accuracy']:.2f}" in capsys.readouterr().out
    # The start is a choice: from the float model the same policy is post-training quantized.
    assert main(["finetune", str(run_dir), "--epochs", "0", "--no-compare", "--start", "float",
                 "--out", str(tmp_path / "float"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "float" / "metrics.json").read_text())["start"] == "float"
    assert main(["finetune", str(run_dir), "--start", "supernet", "--fold-bn", "--no-progress"]) == 2
    assert "fold_bn=true needs start=float" in capsys.readouterr().err


def test_hawq_prices_layers_on_the_supernet(task, trained, tmp_path):
    """``hawq --option sensitivity=supernet``: the integer program reads prices fitted on
    supernet evaluations (non-negative, non-increasing in the bits) and its policy meets
    the budget like the Hessian one."""
    import csv

    from haq_rl.search import SearchConfig, run_search

    overrides = SUPERNET
    result = run_search(SearchConfig(env=LENET, env_overrides=overrides, method="hawq", episodes=1,
                                     options={"sensitivity": "supernet"}, out=str(tmp_path / "h"),
                                     progress=False))
    assert result.best_cost_ratio <= 0.4 + 1e-9
    rows = list(csv.DictReader((result.run_dir / "sensitivity.csv").open()))
    for layer in {row["layer"] for row in rows}:
        prices = [float(r["weight_sensitivity"]) for r in rows if r["layer"] == layer]
        assert all(p >= 0 for p in prices) and prices == sorted(prices, reverse=True)
    assert any(float(r["weight_sensitivity"]) > 0 for r in rows)
    # The Hessian prices (and so the guided agent's anchor) work on the supernet reward too:
    # they are the float model's, measured beside the supernet.
    guided = run_search(SearchConfig(env=LENET, env_overrides=overrides, method="guided", episodes=3,
                                     options={"probes": 2, "images": 64}, out=str(tmp_path / "g"),
                                     progress=False))
    assert guided.best_cost_ratio <= 0.4 + 1e-9 and (guided.run_dir / "sensitivity.csv").is_file()


def test_gymnasium_and_sb3_checkers_pass_on_the_supernet_reward(trained):
    """The env contract holds whatever the reward source (the registered MobileNetV2Edge-v2
    runs the same checks in ``make test-slow``, after its minutes of supernet training)."""
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    import haq_rl.env  # noqa: F401  (registers the ids)

    for source in ("supernet", "predictor"):
        env = gym.make(LENET, **{**SUPERNET, "reward_source": source, "reward_metric": "kl"})
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
        env.reset(seed=0)
        terminated = False
        while not terminated:
            _, reward, terminated, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(-info["kl"]) and info["cost_ratio"] <= 0.4 + 1e-9
        if source == "predictor":  # a predicted accuracy stays among the supernet's (issue 39: it read 100.00)
            low, high = env.unwrapped.scorer.evaluator.predictor.accuracy_range
            assert low <= info["accuracy"] <= high < 100.0


def test_a_planted_pickle_in_the_supernet_cache_never_runs(trained, tmp_path):
    """A cache entry that needs unpickling is refused (one line) even with a matching digest,
    and its payload does not run; train_supernet then trains again (see the corrupt case)."""
    import pickle

    from haq_rl.fileio import file_sha256
    from haq_rl.supernet.store import digest_path, read_entry

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    planted = tmp_path / trained.path.name
    planted.write_bytes(pickle.dumps({"format_version": 1, "identity": Payload(), "state_dict": {}}))
    digest_path(planted).write_text(file_sha256(planted) + "\n")
    with pytest.raises(CheckpointError, match="would run code|cannot read") as error:
        read_entry(planted, trained.identity)
    assert "\n" not in str(error.value) and not marker.exists()


def test_the_finetune_trains_a_missing_supernet_first(tmp_path, monkeypatch):
    """A fine-tune from the supernet on an empty cache trains it, though the hand-off runs without gradients."""
    from haq_rl.supernet.handoff import supernet_start

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path))
    fresh = load_task(LENET, **SUPERNET)
    policy = QuantPolicy.from_arrays(fresh.layer_names, [4] * len(fresh.layers), [4] * len(fresh.layers))
    model = supernet_start(fresh, policy, progress=False)
    assert list((tmp_path / "supernet").glob("*.pt.sha256"))
    assert _reward_accuracy(model, fresh) > 50.0


def test_predicted_accuracy_stays_a_percentage():
    """A linear predictor fitted on low-width samples extrapolates past 100 % at 8 bits; it is clipped
    to the accuracies the samples showed (issue 39: a predictor env read 100.00 beside a float 97.8)."""
    from haq_rl.supernet.predictor import BitsPredictor, PolicySamples

    rng = np.random.default_rng(0)
    w = rng.integers(2, 4, (60, 6))
    a = rng.integers(2, 4, (60, 6))
    accuracy = 100.5 - 20.0 * (4.0 ** -w).sum(axis=1)  # <= 98.6 on every sample (2-3 bits), 100.5 at 8 bits
    samples = PolicySamples(w, a, accuracy, np.exp(-w.mean(axis=1)))
    predicted, kl = BitsPredictor("noise", range(2, 9)).fit(samples).predict(np.full((1, 6), 8), np.full((1, 6), 8))
    assert accuracy.max() < 100.0 and predicted[0] == pytest.approx(accuracy.max()) and kl[0] >= 0.0
    low, _ = BitsPredictor("noise", range(2, 9)).fit(samples).predict(np.full((1, 6), 1), np.full((1, 6), 1))
    assert low[0] >= accuracy.min()  # below the sampled widths too


def test_guided_anchor_follows_the_reward_source():
    """guided's default ``sensitivity=auto`` prices its anchor on the supernet when the reward comes from it."""
    from haq_rl.search.hawq import sensitivity_source
    from haq_rl.search.methods import method_entry

    assert method_entry("guided").parse_options({}).sensitivity == "auto"
    assert method_entry("hawq").parse_options({}).sensitivity == "hessian"  # the peer stays HAWQ's
    assert [sensitivity_source("auto", source) for source in ("post_training", "supernet", "predictor")] == \
        ["hessian", "supernet", "supernet"]
    assert sensitivity_source("hessian", "supernet") == "hessian"
    with pytest.raises(ConfigError, match="auto"):
        method_entry("hawq").parse_options({"sensitivity": "auto"})


def test_fold_bn_is_not_dropped_by_the_auto_start(task, trained):
    """``start=auto`` on a supernet-reward task starts from the supernet, whose steps were learned
    on unfolded weights: ``fold_bn`` is refused in one line as with ``start=supernet``, never
    silently dropped (issue 36)."""
    from haq_rl.finetune import FinetuneConfig, finetune_policy

    policy = QuantPolicy.from_arrays(task.layer_names, [4] * len(task.layers), [4] * len(task.layers))
    with pytest.raises(ConfigError, match="fold_bn=true needs start=float") as error:
        finetune_policy(task, policy, FinetuneConfig(epochs=0, compare=False, fold_bn=True), progress=False)
    assert "\n" not in str(error.value)


def test_export_without_a_finetune_writes_the_model_the_supernet_reward_scored(task, trained, tmp_path):
    """``haq-rl export`` of a supernet-reward run with no finetuned.pt exports the supernet at the
    policy (the retraining-free model its reward scored), not the float weights quantized (issue 36)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from haq_rl.export import export_onnx
    from haq_rl.finetune.qat import test_loader
    from haq_rl.search import SearchConfig, run_search
    from haq_rl.supernet.handoff import supernet_start
    from haq_rl.training import evaluate_accuracy

    run = run_search(SearchConfig(env=LENET, env_overrides=SUPERNET, method="random",
                                  episodes=2, out=str(tmp_path / "run"), progress=False)).run_dir
    policy = QuantPolicy.from_json(run / "best_policy.json")
    scored = evaluate_accuracy(supernet_start(task, policy, progress=False), test_loader(task), metric=task.metric)
    result = export_onnx(run)
    assert not result.finetuned and result.torch_accuracy == pytest.approx(scored, abs=1e-4)  # float32 sums
    assert result.onnx_accuracy == pytest.approx(scored, abs=0.5)
