"""Shipped supernet scores: instant predictor envs and the tabulated benchmark.

The predictor reward (``reward_source: predictor``) is fitted on supernet evaluations of
sampled policies; building them on a fresh machine means training the supernet and about
200 evaluations (half an hour on two shared cores). For the benchmark ids those samples
ship in ``haq_rl/resources/benchmark/`` (compressed ``.npz``, no pickle, SHA-256 in
``manifest.json``), with the predictor kind their cross-validation picked, so the
predictor is fitted in milliseconds and nothing else (supernet, calibration) is loaded.

The same file holds the **table** (NAS-Bench style): every tabulated policy's bits and
its supernet reward (KL from the float model and accuracy on the reward split), and for
a stratified sample the test accuracy of the model started from the supernet at the
policy, retraining-free and after the standard 1-epoch fine-tune.
``reward_source: tabulated`` answers exactly from the table where the (walled) policy is
tabulated and from a predictor fitted on the whole table elsewhere; ``info["reward_from"]``
says which (``"table"`` or ``"predictor"``).

A task finds its shipped file by :func:`~haq_rl.supernet.predictor.samples_key`: the
supernet it would train (model, float weights, data, recipe) and the cost table whose wall
shaped the samples; the budget is not part of it, so every budget of the task is instant.
Rebuild: ``python bench/build_benchmark_table.py`` (docs/leaderboard.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from haq_rl.errors import CheckpointError, ConfigError
from haq_rl.fileio import NUMPY_READ_ERRORS, file_sha256, open_regular, write_text_atomic
from haq_rl.supernet.predictor import (
    PREDICTOR_SAMPLES,
    BitsPredictor,
    PolicySamples,
    PredictedEvaluator,
    fit_report,
    samples_key,
)
from haq_rl.task.evaluator import PolicyScores

logger = logging.getLogger(__name__)

BENCHMARK_DIR = Path(__file__).resolve().parents[1] / "resources" / "benchmark"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

#: Where a table row came from (the ``origin`` column).
ORIGIN_PREDICTOR_SAMPLE = 0
ORIGIN_UNIFORM = 1
ORIGIN_RANDOM = 2


@dataclass(frozen=True)
class BenchmarkTable:
    """One shipped table: policies ``[n, layers]`` of bits with their supernet scores, and
    the stratified sample's test accuracies (NaN where not measured)."""

    entry: dict[str, Any]
    layer_names: list[str]
    w_bits: np.ndarray
    a_bits: np.ndarray
    kl: np.ndarray
    accuracy: np.ndarray
    origin: np.ndarray
    sample_index: np.ndarray
    sample_retraining_free: np.ndarray
    sample_finetuned: np.ndarray
    #: ``predictor`` / ``table_predictor`` -> the shipped ridge parameters (absent for boosting).
    parameters: dict[str, dict[str, np.ndarray]]

    @property
    def float_accuracy(self) -> float:
        return float(self.entry["float_accuracy"])

    def rows(self, mask: np.ndarray | None = None) -> PolicySamples:
        mask = np.ones(len(self.kl), dtype=bool) if mask is None else mask
        return PolicySamples(self.w_bits[mask].astype(np.int64), self.a_bits[mask].astype(np.int64),
                             self.accuracy[mask], self.kl[mask])

    def predictor_samples(self) -> PolicySamples:
        """The predictor's samples: the first rows, as ``sample_policies`` draws them."""
        return self.rows(self.origin == ORIGIN_PREDICTOR_SAMPLE)


def _policy_key(w_bits: np.ndarray, a_bits: np.ndarray) -> bytes:
    return np.asarray(w_bits, dtype=np.uint8).tobytes() + np.asarray(a_bits, dtype=np.uint8).tobytes()


