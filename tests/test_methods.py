"""The methods table: every row loads, and its settings are checked when a SearchConfig is built."""

from __future__ import annotations

import pytest

from haq_rl.errors import ConfigError, UnknownNameError
from haq_rl.run.episodes import read_episode_rows
from haq_rl.search import METHODS, SearchConfig, run_search
from haq_rl.search.hooks import AgentHooks
from haq_rl.search.methods import METHOD_TABLE, Method, method_entry


@pytest.mark.parametrize("name", METHODS)
def test_every_entry_point_loads(name):
    assert callable(method_entry(name).load())


def test_the_default_method_is_listed_first():
    assert METHODS[0] == SearchConfig().method == "guided"


def test_unknown_method_suggests_a_name():
    with pytest.raises(UnknownNameError, match="did you mean 'nsga2'"):
        SearchConfig(method="nsga")


@pytest.mark.parametrize("name, key, value, message", [
    ("hawq", "probe", 3, "did you mean 'probes'"),
    ("hawq", "activations", "both", "activations='both'"),
    ("guided", "anchor_sigma", 2, "a number in \\[0, 1\\]"),
    ("nsga2", "population", 1, "an integer >= 2"),
    ("random", "probes", 3, "takes no options"),
])
def test_bad_options_fail_when_the_config_is_built(name, key, value, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(method=name, options={key: value})


def test_options_are_the_defaults_with_the_given_ones_on_top():
    options = SearchConfig(method="guided", options={"probes": 4}).method_options()
    assert options.probes == 4 and options.anchor_sigma == 0.04  # typed: the row's dataclass
    assert SearchConfig(method="random").method_options() is None
    assert all(row.options is None or row.parse_options({}) for row in METHOD_TABLE.values())


def test_agent_settings_only_for_rl_methods():
    SearchConfig(method="td3", agent={"tau": 0.01})
    with pytest.raises(ConfigError, match="has no agent"):
        SearchConfig(method="tpe", agent={"tau": 0.01})
    with pytest.raises(ConfigError, match="did you mean 'warmup_episodes'"):
        SearchConfig(method="guided", agent={"warmup_episode": 3})


class CountingHooks(AgentHooks):
    """Hooks of a test method: what the RL driver called, in order."""

    calls: list[str] = []

    def start(self, agent):
        CountingHooks.calls.append("start")

    def _on_rollout_start(self):
        CountingHooks.calls.append("rollout")


def test_a_new_rl_method_is_one_row(tmp_path, monkeypatch):
    """TD3 with a pinned warm-up and its own hooks: a row, and the driver runs it unchanged."""
    row = Method("td3-short", "haq_rl.search.rl:search_rl", algo="td3", agent=True,
                 agent_defaults={"warmup_episodes": 2}, callback="tests.test_methods:CountingHooks")
    monkeypatch.setitem(METHOD_TABLE, row.name, row)
    monkeypatch.setattr(CountingHooks, "calls", [])
    result = run_search(SearchConfig(env="haq_rl/LeNet5Size-v1", method=row.name, episodes=5,
                                     out=str(tmp_path / "run"), progress=False))
    rows = read_episode_rows(result.run_dir / "episodes.csv")
    assert [r["phase"] for r in rows] == ["warm-up"] * 2 + ["explore"] * 2 + ["final"]
    assert CountingHooks.calls == ["start"] + ["rollout"] * 4


@pytest.mark.parametrize("name", [name for name, row in METHOD_TABLE.items() if row.agent])
def test_every_rl_row_has_hooks(name):
    assert issubclass(method_entry(name).agent_hooks(), AgentHooks)
