"""The methods table: every row loads, and its settings are checked when a SearchConfig is built."""

from __future__ import annotations

import pytest

from haq_rl.errors import ConfigError, UnknownNameError
from haq_rl.search import METHODS, SearchConfig
from haq_rl.search.methods import METHOD_TABLE, method_entry


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
    assert options["probes"] == 4 and options["anchor_sigma"] == 0.04
    assert SearchConfig(method="random").method_options() == {}
    assert all(row.options is None or row.parse_options({}) for row in METHOD_TABLE.values())


def test_agent_settings_only_for_rl_methods():
    SearchConfig(method="td3", agent={"tau": 0.01})
    with pytest.raises(ConfigError, match="has no agent"):
        SearchConfig(method="tpe", agent={"tau": 0.01})
    with pytest.raises(ConfigError, match="did you mean 'warmup_episodes'"):
        SearchConfig(method="guided", agent={"warmup_episode": 3})
