"""Register every spec in ``envs/*.yaml`` as a Gymnasium id ``haq_rl/<Name>-v<N>``."""

from __future__ import annotations

from pathlib import Path

from gymnasium.envs.registration import register, registry

from haq_rl.env.spec import EnvSpec
from haq_rl.errors import UnknownNameError
from haq_rl.resources import resource_dir

NAMESPACE = "haq_rl"
DEFAULT_ENV_ID = "haq_rl/MobileNetV2Edge-v1"
ENTRY_POINT = "haq_rl.env.factory:make_env"


def shipped_specs() -> dict[str, EnvSpec]:
    """id -> EnvSpec for every YAML file in the shipped ``envs/`` folder."""
    specs = [EnvSpec.from_yaml(path) for path in sorted(resource_dir("envs").glob("*.yaml"))]
    return {spec.id: spec for spec in specs}


def register_envs() -> list[str]:
    """Register the shipped specs with Gymnasium (idempotent); returns their ids."""
    ids = []
    for env_id, spec in shipped_specs().items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, kwargs={"spec": spec},
                     disable_env_checker=False)
        ids.append(env_id)
    return ids


def resolve_spec(spec: EnvSpec | str | Path) -> EnvSpec:
    """An EnvSpec from itself, a registered id or a path to a YAML spec."""
    if isinstance(spec, EnvSpec):
        return spec
    text = str(spec)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return EnvSpec.from_yaml(text)
    known = shipped_specs()
    if text in known:
        return known[text]
    if f"{NAMESPACE}/{text}" in known:
        return known[f"{NAMESPACE}/{text}"]
    raise UnknownNameError("environment", text, known)
