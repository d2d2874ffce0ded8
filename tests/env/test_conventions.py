"""Gymnasium and stable-baselines3 conventions of the registered suite (issue 39): rendering
for SB3's make_vec_env, the one deprecation policy for old ids, what `haq-rl envs` shows,
and seeded vector envs. Everything here builds LeNet-5 envs only (a second each)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_util import make_vec_env

import haq_rl.env
from haq_rl.cli import main
from haq_rl.env.card import SECTIONS, name_and_version
from haq_rl.env.registration import DEPRECATED, DeprecatedEnvWarning
from haq_rl.env.rendering import BIT_HEIGHT, PINNED_COLOUR, WEIGHT_COLOUR
from haq_rl.task.spec import shipped_specs

from .conftest import LENET_ID

SPECS = shipped_specs()


def _finish_episode(env, value: float) -> dict:
    env.reset(seed=0)
    info: dict = {}
    for _ in range(env.unwrapped.steps_per_episode):
        *_, info = env.step(np.full(env.action_space.shape, value, np.float32))
    return info


def test_sb3_make_vec_env_runs_episodes_and_renders_frames():
    """make_vec_env asks for render_mode='rgb_array' by default (it failed with 'unknown render_mode')."""
    vec = make_vec_env(LENET_ID, n_envs=2, seed=0)
    try:
        vec.reset()
        steps = vec.get_attr("steps_per_episode")[0]
        for _ in range(steps):
            _, rewards, dones, infos = vec.step(np.zeros((2, 1), np.float32))
        assert dones.all() and np.isfinite(rewards).all() and all("episode" in info for info in infos)  # Monitor
        frames = vec.get_images()
        assert len(frames) == 2 and frames[0].dtype == np.uint8 and frames[0].ndim == 3
    finally:
        vec.close()


def test_rgb_array_frames_draw_the_bits_and_the_checker_passes_without_warnings():
    env = gym.make(LENET_ID, render_mode="rgb_array")
    assert env.metadata["render_fps"] > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)  # render check included: render_fps is declared
    assert not [str(w.message) for w in caught]
    info = _finish_episode(env, -1.0)  # 2-bit weights everywhere (LeNet-5: nothing pinned, weights only)
    frame = env.render()
    unwrapped = env.unwrapped
    assert frame.shape == (unwrapped.max_bits * BIT_HEIGHT + 2, 7 * len(unwrapped.layer_names) + 1, 3)
    for layer, bits in enumerate(info["w_bits"]):
        bar = frame[:-2, layer * 7 + 1]  # the first pixel column of the layer's weight bar
        colour = PINNED_COLOUR if unwrapped.pinned[layer] else WEIGHT_COLOUR
        assert int((bar == colour).all(axis=1).sum()) == bits * BIT_HEIGHT
    assert env.unwrapped.render_mode == "rgb_array"
    env.close()
    text_env = gym.make(LENET_ID, render_mode="ansi")
    text_env.reset(seed=0)
    assert text_env.render().splitlines()[0].startswith(f"{text_env.unwrapped.layer_names[0]}: w8 a8")
    text_env.close()


# ------------------------------------------------------------------ the deprecation policy
def test_every_deprecated_id_is_registered_with_a_current_replacement():
    for old, deprecation in DEPRECATED.items():
        assert old in gym.registry and old in SPECS, old
        assert deprecation.replaced_by in SPECS and deprecation.replaced_by not in DEPRECATED, old
        assert SPECS[old].description.startswith("deprecated"), old


def test_a_name_never_changes_reward_between_current_versions():
    """A reward offered beside another is a name of its own: every version of a name has its
    current version's reward source, and every current or same-name-replaced one its metric,
    except an old id renamed away (deprecated in favour of another name) and a version
    replaced for a defect whose replacement also moved reward (said in its warning)."""
    by_name: dict[str, list[str]] = {}
    for env_id in SPECS:
        by_name.setdefault(name_and_version(env_id)[0], []).append(env_id)
    for name, ids in by_name.items():
        renamed = {i for i in ids if i in DEPRECATED and name_and_version(DEPRECATED[i].replaced_by)[0] != name}
        current = max(set(ids) - renamed, key=lambda i: name_and_version(i)[1] or 0)
        for env_id in set(ids) - renamed:
            assert SPECS[env_id].reward_source == SPECS[current].reward_source, (env_id, current)
            if SPECS[env_id].reward_metric != SPECS[current].reward_metric:
                assert "reward" in DEPRECATED[env_id].change and "budget" in DEPRECATED[env_id].change, env_id
            if env_id != current:
                assert DEPRECATED[env_id].replaced_by == current, env_id


def test_a_deprecated_id_warns_once_naming_its_replacement_and_a_current_one_does_not():
    with pytest.warns(DeprecatedEnvWarning, match=r"LeNet5Size-v0 is deprecated.*use haq_rl/LeNet5Size-v1 \(budget"):
        old = gym.make("haq_rl/LeNet5Size-v0")
    assert old.unwrapped.scorer.budget_ratio == 0.3  # its meaning is unchanged
    old.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym.make(LENET_ID).close()
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]


_GYMNASIUM_WARNINGS = """
import json, warnings
import haq_rl.env
from gymnasium.envs.registration import _find_spec
from haq_rl.task.spec import shipped_specs
from haq_rl.env.card import name_and_version
found = {}
for env_id in [*shipped_specs(), *sorted({name_and_version(i)[0] for i in shipped_specs()})]:
    with warnings.catch_warnings(record=True) as caught:  # the filters a user's session has
        spec = _find_spec(env_id)  # what gymnasium.make runs first
    found[env_id] = [spec.id, [str(w.message) for w in caught]]
