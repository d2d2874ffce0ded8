"""Shared session-scoped fixtures: pretrained models and the default mnist5k splits.

The pretrained models come from :func:`haq_rl.pretrain.get_pretrained` with the default
recipe, i.e. from the user cache (``$HAQ_RL_CACHE``, default ``~/.cache/haq_rl``): the
first test session trains them (about a minute for mobilenetv2 on CPU), later sessions
load them in well under a second. Tests must not modify these objects in place without
restoring them (they are shared by the whole session); deep-copy when in doubt.
"""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on 2 shared cores: one torch thread avoids oversubscription (measured
    several times faster under load) and makes results independent of the core count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def mnist5k_splits():
    """``make_splits(load_dataset("mnist5k"))`` with the default SplitConfig (seed 0)."""
    from haq_rl.data import load_dataset, make_splits

    return make_splits(load_dataset("mnist5k"))


@pytest.fixture(scope="session")
def pretrained_mobilenetv2() -> tuple[nn.Module, dict[str, Any]]:
    """(model, meta): the default small-input MobileNetV2 pretrained on mnist5k, eval mode."""
    from haq_rl.pretrain import PretrainConfig, get_pretrained

    model, meta = get_pretrained(PretrainConfig(model="mobilenetv2"))
    return model.eval(), meta


@pytest.fixture(scope="session")
def pretrained_lenet5() -> tuple[nn.Module, dict[str, Any]]:
    """(model, meta): LeNet-5 pretrained on mnist5k with the default recipe, eval mode."""
    from haq_rl.pretrain import PretrainConfig, get_pretrained

    model, meta = get_pretrained(PretrainConfig(model="lenet5"))
    return model.eval(), meta


#: Checks that repeat what a faster test of the default run already covers, moved to
#: ``make test-slow`` to keep the default run under its time limit (durations measured on
#: 2 idle cores; the default run keeps one end-to-end test of each command, notebook
#: 01, the default env's gymnasium check and one kill-and-resume test per search path).
SLOW_IN_DEFAULT_RUN = {
    "tests/test_notebooks.py::test_notebook_runs[02_inspect_policies.ipynb]",  # 68 s
    "tests/test_notebooks.py::test_notebook_runs[03_env_for_rl_research.ipynb]",  # 9 s
    "tests/test_notebooks.py::test_notebook_runs[04_bring_your_own_model.ipynb]",  # 10 s
    "tests/quant/test_accuracy.py::test_uniform_policies_mobilenetv2",  # 31 s
    "tests/env/test_env.py::test_gymnasium_and_sb3_checkers_pass[haq_rl/MobileNetV2Edge-v1]",  # 29 s
    "tests/env/test_env.py::test_gymnasium_and_sb3_checkers_pass[haq_rl/MobileNetV2BitFusionEnergy-v1]",  # 29 s
    "tests/env/test_env.py::test_gymnasium_and_sb3_checkers_pass[haq_rl/ResNet18BitFusionEnergy-v0]",  # 10 s
    "tests/env/test_env.py::test_wall_property_over_1000_full_episodes_lenet",  # 18 s
    "tests/supernet/test_supernet.py::test_hawq_prices_layers_on_the_supernet",  # 27 s
    "tests/supernet/test_supernet.py::test_predictor_reward_is_fast_and_ranks_like_the_supernet",  # 9 s
    "tests/hardware/test_measured.py::test_registered_env_on_this_cpu",  # 20 s
    "tests/task/test_budget.py::test_room_policy_finetunes_within_3_points_of_float[resnet8-edge]",  # 15 s
    "tests/run/test_lock_and_kill.py::test_kill_during_finetune_then_rerun",  # 12 s
    "tests/test_budgets.py::test_guided_with_budgets_and_two_workers_resumes_exactly",  # 9 s
    "tests/test_parallel.py::test_guided_with_two_workers_resumes_exactly_after_kill",  # 9 s
    "tests/test_parallel.py::test_ray_workers_record_the_rows_of_process_workers",  # 12 s
    "tests/test_parallel.py::test_ddpg_with_two_workers_resumes_exactly_after_kill[process]",  # 7 s
    # The default env is built and stepped by tests/env's default_env fixture; FashionResNet8Edge-v0's
    # checkers run in the default run.
    "tests/env/test_env.py::test_gymnasium_and_sb3_checkers_pass[haq_rl/FashionMobileNetV2Edge-v0]",  # 28 s
    "tests/supernet/test_supernet.py::test_gymnasium_and_sb3_checkers_pass_on_the_supernet_reward",  # 29 s
    "tests/test_user_weights.py::test_search_uses_the_given_weights_and_trains_nothing",  # 17 s
    "tests/test_budgets.py::test_resume_after_kill_is_exact",  # 9 s
    "tests/test_parallel.py::test_deterministic_baselines_resume_exactly",  # 6 s
    "tests/run/test_lock_and_kill.py::test_two_concurrent_searches_on_one_run_directory",  # 7 s
    "tests/test_budgets.py::test_finetune_evaluate_and_report_pick_a_budget",  # 11 s
    "tests/test_finetune.py::test_a_bare_policy_is_compared_within_its_own_budget",  # 7 s
    "tests/supernet/test_supernet.py::test_the_finetune_trains_a_missing_supernet_first",  # 7 s
    "tests/supernet/test_supernet.py::test_cache_is_reused_and_a_corrupt_entry_is_retrained",  # 5 s
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW_IN_DEFAULT_RUN:
            item.add_marker(pytest.mark.slow)
