"""The peers a practitioner would pick, in our harness: hawq (sensitivity + integer program) and tpe."""

import itertools
import sys

import numpy as np
import pytest

from haq_rl.cli import main
from haq_rl.errors import BudgetError, ConfigError, MissingDependencyError
from haq_rl.fileio import read_json
from haq_rl.quant import QuantPolicy
from haq_rl.run.episodes import read_episode_rows
from haq_rl.search import SearchConfig, run_search
from haq_rl.search.integer_program import allocate_bits

LENET = "haq_rl/LeNet5Size-v1"
LENET_LATENCY = {"hardware": "bismo-edge", "objective": "latency", "weight_method": "linear",
                 "pin_first_last": False}


def _config(tmp_path, name, **kwargs):
    return SearchConfig(env=LENET, out=str(tmp_path / name), progress=False,
                        env_overrides=LENET_LATENCY, **kwargs)


# ------------------------------------------------------------------ integer program
def _brute_force(weight, activation, cost, budget, bits, pinned, tied):
    free = [i for i in range(len(pinned)) if not pinned[i]]
    options = [(b, b) for b in bits] if tied else list(itertools.product(bits, bits))
    best = None
    for choice in itertools.product(options, repeat=len(free)):
        w = np.full(len(pinned), 8)
        a = np.full(len(pinned), 8)
        for layer, (wb, ab) in zip(free, choice, strict=True):
            w[layer], a[layer] = wb, ab
        total = sum(cost[i, w[i] - 1, a[i] - 1] for i in range(len(pinned)))
        if total > budget:
            continue
        value = sum(weight[i, bits.index(w[i])] + activation[i, bits.index(a[i])] for i in free)
        if best is None or value < best[0] - 1e-12:
            best = (value, w, a)
    return best


@pytest.mark.parametrize("tied", [True, False])
def test_integer_program_finds_the_brute_force_optimum(tied):
    rng = np.random.default_rng(3)
    layers, bits = 4, (2, 3, 4)
    # Loss falls and cost rises with bits, as in real tables.
    weight = np.sort(rng.uniform(0, 1, (layers, 3)), axis=1)[:, ::-1] * 1e-4
    activation = np.sort(rng.uniform(0, 1, (layers, 3)), axis=1)[:, ::-1] * 1e-4
    wg, ag = np.meshgrid(np.arange(1, 9), np.arange(1, 9), indexing="ij")
    cost = np.stack([rng.uniform(0.5, 2) * wg * ag for _ in range(layers)])
    pinned = np.array([True, False, False, False])
    budget = float(cost[0, 7, 7]) + 0.6 * float(sum(cost[i, 3, 3] for i in range(1, layers)))
    w, a = allocate_bits(weight, activation, cost, budget, bits=bits, pinned=pinned, tied=tied)
    value, best_w, best_a = _brute_force(weight, activation, cost, budget, list(bits), pinned, tied)
    total = sum(cost[i, w[i] - 1, a[i] - 1] for i in range(layers))
    assert total <= budget + 1e-9
    assert w[0] == a[0] == 8
    if tied:
        assert (w == a).all()
    found = sum(weight[i, bits.index(w[i])] + activation[i, bits.index(a[i])] for i in range(1, layers))
    assert found == pytest.approx(value, rel=1e-6)


def test_integer_program_infeasible_budget_is_a_budget_error():
    cost = np.ones((2, 8, 8))
    with pytest.raises(BudgetError, match="no bit allocation"):
        allocate_bits(np.zeros((2, 2)), np.zeros((2, 2)), cost, 0.5, bits=(2, 3),
                      pinned=np.array([False, False]))