print(json.dumps(found))
"""


def test_gymnasium_never_points_a_haq_rl_id_at_another_version_and_unversioned_ids_mean_what_the_docs_say():
    """In a fresh process (pytest shows every DeprecationWarning, a user's session does not):
    Gymnasium's 'out of date, consider upgrading to v2' (which named another reward for
    MobileNetV2Edge-v1) never appears; an unversioned name resolves to its current id, except
    MobileNetV2Edge, whose highest version is the deprecated -v2 (docs/environments.md)."""
    result = subprocess.run([sys.executable, "-c", _GYMNASIUM_WARNINGS], capture_output=True, text=True,
                            timeout=120, check=True)
    found = json.loads(result.stdout)
    for env_id, (resolved, messages) in found.items():
        assert not [m for m in messages if "out of date" in m], (env_id, messages)
        if name_and_version(env_id)[1] is not None:
            assert resolved == env_id and not messages, (env_id, messages)
        elif env_id == "haq_rl/MobileNetV2Edge":
            assert resolved == "haq_rl/MobileNetV2Edge-v2"
        else:
            assert resolved not in DEPRECATED, (env_id, resolved)
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "environments.md").read_text()
    assert re.search(r"`haq_rl/MobileNetV2Edge` \(unversioned\)[^.]*`haq_rl/MobileNetV2Edge-v2`", docs)


#: The settings of every published id, pinned: an id never changes meaning. A new id is
#: added here when it is published; a changed task is a new version (or a new name), never
#: an edit of a published YAML (only its description and comments may change).
PUBLISHED = {
    "haq_rl/FashionMobileNetV2BitFusionEnergy-v0": "f1ffb448fa27",
    "haq_rl/FashionMobileNetV2Edge-v0": "d5f92f22ab17",
    "haq_rl/FashionMobileNetV2EdgeSupernet-v0": "5f1dba8b60ae",
    "haq_rl/FashionMobileNetV2OrtCpu-v0": "f2c7c9d668d8",
    "haq_rl/FashionResNet8Edge-v0": "3a34bdcf90c9",
    "haq_rl/LeNet5Size-v0": "2b02ae09c79c",
    "haq_rl/LeNet5Size-v1": "185fb355d223",
    "haq_rl/MobileNetV2BitFusionEnergy-v0": "91a081ec614c",
    "haq_rl/MobileNetV2BitFusionEnergy-v1": "1d23d715037f",
    "haq_rl/MobileNetV2Cloud-v0": "95256ca8aa73",
    "haq_rl/MobileNetV2Edge-v0": "b24fb433e054",
    "haq_rl/MobileNetV2EdgeAccuracy-v0": "b24fb433e054",
    "haq_rl/MobileNetV2EdgeSupernet-v0": "f140dbe69755",
    "haq_rl/MobileNetV2EdgePredictor-v0": "984cb5f834b7",
    "haq_rl/MobileNetV2EdgeTabulated-v0": "19fd510e6871",
    "haq_rl/MobileNetV2EdgeTabulated-v1": "74d8bf89f5b6",
    "haq_rl/MobileNetV2Edge-v1": "655d5e3f2389",
    "haq_rl/MobileNetV2Edge-v2": "f140dbe69755",
    "haq_rl/MobileNetV2OrtCpu-v0": "13217c6784fc",
    "haq_rl/ResNet18BitFusionEnergy-v0": "e4b4c7b0515b",
    "haq_rl/ResNet8Edge-v0": "20785b1c0a3a",
}
#: The spec fields a digest covers (those of this writing: a field added later with its
#: default leaves every published digest as it was).
PINNED_FIELDS = ("model", "weights", "dataset", "data_root", "input_size", "normalize", "width_mult", "hardware",
                 "objective", "budget", "budgets", "extra_budgets", "min_bits", "max_bits", "pin_first_last",
                 "step_mode", "budget_feature", "weight_method", "calibration", "calibration_batches",
                 "reward_batch_size", "reward_images", "finetune_epoch_images", "finetune_steps", "finetune_lr",
                 "reward_metric", "bn_recalibration", "reward_source", "reward_options", "split_seed", "device")


def _settings_digest(spec) -> str:
    settings = {name: getattr(spec, name) for name in PINNED_FIELDS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def test_published_ids_stay_registered_with_the_same_settings():
    for env_id, digest in PUBLISHED.items():
        assert env_id in SPECS, f"{env_id} was published: it stays registered (deprecate it instead)"
        assert _settings_digest(SPECS[env_id]) == digest, \
            f"{env_id}'s settings changed: publish the new task as a new version or name instead " \
            "(a TaskSpec field renamed with every task unchanged: update PINNED_FIELDS and the digests)"
    unpinned = sorted(set(SPECS) - set(PUBLISHED))
    assert not unpinned, "pin the settings of the new ids in PUBLISHED: " + ", ".join(
        f"{i!r}: {_settings_digest(SPECS[i])!r}" for i in unpinned)


# ------------------------------------------------------------------ haq-rl envs
def test_envs_rows_tell_every_two_distinct_ids_apart(capsys):
    assert main(["envs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == list(SPECS)
    assert {"reward_source", "reward_metric", "replaced_by"} <= set(rows[0])
    printed = {row["id"]: json.dumps({k: v for k, v in row.items() if k != "id"}, sort_keys=True) for row in rows}
    for first in SPECS:
        for second in SPECS:
            settings = [{k: v for k, v in SPECS[i].to_dict().items() if k not in ("id", "description")}
                        for i in (first, second)]
            if first < second and (settings[0] != settings[1] or DEPRECATED.get(first) != DEPRECATED.get(second)):
                assert printed[first] != printed[second], (first, second)
    by_id = {row["id"]: row for row in rows}
    assert by_id["haq_rl/MobileNetV2Edge-v1"]["reward_source"] == "post_training"
    assert by_id["haq_rl/MobileNetV2Edge-v2"]["replaced_by"] == "haq_rl/MobileNetV2EdgeSupernet-v0"


@pytest.mark.parametrize("env_id", sorted(SPECS))
def test_every_id_has_gymnasiums_documentation_sections(env_id, capsys):
    assert main(["envs", env_id]) == 0
    card = capsys.readouterr().out
    assert [line[3:] for line in card.splitlines() if line.startswith("## ")] == list(SECTIONS)
    spec = SPECS[env_id]
    assert f"- reward_source: {spec.reward_source}" in card and spec.description in card
    history = card.split("## Version History")[1]
    assert env_id in history
    if env_id in DEPRECATED:
        assert f"use {DEPRECATED[env_id].replaced_by}" in history


# ------------------------------------------------------------------ seeding
def _vector_rollout(seed: int) -> tuple[np.ndarray, np.ndarray]:
    vec = gym.make_vec(LENET_ID, num_envs=2, vectorization_mode="sync")
    vec.action_space.seed(seed)
    observations, _ = vec.reset(seed=seed)
    seen, rewards = [observations], []
    for _ in range(2 * vec.call("get_wrapper_attr", "steps_per_episode")[0]):  # two episodes (autoreset)
        observations, reward, *_ = vec.step(vec.action_space.sample())
        seen.append(observations)
        rewards.append(reward)
    vec.close()
    return np.stack(seen), np.stack(rewards)


def test_same_seed_same_vector_episodes():
    first, second, other = _vector_rollout(3), _vector_rollout(3), _vector_rollout(4)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])  # the seed matters: other actions, other rewards
    assert haq_rl.env.DEFAULT_ENV_ID in gym.registry
