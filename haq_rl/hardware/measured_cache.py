"""The measured profile of a model's layers on this machine, timed once and cached.

The cache folder is keyed by the layer shapes, batch, repeats, machine, onnxruntime version and
instruction set, so a rerun on the same machine reuses the table and another machine measures
its own. This module is reached through the measured row of ``targets.TARGET_TABLE`` (and the
``profile`` command), never imported by profile.py or lookup.py: it builds a CostTable to check
a cached table, and those modules sit under the cost table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from haq_rl.errors import ConfigError
from haq_rl.fileio import write_text_atomic
from haq_rl.hardware.cpu import instruction_set
from haq_rl.hardware.layer_spec import LayerSpec
from haq_rl.hardware.machine import machine_description, onnxruntime_version
from haq_rl.hardware.measured import PROFILE_FILE, measure_profile
from haq_rl.hardware.targets import MEASURED_TARGETS, measured_target

logger = logging.getLogger(__name__)

#: 2: each timing less the cost of calling onnxruntime at all (an Identity session on the
#: same input), which a whole model pays once and a table of layers timed alone would pay
#: once per layer. 3: 8-bit weights timed apart (UINT8, the portable export's form).
_FORMAT = 3


def cached_measured_profile(target: str, specs: Sequence[LayerSpec], label: str, *,
                            repeats: int | None = None, folder: Path | None = None,
                            progress: bool = True) -> tuple[Path, bool]:
    """The measured profile of these layers on this machine, and whether it was measured now
    (False: the cached one was reused).

    The cache folder is keyed by the layer shapes, batch, repeats, machine and onnxruntime
    version, so a rerun on the same machine reuses the table and another machine measures
    its own. The work runs under the cache lock (a second process waits, then reuses it);
    the key file is written last, so a killed run is measured again, never half read.
    """
    row = measured_target(target)
    if row is None:
        raise ConfigError(f"measured target {target!r}: the measurable targets are {', '.join(MEASURED_TARGETS)}")
    repeats = row.repeats if repeats is None else repeats
    if repeats < 1:
        raise ConfigError(f"repeats={repeats} must be positive")
    if not specs:
        raise ConfigError("a measured profile needs at least one quantizable layer")
    batch = specs[0].batch
    key = cache_key(specs, batch, repeats)
    from haq_rl.cache import cache_dir, cache_lock

    if folder is None:  # named by the key alone: the CLI, a task and a report share one table
        folder = cache_dir("measured", target, key)
    profile, stamp = folder / PROFILE_FILE, folder / "key.txt"
    if _reusable(profile, stamp, key, specs):
        return profile, False
    with cache_lock(folder.parent / f"{folder.name}.lock", f"timing {label} on {target}"):
        if _reusable(profile, stamp, key, specs):  # measured by the process we waited for
            return profile, False
        from tqdm.auto import tqdm

        with tqdm(total=len(specs), desc=f"timing layers on {target}", unit="layer",
                  disable=not progress or None) as bar:
            measure_profile(specs, batch, folder, model_name=label, repeats=repeats, target=target,
                            progress=lambda done: bar.update(done - bar.n))
        write_text_atomic(stamp, key + "\n")  # last: a profile without its key is measured again
    return profile, True


def _reusable(profile: Path, stamp: Path, key: str, specs: Sequence[LayerSpec]) -> bool:
    """The cached measured profile has this key and costs the layers; a damaged one is measured again."""
    from haq_rl.errors import HaqError
    from haq_rl.hardware.cost_table import CostTable
    from haq_rl.hardware.profile import load_profile

    try:
        if not (profile.is_file() and stamp.is_file()) or stamp.read_bytes().strip() != key.encode():
            return False
        CostTable.build(specs, load_profile(profile))
    except (HaqError, OSError) as error:
        logger.warning("measuring again: the cached profile %s is unusable (%s)", profile, error)
        return False
    return True


def cache_key(specs: Sequence[LayerSpec], batch: int, repeats: int) -> str:
    """What a table depends on: the layer shapes, batch, repeats, machine and onnxruntime version."""
    shapes = [(s.kind, s.in_channels, s.out_channels, s.kernel, s.stride, s.groups, s.in_h, s.in_w, s.out_h, s.out_w)
              for s in specs]
    text = json.dumps([_FORMAT, shapes, batch, repeats, machine_description(), onnxruntime_version(),
                       instruction_set()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