class TabulatedEvaluator(PredictedEvaluator):
    """``reward_source: tabulated``: the table's supernet scores where the policy is
    tabulated, the predictor fitted on the whole table elsewhere (``origin`` of the scores)."""

    def __init__(self, table: BenchmarkTable, predictor: BitsPredictor, fit_report: dict[str, Any],
                 device: Any = None) -> None:
        super().__init__(predictor, None, fit_report, layer_names=table.layer_names,
                         float_accuracy=table.float_accuracy, device=device)
        self.table = table
        self.index = {_policy_key(w, a): i for i, (w, a) in enumerate(zip(table.w_bits, table.a_bits, strict=True))}

    def scores(self, w_bits: np.ndarray, a_bits: np.ndarray) -> PolicyScores:
        row = self.index.get(_policy_key(w_bits, a_bits))
        if row is None:
            predicted = super().scores(w_bits, a_bits)
            return PolicyScores(accuracy=predicted.accuracy, kl=predicted.kl, origin="predictor")
        self.evaluations += 1
        self.cache_hits += 1
        return PolicyScores(accuracy=float(self.table.accuracy[row]), kl=float(self.table.kl[row]), origin="table")


def shipped_evaluator(task: Any, tabulated: bool = False) -> PredictedEvaluator | TabulatedEvaluator | None:
    """The instant evaluator of ``task`` from its shipped file, or None when none ships for it
    (``reward_source: predictor`` then builds its samples on this machine)."""
    table = shipped_table(task)
    if table is None:
        if tabulated:
            raise ConfigError(f"reward_source=tabulated: no shipped table for task {task.spec.id} (model "
                              f"{task.spec.model}, dataset {task.spec.dataset}, hardware {task.spec.hardware}); "
                              f"tables ship for: {', '.join(shipped_env_ids()) or 'none'}")
        return None
    if not tabulated:
        samples = table.predictor_samples()
        if len(samples.kl) < PREDICTOR_SAMPLES:  # a partial build: not the predictor a local build fits
            logger.warning("the shipped table of %s holds %d of the predictor's %d samples: building them here",
                           task.spec.id, len(samples.kl), PREDICTOR_SAMPLES)
            return None
        predictor = _shipped_predictor(task, table, "predictor", samples)
        return _predicted(task, table, predictor, {"kind": predictor.kind, "samples": len(samples.kl), "shipped": True})
    predictor = _shipped_predictor(task, table, "table_predictor", table.rows())
    return TabulatedEvaluator(table, predictor, {"kind": predictor.kind, "samples": len(table.kl), "shipped": True},
                              device=task.device)


def _shipped_predictor(task: Any, table: BenchmarkTable, name: str, rows: PolicySamples) -> BitsPredictor:
    """The shipped fit (ridge coefficients, no sklearn import) or, for a boosting kind, a fit now."""
    bits = range(task.spec.min_bits, task.spec.max_bits + 1)
    kind = table.entry[f"{name}_kind"]
    if not table.parameters.get(name):
        return BitsPredictor(kind, bits).fit(rows)
    predictor = BitsPredictor.from_linear(kind, bits, table.parameters[name])
    # As a fit would: an accuracy prediction stays within what the fitted rows showed.
    predictor.accuracy_range = (float(rows.accuracy.min()), float(rows.accuracy.max()))
    return predictor


def shipped_evaluations(task: Any) -> PolicySamples | None:
    """The shipped supernet evaluations ``task`` prices layers with (hawq / guided
    ``sensitivity=supernet``): the predictor's samples when all of them ship; None
    otherwise (evaluated locally)."""
    table = shipped_table(task)
    if table is None:
        return None
    samples = table.predictor_samples()
    return samples if len(samples.kl) == PREDICTOR_SAMPLES else None


def _predicted(task: Any, table: BenchmarkTable, predictor: BitsPredictor, report: dict[str, Any]) -> PredictedEvaluator:
    return PredictedEvaluator(predictor, None, report, layer_names=table.layer_names,
                              float_accuracy=table.float_accuracy, device=task.device)


def task_samples_key(task: Any) -> str:
    """The :func:`samples_key` of ``task``'s default predictor, without building its supernet
    (its identity needs the widths per layer only, not the calibrated model)."""
    from haq_rl.quant.switchable import bit_choices
    from haq_rl.supernet.reward import supernet_config
    from haq_rl.supernet.store import identity_key, supernet_identity
    from haq_rl.task.budget import pinned_layers

    spec = task.spec
    pinned = pinned_layers(len(task.layers), spec.pin_first_last)
    w_choices, a_choices = bit_choices(len(task.layers), pinned, spec.min_bits, spec.max_bits, spec.weight_only)
    identity = supernet_identity(task, w_choices, a_choices, supernet_config(task).identity())
    return samples_key(spec, f"{identity['model']}-{identity_key(identity)}.pt", PREDICTOR_SAMPLES, 0)


