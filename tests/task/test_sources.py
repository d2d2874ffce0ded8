"""The reward-source and start tables (haq_rl/task/sources.py): rows, rules, one home, a fourth source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from haq_rl.errors import ConfigError, UnknownNameError
from haq_rl.task.sources import (
    MODEL_STARTS,
    REWARD_SOURCE_TABLE,
    REWARD_SOURCES,
    RewardSource,
    StartSettings,
    check_start,
    model_start,
)
from haq_rl.task.spec import TaskSpec, resolve_spec

PACKAGE = Path(__file__).resolve().parents[2] / "haq_rl"
LENET = "haq_rl/LeNet5Size-v1"
#: The only modules that may compare a reward_source to a name: the table and the spec's validation.
NAMING_REWARD_SOURCES = {"task/sources.py", "task/spec.py"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_entry_point_of_every_row_loads():
    for row in REWARD_SOURCE_TABLE.values():
        assert callable(row.load("evaluator")), row.name
        assert row.prices is None or callable(row.load("prices")), row.name
        assert row.options is None or isinstance(row.load("options"), type), row.name
        assert row.start in MODEL_STARTS, f"{row.name}: start {row.start!r} is no row of MODEL_STARTS"
        assert not (row.trained_weights and row.prices is None), f"{row.name}: sensitivity=auto needs its prices"
    for start in MODEL_STARTS.values():
        assert callable(start.load()), start.name


def test_only_the_table_and_the_spec_compare_a_reward_source_to_its_name():
    """``reward_source == "supernet"`` (or ``in ("supernet", ...)``, on any variable) anywhere
    else would be a second home for a row's abilities: ask the row instead."""
    found = []
    for path in _sources():
        where = str(path.relative_to(PACKAGE))
        if where in NAMING_REWARD_SOURCES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = {c.value for operand in (node.left, *node.comparators) for c in ast.walk(operand)
                         if isinstance(c, ast.Constant) and isinstance(c.value, str)}
                if names & set(REWARD_SOURCES) - {"supernet"} or (
                        "supernet" in names and "sensitivity" not in ast.unparse(node)):
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "compare to a reward source's name outside its table:\n" + "\n".join(found)


def test_outside_the_supernet_package_only_the_cli_and_the_tables_name_it():
    """Nothing below the CLI imports haq_rl.supernet: the tables' entry points (strings,
    imported when used) are the only way in."""
    importing, naming = [], []
    for path in _sources():
        where = str(path.relative_to(PACKAGE))
        if where.startswith("supernet/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            if any(m == "haq_rl.supernet" or m.startswith("haq_rl.supernet.") for m in modules):
                importing.append(where)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.startswith("haq_rl.supernet.") and ":" in node.value:
                naming.append(where)
    assert set(importing) <= {"commands/supernet.py"}, importing
    assert set(naming) == {"task/sources.py"}, naming


def test_a_spec_sets_every_supernet_option_and_reads_the_old_key():
    spec = resolve_spec(LENET, reward_source="supernet", reward_options={"epochs": 1, "lr": 1e-3, "random_paths": 1})
    assert spec.reward_options == (("epochs", 1), ("lr", 1e-3), ("random_paths", 1))
    assert TaskSpec.from_dict(spec.to_dict()) == spec  # config.json holds pairs
    # supernet_epochs (specs, config.json and --set before reward_options) is the epochs option.
    assert resolve_spec(LENET, reward_source="predictor", supernet_epochs=2).reward_options == (("epochs", 2),)
    assert resolve_spec("haq_rl/MobileNetV2Edge-v2").reward_options == (("epochs", 3),)  # a shipped YAML of the old key
    old_record = {**resolve_spec(LENET).to_dict(), "supernet_epochs": 3}
    old_record.pop("reward_options")
    assert TaskSpec.from_dict(old_record).reward_options == ()  # a post-training run's unused 3
    # Options follow the source: the supernet's reach the predictor, not the float weights.
    assert spec.replace(reward_source="predictor").reward_options == spec.reward_options
    assert spec.replace(reward_source="post_training").reward_options == ()


@pytest.mark.parametrize("overrides, message", [
    ({"reward_source": "supernet", "reward_options": {"epoch": 1}}, "did you mean 'epochs'"),
    ({"reward_source": "supernet", "reward_options": {"epochs": 0}}, "epochs=0 must be an integer >= 1"),
    ({"reward_source": "supernet", "reward_options": [1, 2]}, "must map settings of reward_source supernet"),
    ({"reward_options": {"epochs": 2}}, "reward_source post_training takes no reward_options"),
    ({"supernet_epochs": 2}, "supernet_epochs=2 sets the supernet's training, which reward_source post_training"),
    ({"reward_source": "oracle"}, "unknown reward_source 'oracle'"),
])
def test_bad_reward_settings_are_one_line(overrides, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message) as error:
        resolve_spec(LENET, **overrides)
    assert "\n" not in str(error.value)


def test_the_start_rule_has_one_home():
    supernet = MODEL_STARTS["supernet"]
    for settings, message in [(StartSettings(quantizer="max_abs"), "start=supernet needs quantizer=lsq"),
                              (StartSettings(fold_bn=True), "fold_bn=true needs start=float")]:
        with pytest.raises(ConfigError, match=message):
            check_start(supernet, settings)
    with pytest.raises(ConfigError, match="start=auto follows the predictor reward; give start=float"):
        check_start(model_start("auto", "predictor"), StartSettings(fold_bn=True), picked_by="predictor")
    check_start(model_start("auto", "post_training"), StartSettings(quantizer="pact", fold_bn=True))
    from haq_rl.finetune import FinetuneConfig

    with pytest.raises(ConfigError, match="start=supernet needs quantizer=lsq"):  # named: refused when built
        FinetuneConfig(start="supernet", quantizer="max_abs")
    FinetuneConfig(start="auto", fold_bn=True)  # auto: checked once the reward source is known


def float_weights_again(task, progress: bool = True):
    """A fourth reward source for the test below: the post-training evaluator under another name."""
    from haq_rl.task.scoring import post_training_evaluator

    return post_training_evaluator(task, progress)


def test_a_fourth_reward_source_is_one_row(tmp_path, monkeypatch):
    """A row in the table is all a search, the fine-tune's start and the workers' choice read."""
    from haq_rl.finetune.policy_model import start_of
    from haq_rl.search import SearchConfig, run_search
    from haq_rl.task.task import load_task

    row = RewardSource("float_again", f"{__name__}:float_weights_again", trained_weights=False, pooled=False,
                       start="float")
    monkeypatch.setitem(REWARD_SOURCE_TABLE, row.name, row)
    result = run_search(SearchConfig(env=LENET, env_overrides={"reward_source": row.name}, method="random",
                                     episodes=3, workers=2, out=str(tmp_path / "run"), progress=False))
    reference = run_search(SearchConfig(env=LENET, method="random", episodes=3, out=str(tmp_path / "ref"),
                                        progress=False))
    assert (result.run_dir / "episodes.csv").read_text() == (reference.run_dir / "episodes.csv").read_text()
    assert start_of(load_task(LENET, reward_source=row.name)).name == "float"
