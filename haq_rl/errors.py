"""The one error hierarchy of haq-rl.

Every class also derives from the matching built-in exception, so callers can catch
``ValueError`` / ``LookupError`` / ``FileNotFoundError`` as usual. The CLI turns any
:class:`HaqError` into a one-line message and exit code 2.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable


class HaqError(Exception):
    """Base class of all errors raised deliberately by haq-rl."""


class ConfigError(HaqError, ValueError):
    """A configuration value is out of its allowed range or of the wrong kind."""


class UnknownNameError(HaqError, LookupError):
    """A name (model, dataset, profile, env id, layer, ...) is not one of the known names."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        super().__init__(unknown_name_message(kind, name, self.choices))

    def __str__(self) -> str:  # LookupError would otherwise repr() a single argument
        return str(self.args[0])


class MissingPathError(HaqError, FileNotFoundError):
    """A file or folder the user pointed at does not exist."""

    def __str__(self) -> str:
        return str(self.args[0])


class DataFormatError(HaqError, ValueError):
    """A data file exists but is not in the expected format."""


class UnsafeFileError(HaqError, ValueError):
    """A file or folder of a run directory or the cache is a symbolic link, a FIFO, a device
    or otherwise not what haq-rl wrote there: it is refused, never followed or opened."""


class CheckpointError(HaqError, ValueError):
    """A checkpoint is unreadable, corrupt, or belongs to another model."""


class PolicyError(HaqError, ValueError):
    """A quantization policy is invalid for the model it is applied to."""


class DivergenceError(HaqError, FloatingPointError):
    """Training diverged: a non-finite loss, step size or weight, or a collapse to chance."""


class ExportMismatchError(HaqError, ValueError):
    """An exported model disagrees with the PyTorch model it was made from beyond the tolerance."""


class BudgetError(HaqError, ValueError):
    """A hardware budget cannot be met by any allowed policy."""


class RunLockedError(HaqError, RuntimeError):
    """Another process is writing the same run directory."""


class BudgetWarning(UserWarning):
    """A budget is feasible but leaves almost no room above the minimum bits."""


class MissingDependencyError(HaqError, ImportError):
    """An optional dependency a feature needs is not installed (the message names the extra)."""

    def __str__(self) -> str:
        return str(self.args[0])


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """Return the closest known name to ``name`` or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown model 'lenet': did you mean 'lenet5'? (allowed: a, b, c)``."""
    choices = sorted(choices)
    suggestion = did_you_mean(name, choices)
    hint = f": did you mean {suggestion!r}?" if suggestion else ""
    return f"unknown {kind} {name!r}{hint} (allowed: {', '.join(choices)})"


def check_number(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    """ConfigError naming ``name`` unless ``value`` is a finite number in ``[low, high]``
    (``(low, high]`` with ``low_open``); a bool is not a number here."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(float(value))
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (low < v if low_open else low <= v) and v <= high
    if not ok:
        bracket = "(" if low_open else "["
        # An unbounded range is open at infinity: "(0, inf]" would say inf is allowed.
        close = ")" if math.isinf(high) else "]"
        kind = "a finite number" if math.isinf(high) else "a number"
        raise ConfigError(f"{name}={value!r} must be {kind} in {bracket}{low:g}, {high:g}{close}")


def check_integer(name: str, value: object, minimum: int, meaning: str = "") -> int:
    """``value`` as an int, or ConfigError naming ``name`` unless it is an integer >= ``minimum`` (a bool
    is not: True as a count is a bug, not a 1); ``meaning`` says in the message what it counts."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}" + (f" ({meaning})" if meaning else ""))
    return int(value)


def check_budget(name: str, value: object) -> float:
    """``value`` as a float, or ConfigError naming ``name`` unless it is a budget: a number in
    (0, 1], a ratio of the uniform 8/8 cost (a bool or NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
        raise ConfigError(f"{name}={value!r} must be a number in (0, 1] (a ratio of the uniform 8/8 cost)")
    return float(value)


#: Seeds fit numpy's, torch's and SB3's generators alike: 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: object) -> None:
    """ConfigError naming ``name`` unless ``value`` is an integer in [0, MAX_SEED] (a bool is
    not; a huge one would overflow a generator deep inside torch or numpy)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name}={value!r} must be an integer in [0, {MAX_SEED}]")


#: The device names every setting accepts (search, agent, fine-tune, training): one rule.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def check_device(device: object, name: str = "device") -> None:
    """ConfigError naming ``name`` unless ``device`` is one of :data:`DEVICE_CHOICES`
    (whether CUDA is there is checked when the device is used, ``training.resolve_device``)."""
    text = str(device).strip().lower() if isinstance(device, str) else None
    if text is None or not (text in ("auto", "cpu", "cuda") or
                            (text.startswith("cuda:") and text[5:].isdigit())):
        raise ConfigError(f"unknown {name}={device!r} (allowed: {DEVICE_CHOICES})")