def shipped_table(task: Any, folder: Path = BENCHMARK_DIR) -> BenchmarkTable | None:
    """The shipped table whose samples ``task``'s predictor would draw, or None: the one its
    ``reward_options`` name (``table``, :class:`~haq_rl.supernet.config.TabulatedConfig`),
    else the task's default one (the first shipped for it, ``"default": true`` in the
    manifest), so an id that names none keeps its rewards when a larger table ships. Every
    table of a task starts with the same rows (one random stream), so any of them holds its
    predictor's samples. A file that fails its SHA-256 or its shape checks is refused with a
    warning (then rebuilt locally); a ``table`` the task has not is a ConfigError naming
    those it has."""
    manifest = _manifest(folder)
    key = task_samples_key(task) if manifest["tables"] else None
    ours = {name.removesuffix(".npz"): entry for name, entry in manifest["tables"].items()
            if entry.get("samples_key") == key}
    wanted = requested_table(task)
    if wanted and wanted not in ours:
        raise ConfigError(f"reward_options table={wanted!r}: not a shipped table of task {task.spec.id}; "
                          f"its tables: {', '.join(sorted(ours)) or 'none'}")
    if not ours:
        return None
    name = wanted or next((stem for stem, entry in ours.items() if entry.get("default")), min(ours))
    return _read_table(folder / f"{name}.npz", ours[name], list(task.layer_names))


def requested_table(task: Any) -> str:
    """The shipped table ``task``'s reward options name ("" where they name none)."""
    from haq_rl.supernet.reward import supernet_config

    return str(getattr(supernet_config(task), "table", ""))