# ------------------------------------------------------------------ sensitivity
def test_sensitivity_falls_with_bits_and_matches_a_direct_hessian(pretrained_lenet5, mnist5k_splits):
    import torch

    from haq_rl.quant import PolicyApplier, QuantConfig
    from haq_rl.quant.sensitivity import hessian_traces, layer_sensitivity

    model, _ = pretrained_lenet5
    inputs, labels = mnist5k_splits.search_train.tensors
    batches = [(inputs[:64], labels[:64])]
    applier = PolicyApplier(model, [inputs[:64]], QuantConfig())
    result = layer_sensitivity(applier, batches, bits=(2, 4, 8), probes=4)
    assert result.layer_names == applier.layer_names
    assert (np.diff(result.weight, axis=1) < 0).all() and (np.diff(result.activation, axis=1) < 0).all()
    assert (result.hessian_trace > 0).all()
    # Hutchinson on the last layer (84 x 10 weights + bias): compare with the exact trace.
    name, last = list(model.named_modules())[-1]
    weight = last.weight

    def loss_of(w):
        saved = weight.data.clone()
        def forward(x):
            return torch.func.functional_call(model, {f"{name}.weight": w}, (x,))
        loss = torch.nn.functional.cross_entropy(forward(inputs[:64]), labels[:64])
        weight.data.copy_(saved)
        return loss

    exact = torch.autograd.functional.hessian(loss_of, weight.detach().clone())
    exact_trace = float(exact.reshape(weight.numel(), weight.numel()).diagonal().sum()) / weight.numel()
    estimate = hessian_traces(model, [(name, last)], batches, probes=200, seed=1)[0]
    assert estimate == pytest.approx(exact_trace, rel=0.15)


# ------------------------------------------------------------------ methods
@pytest.mark.parametrize("activations", ["tied", "separate"])
def test_hawq_policy_meets_the_budget_with_one_evaluation(tmp_path, activations):
    result = run_search(_config(tmp_path, activations, method="hawq", episodes=80, budget=0.4,
                                options={"activations": activations, "probes": 4}))
    rows = read_episode_rows(result.run_dir / "episodes.csv")
    assert len(rows) == 1 and rows[0]["phase"] == "hawq" and result.evaluations == 1
    assert result.best_cost_ratio <= 0.4 + 1e-9 and int(rows[0]["bits_lowered"]) == 0
    policy = QuantPolicy.from_json(result.best_policy_path)
    if activations == "tied":
        assert (policy.w_bits == policy.a_bits).all()
    sensitivity = (result.run_dir / "sensitivity.csv").read_text().splitlines()
    assert sensitivity[0].startswith("layer,bits,weight_sensitivity")
    assert len(sensitivity) == 1 + len(policy.w_bits) * 7
    assert result.best_accuracy > 50  # LeNet-5 at half its 8/8 latency keeps most of its accuracy


