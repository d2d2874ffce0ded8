"""The maintainer's refresh of the shipped float models and cache entries (not used by haq-rl itself).

``python -m haq_rl.maintain.ship CHECKPOINT.pt ...`` stores cached pretrain results as the
shipped fp16 models (accuracies measured again on the rounded weights) and rewrites the
manifest; ``python -m haq_rl.maintain.ship --entry CACHED_FILE ...`` ships cache entries
(the default env's sensitivities). The package reads them through
:mod:`haq_rl.shipped_models`; this module writes them, on top of :mod:`haq_rl.pretrain`
(kept apart so that pretrain and shipped_models import one way).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from haq_rl.checkpoint_io import atomic_torch_save
from haq_rl.fileio import file_sha256, write_text_atomic
from haq_rl.pretrain import CHECKPOINT_FORMAT_VERSION, load_checkpoint, measure_accuracies
from haq_rl.shipped_models import MANIFEST_NAME, SHIPPED_DIR, read_manifest, weights_sha256


def _write_manifest(data: dict[str, Any], folder: Path) -> None:
    write_text_atomic(folder / MANIFEST_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")


def ship_entry(path: Path, folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """Copy the cache file ``path`` into the shipped folder under its own name and record its SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / path.name)
    data = read_manifest(folder)
    entry = {"sha256": file_sha256(folder / path.name)}
    data.setdefault("entries", {})[path.name] = entry
    _write_manifest(data, folder)
    return {"file": path.name, **entry}


def ship(checkpoint: Path, folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """Store ``checkpoint`` (a cached pretrain result) as a shipped fp16 model; returns its entry.

    The accuracies in the shipped meta are measured again on the fp16-rounded weights,
    because those are the model every user gets.
    """
    model, meta = load_checkpoint(checkpoint)
    half = {name: value.half() if value.is_floating_point() else value
            for name, value in model.state_dict().items()}
    model.load_state_dict(half)  # round the float32 model to exactly what ships
    reward_acc, test_acc = measure_accuracies(model, meta)
    meta = {**meta, "reward_accuracy": reward_acc, "test_accuracy": test_acc, "stored_as": "float16",
            "trained_test_accuracy": meta["test_accuracy"]}
    name = f"{meta['model']}-{meta['dataset']}-{meta['config_hash']}.pt"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"format_version": CHECKPOINT_FORMAT_VERSION, "state_dict": half, "meta": meta},
                      folder / name)
    entry = {"file": name, "sha256": file_sha256(folder / name), "model": meta["model"],
             "dataset": meta["dataset"], "test_accuracy": test_acc, "reward_accuracy": reward_acc,
             "weights_sha256": weights_sha256(model)}
    data = read_manifest(folder)
    data["models"][str(meta["config_hash"])] = entry
    _write_manifest(data, folder)
    return entry


def main(argv: list[str]) -> int:
    """``python -m haq_rl.maintain.ship CHECKPOINT...``: ship cached checkpoints (``--entry FILE...``:
    cache entries)."""
    if not argv:
        print("usage: python -m haq_rl.maintain.ship CHECKPOINT.pt [...] | --entry CACHED_FILE [...]",
              file=sys.stderr)
        return 2
    if argv[0] == "--entry":
        for arg in argv[1:]:
            entry = ship_entry(Path(arg))
            print(f"shipped {entry['file']}: sha256 {entry['sha256'][:12]}")
        return 0
    for arg in argv:
        entry = ship(Path(arg))
        print(f"shipped {entry['file']}: test {entry['test_accuracy']:.2f} %, sha256 {entry['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
