"""The per-id documentation: Gymnasium's docstring sections filled in for one registered id.

Gymnasium documents each environment class with the sections Action Space, Observation
Space, Rewards, Episode End, Arguments and Version History. Here one class,
:class:`~haq_rl.env.quant_env.QuantizationEnv`, serves every id: its docstring holds the
contract all ids share (the definitions), and :func:`env_card` states what they are for one
id, from its spec and the registry (``haq-rl envs ID`` prints it; docs/environments.md
links here). Nothing here builds the model, so a card costs milliseconds.
"""

from __future__ import annotations

import re

from haq_rl.env.embedding import FEATURE_NAMES
from haq_rl.env.registration import DEPRECATED
from haq_rl.task.spec import TaskSpec, shipped_specs

SECTIONS = ("Action Space", "Observation Space", "Rewards", "Episode End", "Arguments", "Version History")

#: What the final reward is, per ``reward_metric`` (the definitions: QuantizationEnv's docstring).
REWARD_METRIC_TEXT = {
    "kl": "-KL(p_float || p_quant): minus the mean KL divergence (nats) of the quantized model's "
          "predictions from the float model's on the reward images; 0 is the float model, lower is worse",
    "accuracy": "0.1 * (acc - acc_float), accuracies in percent on the reward images (HAQ's reward); "
                "0 is the float model's accuracy",
}
#: What scores the policy, per ``reward_source`` (docs/supernet.md), and what info["accuracy"] then is.
REWARD_SOURCE_TEXT = {
    "post_training": "the float weights quantized as they are (post-training quantization); "
                     "info['accuracy'] is that model's accuracy on the reward images",
    "supernet": "the task's bit-width supernet at the policy's widths, BatchNorm re-estimated per policy "
                "(trained once and cached); info['accuracy'] is the supernet's accuracy on the reward images",
    "predictor": "a regressor fitted on supernet evaluations (milliseconds per episode); info['accuracy'] "
                 "and info['kl'] are its predictions of the supernet's values",
}


def name_and_version(env_id: str) -> tuple[str, int | None]:
    """``("haq_rl/LeNet5Size", 1)`` for ``haq_rl/LeNet5Size-v1``; version None when unversioned."""
    match = re.fullmatch(r"(.+)-v(\d+)", env_id)
    return (match.group(1), int(match.group(2))) if match else (env_id, None)


def versions_of(env_id: str) -> list[TaskSpec]:
    """Every shipped spec with the same name as ``env_id``, oldest version first, then the ids
    of other names replaced by one of them (a task renamed, its old id kept)."""
    name, _ = name_and_version(env_id)
    specs = shipped_specs()
    same = sorted((spec for spec in specs.values() if name_and_version(spec.id)[0] == name),
                  key=lambda spec: name_and_version(spec.id)[1] or 0)
    renamed = [specs[old] for old, deprecation in DEPRECATED.items()
               if name_and_version(deprecation.replaced_by)[0] == name and name_and_version(old)[0] != name]
    return same + renamed


def observation_size(spec: TaskSpec) -> int:
    """Features per observation: HAQ's 12, +1 with the budget feature, +2 budget-conditioned."""
    if spec.budgets:
        return len(FEATURE_NAMES) + 2
    return len(FEATURE_NAMES) + (1 if spec.budget_feature else 0)


def env_card(spec: TaskSpec) -> str:
    """Gymnasium's six sections for ``spec``'s id, as markdown."""
    weight_only = spec.weight_only
    joint = spec.step_mode == "joint"
    steps = ("one step per free layer, (weight, activation) bits together" if joint else
             "one step per free layer, its weight bits" if weight_only else
             "two steps per free layer: its weight bits, then its activation bits")
    pinned = "first and last layers pinned at 8/8 (no step)" if spec.pin_first_last else "no layer pinned"
    budgets = (f"one of {list(spec.budgets)} per episode (reset(options={{'budget': b}}) or a seeded schedule)"
               if spec.budgets else f"{spec.budget:g}")
    sections = {
        "Action Space": f"Box(-1, 1, ({2 if joint else 1},), float32): {steps}; {pinned}. [-1, 1] is cut into "
                        f"{spec.max_bits - spec.min_bits + 1} equal bins, bin i = {spec.min_bits} + i bits."
                        + (" Activations stay at 8 bits (the objective depends on weights only)."
                           if weight_only and not joint else ""),
        "Observation Space": f"Box(0, 1, ({observation_size(spec)},), float32): HAQ's layer embedding "
                             f"({', '.join(FEATURE_NAMES)})"
                             + (", the projected cost over the budget" if spec.budget_feature or spec.budgets else "")
                             + (", the episode's budget" if spec.budgets else "") + ".",
        "Rewards": f"0 on every step but the last; then {REWARD_METRIC_TEXT[spec.reward_metric]}. "
                   f"Scored by {_source_text(spec.reward_source)}.",
        "Episode End": f"Terminates after the last free layer's step (never truncated). The action wall then "
                       f"lowers bits, last layer first, until the {spec.objective} on {spec.hardware} is within "
                       f"the budget: {budgets} of the uniform 8/8 cost. The last step's info holds the "
                       "applied policy, accuracy, kl, float_accuracy and the costs (QuantizationEnv's docstring).",
        "Arguments": "Every setting below, overridable with gymnasium.make(id, **settings):\n\n"
                     + "\n".join(f"- {key}: {value}" for key, value in spec.to_dict().items()
                                 if key not in ("id", "description")),
        "Version History": "\n".join(_version_line(version) for version in versions_of(spec.id)),
    }
    lines = [f"# {spec.id}", "", spec.description]
    for title in SECTIONS:
        lines += ["", f"## {title}", "", sections[title]]
    return "\n".join(lines) + "\n"


def _version_line(spec: TaskSpec) -> str:
    deprecation = DEPRECATED.get(spec.id)
    status = f" Deprecated: use {deprecation.replaced_by} ({deprecation.change})." if deprecation else ""
    return f"- {spec.id}: {spec.description}.{status}"


def _source_text(source: str) -> str:
    """What scores a policy under ``source``; a row of the reward-source table without words
    here yet still gets a card (haq_rl.task.sources holds the rows)."""
    return REWARD_SOURCE_TEXT.get(source, f"the {source} reward source (haq_rl.task.sources)")