def shipped_env_ids(folder: Path = BENCHMARK_DIR) -> list[str]:
    return sorted(entry["env_id"] for entry in _manifest(folder)["tables"].values())


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {"format_version": FORMAT_VERSION, "tables": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"benchmark manifest {path} is unreadable: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        raise CheckpointError(f"benchmark manifest {path} has no 'tables' table")
    return data


def _read_table(path: Path, entry: dict[str, Any], layer_names: list[str]) -> BenchmarkTable | None:
    if not path.is_file() or file_sha256(path) != entry.get("sha256"):
        logger.warning("shipped benchmark table %s is missing or fails its SHA-256 check: not used", path)
        return None
    try:
        with open_regular(path, "rb") as stream, np.load(stream, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except NUMPY_READ_ERRORS as error:
        logger.warning("shipped benchmark table %s is unreadable (%s): not used", path, error)
        return None
    parameters: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():  # "<predictor>__<parameter>", see ship_table
        prefix, separator, name = key.partition("__")
        if separator and prefix in _PREDICTORS:
            parameters.setdefault(prefix, {})[name] = value
    table = BenchmarkTable(entry=entry, layer_names=[str(name) for name in arrays["layer_names"]],
                           parameters=parameters, **{key: arrays[key] for key in _ARRAYS})
    if table.layer_names != layer_names or table.w_bits.shape != (len(table.kl), len(layer_names)):
        logger.warning("shipped benchmark table %s is for other layers: not used", path)
        return None
    return table


_PREDICTORS = ("predictor", "table_predictor")
_ARRAYS = ("w_bits", "a_bits", "kl", "accuracy", "origin", "sample_index", "sample_retraining_free",
           "sample_finetuned")


def stratified_sample(cost_ratios: np.ndarray, rewards: np.ndarray, count: int, bins: int = 6) -> list[int]:
    """``count`` row indices spread over ``bins`` equal-count cost-ratio bins and, within each,
    evenly over the reward ranks; interleaved across bins so every prefix is stratified too."""
    order = np.argsort(cost_ratios, kind="stable")
    per_bin = [[int(i) for i in chunk[np.argsort(rewards[chunk], kind="stable")]]
               for chunk in np.array_split(order, bins)]
    picks: list[list[int]] = []
    for rows, share in zip(per_bin, _shares(count, bins), strict=True):
        positions: list[int] = (np.linspace(0, len(rows) - 1, min(share, len(rows))).round().astype(int).tolist()
                                if rows else [])
        picks.append([rows[p] for p in positions])
    return [column[k] for k in range(max(map(len, picks), default=0)) for column in picks if k < len(column)]


def _shares(count: int, bins: int) -> list[int]:
    return [count // bins + (1 if b < count % bins else 0) for b in range(bins)]


def ship_table(env_id: str, task: Any, work: dict[str, Any], command: str, name: str,
               folder: Path = BENCHMARK_DIR) -> str:
    """Write ``work`` (bench/build_benchmark_table.py's rows and sample) as the shipped table
    ``name`` of ``env_id``'s task and record it in the manifest; returns a one-line summary.
    A shipped name is never rewritten with other rows: ids pin their table by name."""
    from haq_rl.supernet.config import check_table_name
    from haq_rl.task.scoring import scorer_for_task

    check_table_name(name)
    manifest = _manifest(folder)
    shipped = manifest["tables"].get(f"{name}.npz")
    if shipped is not None and int(shipped["rows"]) != len(work["kl"]):
        raise ConfigError(f"table {name} already ships {shipped['rows']} rows, not {len(work['kl'])}: an id pins "
                          f"its table by name, so ship these rows under a new name")
    float_accuracy = scorer_for_task(task, progress=False).evaluator.float_accuracy
    index = sorted(work["sample"])
    arrays: dict[str, Any] = {
        "layer_names": np.array(list(task.layer_names)),
        "w_bits": np.array(work["w_bits"], dtype=np.uint8),
        "a_bits": np.array(work["a_bits"], dtype=np.uint8),
        "kl": np.array(work["kl"], dtype=np.float64),
        "accuracy": np.array(work["accuracy"], dtype=np.float64),
        "origin": np.array(work["origin"], dtype=np.int8),
        "sample_index": np.array(index, dtype=np.int64),
        "sample_retraining_free": np.array([work["sample"][i][0] for i in index], dtype=np.float64),
        "sample_finetuned": np.array([work["sample"][i][1] for i in index], dtype=np.float64),
    }
    name = f"{name}.npz"
    folder.mkdir(parents=True, exist_ok=True)
    bits = range(task.spec.min_bits, task.spec.max_bits + 1)
    origin = arrays["origin"]
    samples = PolicySamples(arrays["w_bits"][origin == 0].astype(np.int64), arrays["a_bits"][origin == 0].astype(np.int64),
                            arrays["accuracy"][origin == 0], arrays["kl"][origin == 0])
    table = PolicySamples(arrays["w_bits"].astype(np.int64), arrays["a_bits"].astype(np.int64), arrays["accuracy"],
                          arrays["kl"])
    metric = task.spec.reward_metric
    kinds = {}
    for prefix, rows in (("predictor", samples), ("table_predictor", table)):
        kinds[prefix] = fit_report(rows, bits, metric)["kind"]
        linear = BitsPredictor(kinds[prefix], bits).fit(rows).linear_parameters() or {}
        arrays.update({f"{prefix}__{key}": value for key, value in linear.items()})
    temporary = folder / f".{name}.tmp"  # never a half-written table under its shipped name
    with open(temporary, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    temporary.replace(folder / name)
    key = task_samples_key(task)
    first = bool(shipped.get("default")) if shipped is not None else \
        not any(entry.get("samples_key") == key for entry in manifest["tables"].values())
    entry = {"env_id": env_id, "samples_key": key, "sha256": file_sha256(folder / name), "default": first,
             "rows": int(len(arrays["kl"])), "float_accuracy": float_accuracy,
             "predictor_kind": kinds["predictor"], "table_predictor_kind": kinds["table_predictor"],
             "sample": len(index), "finetuned": int(np.isfinite(arrays["sample_finetuned"]).sum()),
             "command": command}
    manifest["tables"][name] = entry
    write_text_atomic(folder / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return (f"shipped {name}: {entry['rows']} policies, {entry['sample']} sampled ({entry['finetuned']} fine-tuned), "
            f"predictor {entry['predictor_kind']}, table predictor {entry['table_predictor_kind']}, "
            f"sha256 {entry['sha256'][:12]}")
