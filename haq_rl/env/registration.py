"""Register every shipped task spec (``envs/*.yaml``) as a Gymnasium id ``haq_rl/<Name>-v<N>``.

Runs on ``import haq_rl.env`` (``gymnasium.make("haq_rl.env:<id>")`` imports it first),
never on ``import haq_rl``: the task layer below does not load gymnasium. (Gymnasium 1.x
has no plugin entry points to register through.)
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from haq_rl.task.spec import shipped_specs

ENTRY_POINT = "haq_rl.env.factory:make_env"


def register_envs() -> list[str]:
    """Register the shipped specs with Gymnasium (idempotent); returns their ids."""
    ids = []
    for env_id, spec in shipped_specs().items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, kwargs={"spec": spec},
                     disable_env_checker=False)
        ids.append(env_id)
    return ids