def test_tpe_is_deterministic_by_seed_and_meets_the_budget(tmp_path):
    runs = [run_search(_config(tmp_path, name, method="tpe", episodes=12, budget=0.4, seed=seed,
                               options={"startup_trials": 4}))
            for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    texts = [(r.run_dir / "episodes.csv").read_text() for r in runs]
    assert texts[0] == texts[1] and texts[0] != texts[2]
    rows = read_episode_rows(runs[0].run_dir / "episodes.csv")
    assert len(rows) == 12 and {r["phase"] for r in rows} == {"tpe"}
    assert all(float(r["cost_ratio"]) <= 0.4 + 1e-9 for r in rows)
    assert read_json(runs[0].run_dir / "config.json")["search"]["method"] == "tpe"


def test_tpe_resume_continues_to_the_requested_trials(tmp_path):
    first = run_search(_config(tmp_path, "r", method="tpe", episodes=5, budget=0.4,
                               options={"startup_trials": 2}))
    config = read_json(first.run_dir / "config.json")["search"]
    config["episodes"] = 8
    (first.run_dir / "config.json").write_text(
        __import__("json").dumps({**read_json(first.run_dir / "config.json"), "search": config}))
    resumed = run_search(SearchConfig(progress=False), resume=first.run_dir)
    rows = read_episode_rows(resumed.run_dir / "episodes.csv")
    assert [int(r["episode"]) for r in rows] == list(range(8))


def test_bad_method_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="did you mean 'probes'"):
        SearchConfig(method="hawq", options={"probe": 3})
    with pytest.raises(ConfigError, match="takes no options"):
        SearchConfig(method="random", options={"probes": 3})
    with pytest.raises(ConfigError, match="activations='both'"):
        run_search(_config(tmp_path, "bad", method="hawq", options={"activations": "both"}))
    code = main(["search", LENET, "--method", "hawq", "--option", "images=0", "--out",
                 str(tmp_path / "cli"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "images=0" in err


def test_tpe_without_optuna_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"haq-rl\[tpe\]"):
        run_search(_config(tmp_path, "no-optuna", method="tpe", episodes=2))
    code = main(["search", LENET, "--method", "tpe", "--episodes", "2", "--out", str(tmp_path / "cli"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "optuna" in err


def test_cli_hawq_search(tmp_path, capsys):
    code = main(["search", LENET, "--method", "hawq", "--budget", "0.4", "--set", "objective=latency",
                 "--set", "hardware=bismo-edge", "--set", "weight_method=linear", "--option", "probes=2",
                 "--out", str(tmp_path / "cli"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "best policy" in out
    assert QuantPolicy.from_json(tmp_path / "cli" / "best_policy.json").metadata["method"] == "hawq"


# ------------------------------------------------------------------ the guided agent
def test_guided_agent_starts_from_the_integer_program_and_learns(tmp_path):
    config = _config(tmp_path, "g", method="guided", episodes=16, budget=0.4, options={"probes": 2},
                     agent={"warmup_episodes": 4})
    result = run_search(config)
    rows = read_episode_rows(result.run_dir / "episodes.csv")
    assert [r["phase"] for r in rows] == ["warm-start"] + ["warm-up"] * 4 + ["explore"] * 10 + ["final"]
    assert all(float(r["cost_ratio"]) <= 0.4 + 1e-9 for r in rows)
    # Episode 0 is exactly what --method hawq (same options and seed) scores.
    hawq = run_search(_config(tmp_path, "h", method="hawq", budget=0.4,
                              options={"probes": 2, "activations": "separate"}))
    hawq_row = read_episode_rows(hawq.run_dir / "episodes.csv")[0]
    bits = [k for k in rows[0] if k.startswith(("w:", "a:"))]
    assert [rows[0][k] for k in bits] == [hawq_row[k] for k in bits]
    # The best policy is never worse than the anchor it started from.
    assert result.best["reward"] >= float(rows[0]["reward"])
    # Same seed, same run (the sensitivity now comes from the cache).
    again = run_search(_config(tmp_path, "g2", method="guided", episodes=16, budget=0.4, options={"probes": 2},
                               agent={"warmup_episodes": 4}))
    assert (again.run_dir / "episodes.csv").read_text() == (result.run_dir / "episodes.csv").read_text()


def test_guided_agent_resumes(tmp_path):
    config = _config(tmp_path, "r", method="guided", episodes=8, budget=0.4, options={"probes": 2},
                     agent={"warmup_episodes": 2}, checkpoint_every=3)
    full = run_search(config)
    rows = read_episode_rows(full.run_dir / "episodes.csv")
    # A search stopped at its checkpoint after 6 episodes, resumed to 8 (a log cut below the
    # agent's checkpoint is refused instead: tests/test_faults.py).
    stopped = run_search(_config(tmp_path, "s", method="guided", episodes=6, budget=0.4, options={"probes": 2},
                                 agent={"warmup_episodes": 2}, checkpoint_every=3))
    resumed = run_search(SearchConfig(progress=False), resume=stopped.run_dir, resume_changes={"episodes": 8})
    again = read_episode_rows(resumed.run_dir / "episodes.csv")
    assert [int(r["episode"]) for r in again] == list(range(8)) and again[0] == rows[0]


def test_reward_scores_kl_and_batchnorm_reestimation():
    import gymnasium as gym

    import haq_rl.env  # noqa: F401  (registers the ids)

    plain = gym.make("haq_rl/ResNet8Edge-v0").unwrapped
    recal = gym.make("haq_rl/ResNet8Edge-v0", bn_recalibration=1, reward_metric="kl").unwrapped
    layers = len(plain.layer_names)
    w, a = np.full(layers, 3), np.full(layers, 3)
    before = {k: v.clone() for k, v in recal.scorer.evaluator.model.state_dict().items()}
    plain_scores, recal_scores = plain.scorer.evaluator.scores(w, a), recal.scorer.evaluator.scores(w, a)
    assert plain.scorer.evaluator.scores(np.full(layers, 8), np.full(layers, 8)).kl < plain_scores.kl
    assert recal_scores.kl < plain_scores.kl  # re-estimated statistics undo part of the shift
    for name, value in recal.scorer.evaluator.model.state_dict().items():  # BN statistics restored
        assert torch_equal(value, before[name]), name
    info = recal.score_policy(w, a, enforce=False)
    assert info["reward"] == pytest.approx(-info["kl"]) and info["kl"] == pytest.approx(recal_scores.kl)
    assert recal.scorer.evaluator.float_accuracy == plain.scorer.evaluator.float_accuracy


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)
