"""Register every shipped task spec (``envs/*.yaml``) as a Gymnasium id ``haq_rl/<Name>-v<N>``,
and the one deprecation policy for ids that are no longer current (docs/environments.md,
"Ids, versions and deprecation").

Runs on ``import haq_rl.env`` (``gymnasium.make("haq_rl.env:<id>")`` imports it first),
never on ``import haq_rl``: the task layer below does not load gymnasium. (Gymnasium 1.x
has no plugin entry points to register through.)

The policy: an id, once published, stays registered and keeps its meaning. A version of a
name replaces the one before it (a fix of the same task); a reward offered beside another
(another metric or source) is a different name, never a new version. Making a replaced id warns once
(:class:`DeprecatedEnvWarning`) naming its replacement and what differs; Gymnasium's
generic "out of date, consider upgrading to the highest version" warning is silenced for
``haq_rl/`` ids, because the highest version of a name is not always the replacement
(``MobileNetV2Edge-v2`` is another reward, published before this policy).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from gymnasium.envs.registration import register, registry

from haq_rl.task.spec import NAMESPACE, TaskSpec, shipped_specs

ENTRY_POINT = "haq_rl.env.factory:make_env"
DEPRECATED_ENTRY_POINT = "haq_rl.env.registration:make_deprecated_env"


class DeprecatedEnvWarning(DeprecationWarning):
    """A registered id that has been replaced: it still makes its own, unchanged task."""


@dataclass(frozen=True)
class Deprecation:
    """Why an id is no longer current: the id that replaces it and what differs."""

    replaced_by: str
    change: str


#: Every replaced id (kept registered, meaning unchanged) -> its replacement. One home: the
#: warning, ``haq-rl envs`` and the docs' version history read this table.
DEPRECATED: dict[str, Deprecation] = {
    f"{NAMESPACE}/LeNet5Size-v0": Deprecation(
        f"{NAMESPACE}/LeNet5Size-v1",
        "budget 0.4 instead of 0.3, which sat within 10% of the minimum achievable ratio (0.232): "
        "the wall drove nearly every policy to 2 bits"),
    f"{NAMESPACE}/MobileNetV2BitFusionEnergy-v0": Deprecation(
        f"{NAMESPACE}/MobileNetV2BitFusionEnergy-v1",
        "budget 0.7 instead of 0.5, which sat at the minimum achievable ratio (0.496), and the KL reward "
        "instead of the accuracy one"),
    f"{NAMESPACE}/MobileNetV2EdgeTabulated-v0": Deprecation(
        f"{NAMESPACE}/MobileNetV2EdgeTabulated-v1",
        "the same task and reward from a larger table whose first 280 rows are v0's: more policies answered "
        "exactly and a table predictor fitted on all of them; v0 keeps its own table and scores"),
    f"{NAMESPACE}/MobileNetV2Edge-v0": Deprecation(
        f"{NAMESPACE}/MobileNetV2EdgeAccuracy-v0",
        "the same task under its own name: HAQ's accuracy reward is an alternative to v1's KL reward, "
        "not a version v1 replaced"),
    f"{NAMESPACE}/MobileNetV2Edge-v2": Deprecation(
        f"{NAMESPACE}/MobileNetV2EdgeSupernet-v0",
        "the same task under its own name: the supernet reward is an alternative to v1's "
        "post-training reward, not its next version"),
}

#: Gymnasium's version warning, which names the highest version whatever it means (see above).
_GYMNASIUM_OUT_OF_DATE = rf".*The environment {NAMESPACE}/\S+ is out of date"


def register_envs() -> list[str]:
    """Register the shipped specs with Gymnasium (idempotent); returns their ids."""
    warnings.filterwarnings("ignore", message=_GYMNASIUM_OUT_OF_DATE, category=DeprecationWarning)
    # Python hides DeprecationWarning outside __main__; Gymnasium shows its own once too.
    warnings.filterwarnings("once", category=DeprecatedEnvWarning)
    ids = []
    for env_id, spec in shipped_specs().items():
        if env_id not in registry:
            deprecated = env_id in DEPRECATED
            register(id=env_id, entry_point=DEPRECATED_ENTRY_POINT if deprecated else ENTRY_POINT,
                     kwargs={"spec": spec}, disable_env_checker=False)
        ids.append(env_id)
    return ids


def deprecation_message(env_id: str) -> str | None:
    """The one-line warning for a replaced id, None for a current one."""
    deprecation = DEPRECATED.get(env_id)
    if deprecation is None:
        return None
    return (f"{env_id} is deprecated: it still makes its own task, unchanged; use {deprecation.replaced_by} "
            f"({deprecation.change})")


def make_deprecated_env(spec: TaskSpec, render_mode: str | None = None, **overrides: Any) -> Any:
    """The entry point of a replaced id: warns (:class:`DeprecatedEnvWarning`), then makes it as ever."""
    from haq_rl.env.factory import make_env

    warnings.warn(deprecation_message(spec.id) or spec.id, DeprecatedEnvWarning, stacklevel=2)
    return make_env(spec, render_mode=render_mode, **overrides)
