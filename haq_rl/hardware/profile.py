"""Hardware profiles: YAML files naming a cost model and its constants, validated on load.

A profile is ``hw_profiles/<name>.yaml`` (shipped) or any path to a user's YAML::

    name: bismo-edge            # must match the file stem for shipped profiles
    description: ...
    model: bismo                # bismo | bitfusion | lookup | bops | size
    min_bits: 1
    max_bits: 8
    units: {latency: ms, energy: uJ}
    params: {...}               # per model, see PARAM_SCHEMAS

Loaded with ``yaml.safe_load`` only. Errors are :class:`~haq_rl.errors.ConfigError`
(unknown keys get a "did you mean"), :class:`~haq_rl.errors.UnknownNameError` for an
unknown shipped name and :class:`~haq_rl.errors.MissingPathError` for a missing file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haq_rl.errors import ConfigError, MissingPathError, UnknownNameError, did_you_mean
from haq_rl.fileio import yaml_error_line
from haq_rl.hardware.layer_spec import LayerSpec
from haq_rl.hardware.targets import COST_MODELS, measured_target
from haq_rl.resources import resource_dir

logger = logging.getLogger(__name__)


_BISMO_ENERGY = {"e_binop_pj": float, "e_sram_read_pj_per_bit": float,
                 "e_sram_write_pj_per_bit": float, "e_dram_pj_per_bit": float}

# name -> (type, required). Numbers must be > 0 unless listed in _MAY_BE_ZERO.
PARAM_SCHEMAS: dict[str, dict[str, tuple[type, bool]]] = {
    "bismo": {
        "dm": (int, True), "dn": (int, True), "dk": (int, True),
        "clock_mhz": (float, True), "mem_bits_per_cycle": (int, True),
        "batch": (int, False), "weight_fetch": (str, False), "overhead_cycles": (float, False),
        **{key: (kind, True) for key, kind in _BISMO_ENERGY.items()},
    },
    "bitfusion": {
        "rows": (int, True), "cols": (int, True), "clock_mhz": (float, True),
        "batch": (int, False), "technology_nm": (int, False),
        "wgt_buffer_kib": (float, True), "act_buffer_kib": (float, True),
        "out_buffer_kib": (float, True), "dram_bits_per_cycle": (int, True),
        "core_pj_per_cycle": (float, True), "dram_pj_per_bit": (float, True),
        **{f"{buf}_{op}_pj_per_bit": (float, True)
           for buf in ("wbuf", "ibuf", "obuf") for op in ("read", "write")},
    },
    "lookup": {
        "table": (str, True), "unit": (str, False), "clock_mhz": (float, False),
        "energy_unit": (str, False), "batch": (int, False),
        # a measured table (haq-rl profile --measure): where and with what it was measured
        "machine": (str, False), "onnxruntime": (str, False), "instruction_set": (str, False),
    },
    "bops": {"batch": (int, False)},
    "size": {"kmeans_codebooks": (bool, False), "batch": (int, False)},
}
_CHOICES = {"weight_fetch": ("per_image", "per_tile"), "unit": ("cycles", "ms"),
            "energy_unit": ("uJ", "mJ", "nJ", "pJ")}
_MAY_BE_ZERO = {"overhead_cycles"}
_TOP_KEYS = {"name": True, "description": True, "model": True, "min_bits": True,
             "max_bits": True, "units": False, "params": False}


@dataclass(frozen=True)
class HardwareProfile:
    """A validated hardware profile; ``params`` also carries min_bits/max_bits for models."""

    name: str
    cost_model: str
    params: dict[str, Any]
    min_bits: int
    max_bits: int
    sha256: str
    description: str
    units: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def batch(self) -> int:
        """The batch the profile is meant for (HAQ: edge 1, cloud 16); default 1."""
        return int(self.params.get("batch", 1))


def profile_names() -> list[str]:
    """Names of the shipped profiles (file stems in ``hw_profiles/``)."""
    return sorted(p.stem for p in resource_dir("hw_profiles").glob("*.yaml"))


def _unknown_keys(found: dict, allowed: dict | set, where: str) -> None:
    for key in found:
        if key not in allowed:
            hint = did_you_mean(str(key), [str(k) for k in allowed])
            tip = f": did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{tip} (allowed: {', '.join(sorted(allowed))})")


def _check_value(where: str, key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}={value!r} must be true or false")
        return value
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {key}={value!r} must be a non-empty string")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{where}: {key}={value!r} must be one of {', '.join(_CHOICES[key])}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key}={value!r} must be a number")
    if kind is int and value != int(value):
        raise ConfigError(f"{where}: {key}={value!r} must be an integer")
    if value < 0 or (value == 0 and key not in _MAY_BE_ZERO):
        raise ConfigError(f"{where}: {key}={value!r} must be positive")
    return kind(value)


def parse_profile(data: Any, text: str, where: str, path: Path | None = None) -> HardwareProfile:
    """Validate the mapping read from a profile YAML and build the profile."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a hardware profile must be a YAML mapping")
    _unknown_keys(data, _TOP_KEYS, where)
    for key, required in _TOP_KEYS.items():
        if required and key not in data:
            raise ConfigError(f"{where}: missing field {key!r}")
    model = data["model"]
    if model not in COST_MODELS:
        hint = did_you_mean(str(model), COST_MODELS)
        tip = f": did you mean {hint!r}?" if hint else ""
        raise ConfigError(f"{where}: unknown cost model {model!r}{tip} (allowed: {', '.join(COST_MODELS)})")
    min_bits = _check_value(where, "min_bits", data["min_bits"], int)
    max_bits = _check_value(where, "max_bits", data["max_bits"], int)
    if not 1 <= min_bits <= max_bits <= 32:
        raise ConfigError(f"{where}: need 1 <= min_bits <= max_bits <= 32, got {min_bits}..{max_bits}")
    if model == "bitfusion" and (min_bits < 2 or max_bits > 8):
        raise ConfigError(f"{where}: BitFusion supports 2..8 bits, got {min_bits}..{max_bits}")
    raw = data.get("params") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: params must be a mapping")
    schema = PARAM_SCHEMAS[model]
    _unknown_keys(raw, schema, f"{where}: params")
    params: dict[str, Any] = {}
    for key, (kind, required) in schema.items():
        if key in raw:
            params[key] = _check_value(f"{where}: params", key, raw[key], kind)
        elif required:
            raise ConfigError(f"{where}: params: missing field {key!r} (model {model})")
    units = data.get("units") or {}
    if not isinstance(units, dict) or not all(isinstance(v, str) for v in units.values()):
        raise ConfigError(f"{where}: units must map quantities to unit names")
    if model == "lookup":
        table = Path(params["table"]).expanduser()
        if not table.is_absolute() and path is not None:
            table = path.parent / table  # relative to the YAML's folder
        params["table"] = str(table)
        if params.get("unit", "cycles") == "cycles" and "clock_mhz" not in params:
            raise ConfigError(f"{where}: params: a table in cycles needs clock_mhz")
    params["min_bits"], params["max_bits"] = min_bits, max_bits
    description = data["description"]
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string")
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string")
    return HardwareProfile(name=name, cost_model=model, params=params, min_bits=min_bits,
                           max_bits=max_bits, sha256=hashlib.sha256(text.encode()).hexdigest(),
                           description=description.strip(), units=dict(units), path=path)


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """A shipped profile by name (``bismo-cloud``) or a user's YAML by path."""
    text_name = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or text_name.endswith((".yaml", ".yml")) \
        or "/" in text_name or "\\" in text_name
    if looks_like_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise MissingPathError(f"hardware profile file not found: {path}")
    else:
        path = resource_dir("hw_profiles") / f"{text_name}.yaml"
        if not path.is_file() and measured_target(text_name) is not None:
            raise ConfigError(f"hardware {text_name!r} is timed on this machine, not a profile file: a task "
                              f"takes it as is (--hw {text_name}); haq-rl profile takes --measure {text_name}")
        if not path.is_file():
            raise UnknownNameError("hardware profile", text_name, profile_names())
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a hardware profile (not UTF-8 text)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({yaml_error_line(error)})") from None
    profile = parse_profile(data, text, str(path), path.resolve())
    if not looks_like_path and profile.name != text_name:
        raise ConfigError(f"{path}: name {profile.name!r} differs from the file name {text_name!r}")
    logger.debug("loaded hardware profile %s (%s) from %s", profile.name, profile.cost_model, path)
    return profile


def profile_for_layers(hardware: str, layers_at_batch: Callable[[int], list[LayerSpec]], label: str
                       ) -> tuple[HardwareProfile, list[LayerSpec]]:
    """A task's hardware profile and its layers at that profile's batch.

    ``hardware`` is a shipped name, a YAML path, or a target measured on this machine
    (``ort-cpu``): its lookup table is timed for these very layers the first time (about
    10 s for MobileNetV2 at 28 px) and cached per machine and onnxruntime version.
    ``layers_at_batch(batch)`` extracts the model's layer specs at a batch size.
    """
    measured = measured_target(hardware)
    if measured is not None:  # timed through its row's entry points (targets.py): no import of the measuring code
        layers = layers_at_batch(measured.batch)
        path, _ = measured.entry("measure")(hardware, layers, label)
        return load_profile(path), layers
    profile = load_profile(hardware)
    return profile, layers_at_batch(profile.batch)


def profile_batch(hardware: str) -> int:
    """The batch a task's layers are costed at on ``hardware`` (a measured target: its row's, one image)."""
    measured = measured_target(hardware)
    return measured.batch if measured is not None else load_profile(hardware).batch
