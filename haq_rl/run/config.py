"""The one typed reader of a run directory's config.json and policy files.

Every command that opens a run (``search --resume``, ``finetune``, ``evaluate``,
``report``, ``export``, ``--budget``) reads config.json through :func:`read_run_config`
and a run's policy JSON through :func:`read_run_policy`, so a corrupt or foreign file is
one line (:class:`~haq_rl.errors.DataFormatError` naming the file and the bad value)
wherever it is opened, never a traceback deep inside a command.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haq_rl.errors import DataFormatError, HaqError, MissingPathError
from haq_rl.fileio import read_json
from haq_rl.models.user import model_from_file
from haq_rl.run.layout import CONFIG_FILE
from haq_rl.task.spec import TaskSpec
from haq_rl.task.task import PYTHON_SOURCE

#: The config.json format this haq-rl writes and reads.
RUN_CONFIG_VERSION = 1

#: config.json's search settings that must have a type before SearchConfig checks their values.
_SEARCH_TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str, "episodes": int, "seed": int, "env": str, "workers": int, "checkpoint_every": int,
    "env_overrides": dict, "agent": dict, "options": dict,
}
#: The env spec's name fields (TaskSpec checks numbers and ranges, not these types).
_ENV_STRINGS = ("id", "model", "dataset", "hardware", "objective")


@dataclass(frozen=True)
class RunConfig:
    """config.json of a run, checked.

    Attributes:
        path: the config.json file.
        data: the whole file as a dict (``search``, ``env``, ``layers``, ``layer_specs``, ...).
        spec: the run's env spec (``data["env"]`` as a :class:`~haq_rl.task.spec.TaskSpec`).
        layers: the quantized layers, in order.
    """

    path: Path
    data: dict[str, Any]
    spec: TaskSpec
    layers: list[str]

    @property
    def search(self) -> dict[str, Any]:
        """The search settings (``SearchConfig.to_dict()`` of the run)."""
        return dict(self.data["search"])


def read_run_config(run_dir_or_file: str | os.PathLike[str], *, for_model: bool = True) -> RunConfig:
    """config.json of a run directory (or the file itself), validated.

    ``for_model`` (a caller that builds the run's model): a user model's import path
    recorded there is refused unless the user named it again (``--model``,
    :func:`~haq_rl.models.user.name_user_model`); nothing read from a file is imported.

    Raises:
        MissingPathError: no config.json there.
        DataFormatError: not JSON, not an object, an unknown format_version, or a section
            of the wrong kind (the message names the file and the bad value).
    """
    path = Path(run_dir_or_file)
    if path.is_dir() or not path.suffix:
        path = path / CONFIG_FILE
    if not path.is_file():
        raise MissingPathError(f"{path} not found (is {path.parent} a haq-rl run directory?)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise _bad(path, f"holds a JSON {type(data).__name__}, not an object")
    version = data.get("format_version")
    if version != RUN_CONFIG_VERSION:
        raise _bad(path, f"format_version={version!r}; this haq-rl reads {RUN_CONFIG_VERSION}")
    search = data.get("search")
    if not isinstance(search, dict):
        raise _bad(path, f"search={_short(search)} is not an object of search settings")
    for key, kind in _SEARCH_TYPES.items():
        value = search.get(key)
        if key in search and (not isinstance(value, kind) or isinstance(value, bool)):
            raise _bad(path, f"search.{key}={_short(value)} is not {_kind_name(kind)}")
    env = data.get("env")
    if not isinstance(env, dict):
        raise _bad(path, f"env={_short(env)} is not an object of env settings")
    for key in _ENV_STRINGS:
        if key in env and not isinstance(env[key], str):
            raise _bad(path, f"env.{key}={_short(env[key])} is not a string")
    try:
        spec = TaskSpec.from_dict(env, source=str(path))
    except HaqError as error:
        raise _bad(path, f"env: {error}") from None
    if for_model and spec.dataset != PYTHON_SOURCE:  # a Task.from_model run: load_task refuses to build it
        model_from_file(spec.model, str(path))
        for overridden in (search.get("model"), (search.get("env_overrides") or {}).get("model")):
            if overridden is not None:
                model_from_file(overridden, f"{path} (search settings)")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(n, str) and n for n in layers) \
            or len(set(layers)) != len(layers):
        raise _bad(path, f"layers={_short(layers)} is not a list of distinct layer names")
    specs = data.get("layer_specs")
    if specs is not None and (not isinstance(specs, list) or not all(isinstance(row, dict) for row in specs)
                              or len(specs) != len(layers)):
        raise _bad(path, f"layer_specs is not one object per layer ({len(layers)} layers)")
    for key in ("float_accuracy", "float_test_accuracy", "reference_cost", "budget_cost"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or math.isnan(value)):
            raise _bad(path, f"{key}={_short(value)} is not a number")
    return RunConfig(path=path, data=data, spec=spec, layers=list(layers))


def read_run_policy(path: str | os.PathLike[str], config: RunConfig | None = None) -> Any:
    """A run's policy JSON (:class:`~haq_rl.quant.QuantPolicy`), checked against the run:
    its layers and the env's bit range (``config``), else only its own format.

    Raises MissingPathError when absent and PolicyError / DataFormatError (one line).
    """
    from haq_rl.quant import QuantPolicy

    path = Path(path)
    policy = QuantPolicy.from_json(path)
    if config is None:
        return policy
    try:
        return policy.validate(config.layers, config.spec.min_bits, config.spec.max_bits)
    except HaqError as error:
        raise DataFormatError(f"{path} does not fit its run ({config.path}): {error}") from None


def _bad(path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{path}: {what} (not a config.json haq-rl can read)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", dict: "an object"}
    return names.get(kind, str(kind)) if isinstance(kind, type) else " or ".join(names[k] for k in kind)
