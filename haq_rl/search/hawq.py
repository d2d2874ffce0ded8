"""``--method hawq``: Hessian-aware sensitivity and an integer program, one evaluation.

The peer a practitioner picks when they do not want RL (HAWQ-V2/V3, Dong et al. 2020,
Yao et al. 2021). The per-layer sensitivities (:mod:`haq_rl.quant.sensitivity`) are
measured once on ``images`` search-train images with ``probes`` Hutchinson probes; the
integer program (:mod:`haq_rl.search.integer_program`) picks the bits under the same
cost table and budget as every other method; the one resulting policy is scored
the way every method's policies are (:mod:`haq_rl.search.loop`). Options (``--option KEY=VALUE``):

* ``probes`` (32), ``images`` (256): the Hutchinson estimate.
* ``activations``: ``tied`` (w = a per layer priced by the weight sensitivity alone, as
  HAWQ-V3 does) or ``separate`` (activation bits chosen independently, priced by the
  Fisher sensitivity of each layer's input, see :mod:`haq_rl.quant.sensitivity`).
* ``sensitivity``: ``hessian`` (the above) or ``supernet``: prices fitted on the task's
  supernet evaluations (the ``prices`` entry point of its reward source's row,
  :mod:`haq_rl.task.sources`), the information the supernet reward gives the RL agent,
  for the non-RL peer.

The sensitivities are written to ``sensitivity.csv`` in the run directory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from haq_rl.fileio import NUMPY_READ_ERRORS, write_text_atomic
from haq_rl.run.layout import SENSITIVITY_FILE
from haq_rl.search.config import SearchConfig
from haq_rl.search.loop import Proposal, ProposalSteps, SteppedProposer
from haq_rl.search.methods import SensitivityOptions
from haq_rl.search.setup import SearchSetup
from haq_rl.shipped_models import shipped_entry
from haq_rl.task.evaluator import PolicyEvaluator
from haq_rl.task.scoring import PolicyScorer
from haq_rl.task.sources import reward_source_entry, trained_prices

logger = logging.getLogger(__name__)


def sensitivity_settings(options: SensitivityOptions) -> tuple[int, int, bool]:
    """``(probes, images, tied)`` from the method options (validated by SearchConfig)."""
    return options.probes, options.images, options.activations == "tied"


def sensitivity_source(requested: str, reward_source: str) -> str:
    """``hessian`` or ``supernet``: ``auto`` (guided's default) prices layers on the trained
    weights when the task's reward source scores some (its row's ``trained_weights``)."""
    if requested != "auto":
        return requested
    return "supernet" if reward_source_entry(reward_source).trained_weights else "hessian"


def task_sensitivity(setup: SearchSetup, options: SensitivityOptions, seed: int, progress: bool = False) -> Any:
    """The layer prices the options ask for: Hessian (cached) or fitted on trained weights."""
    if sensitivity_source(options.sensitivity, setup.task.spec.reward_source) == "hessian":
        probes, images, _ = sensitivity_settings(options)
        return measure_sensitivity(setup, probes, images, seed, progress=progress)
    # The prices are the task's, like the supernet they come from: one sample set for
    # every search seed (and the predictor's, when it was fitted).
    return trained_prices(setup.task, progress=progress)


def sensitivity_batches(setup: SearchSetup, images: int, seed: int,
                        batch_size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``images`` images of a ``seed``-shuffled search-train split, in batches, on the
    evaluator's device."""
    batches = setup.task.search_train_batches(batch_size, seed, -(-images // batch_size))
    device = setup.scorer.evaluator.device
    kept = []
    for index, (inputs, labels) in enumerate(batches):
        size = min(batch_size, images - index * batch_size)
        kept.append((inputs[:size].to(device), labels[:size].to(device)))
    return kept


def measure_sensitivity(setup: SearchSetup, probes: int, images: int, seed: int,
                        progress: bool = False) -> Any:
    """The task's layer sensitivities (:class:`~haq_rl.quant.sensitivity.LayerSensitivity`).

    They depend on the model, its data and quantizers, not on the hardware or the budget,
    so they are cached (``$HAQ_RL_CACHE/sensitivity``), and those of the default env's
    shipped float model ship with haq-rl (``shipped_models.shipped_entry``): a second search of the same model
    with the same settings skips the Hessian. The computation holds the entry's lock, so two
    searches started together compute it once (the second waits, saying for whom, then
    reads the cache). ``progress`` shows a bar over the Hessian probes.
    """
    from haq_rl.cache import cache_lock, write_cache_entry
    from haq_rl.quant.sensitivity import layer_sensitivity

    scorer = setup.scorer
    bits = tuple(range(scorer.min_bits, scorer.max_bits + 1))
    path = _cache_path(setup, probes, images, seed, bits)
    cached = _read_cached_sensitivity(path, bits, list(scorer.layer_names))
    if cached is not None:
        return cached
    shipped = shipped_entry(path.name)  # the default env's, the same on every machine
    cached = None if shipped is None else _read_cached_sensitivity(shipped, bits, list(scorer.layer_names))
    if cached is not None:
        return cached
    with cache_lock(path.with_name(path.name + ".lock"), f"computing the layer sensitivities of {setup.task.spec.model}"):
        cached = _read_cached_sensitivity(path, bits, list(scorer.layer_names))
        if cached is not None:  # the process we waited for computed them
            return cached
        sensitivity = layer_sensitivity(_float_applier(setup), sensitivity_batches(setup, images, seed), bits,
                                        probes=probes, seed=seed, progress=progress)
        arrays = {"layer_names": np.array(sensitivity.layer_names), "weight": sensitivity.weight,
                  "activation": sensitivity.activation, "hessian_trace": sensitivity.hessian_trace}
        write_cache_entry(path, lambda stream: np.savez(stream, **arrays))  # type: ignore[arg-type]
    return sensitivity


def _float_applier(setup: SearchSetup) -> Any:
    """A post-training :class:`~haq_rl.quant.PolicyApplier` of the task's float model: the
    evaluator's own when its reward source scores the float weights (a
    :class:`PolicyEvaluator` of them), else one built for the measurement: HAWQ's
    sensitivity is the float model's."""
    from haq_rl.quant import PolicyApplier

    task = setup.task
    if not reward_source_entry(task.spec.reward_source).trained_weights:
        return cast(PolicyEvaluator, setup.scorer.evaluator).applier
    return PolicyApplier(task.model, [x.to(task.device) for x in task.calibration_inputs()], task.quant_config)


def _read_cached_sensitivity(path: Path, bits: tuple[int, ...], layer_names: list[str]) -> Any:
    """The cached sensitivities at ``path`` if readable and of these layers, else None."""
    from haq_rl.quant.sensitivity import LayerSensitivity

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            cached = LayerSensitivity(layer_names=[str(n) for n in data["layer_names"]], bits=bits,
                                      weight=data["weight"], activation=data["activation"],
                                      hessian_trace=data["hessian_trace"])
    except NUMPY_READ_ERRORS as error:
        logger.warning("ignoring unreadable sensitivity cache %s: %s", path, error)
        return None
    if cached.layer_names != layer_names:
        return None
    logger.info("sensitivity from the cache: %s", path)
    return cached


def _cache_path(setup: SearchSetup, probes: int, images: int, seed: int, bits: tuple[int, ...]) -> Path:
    """Cache file named by everything the sensitivities depend on."""
    from haq_rl.cache import cache_dir

    task = setup.task
    spec = task.spec
    key = {name: getattr(spec, name) for name in (
        "model", "dataset", "data_root", "input_size", "width_mult", "split_seed", "calibration",
        "calibration_batches", "reward_batch_size", "weight_method")}
    if spec.normalize != "dataset":  # other pixels, other sensitivities; the default keeps existing keys
        key["normalize"] = spec.normalize
    key.update(meta=task.meta, probes=probes, images=images, seed=seed, bits=list(bits),
               layers=list(task.layer_names), format=1)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir("sensitivity") / f"{spec.model}-{digest}.npz"


def integer_program_policy(scorer: PolicyScorer, sensitivity: Any, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """The integer program's bits for the scorer's cost table, pinned layers and budget."""
    from haq_rl.search.integer_program import allocate_bits

    # Tied (HAWQ-V3): one width per layer, priced by its weights; the activation term
    # only enters when activation bits are a choice of their own.
    activation = np.zeros_like(sensitivity.activation) if tied else sensitivity.activation
    extra = [(np.asarray(scorer.cost_table.objective(name)), ratio * scorer.reference_costs[name])
             for name, ratio in scorer.extra_budgets.items()]
    return allocate_bits(sensitivity.weight, activation,
                         np.asarray(scorer.cost_table.objective(scorer.objective)), scorer.budget_cost,
                         bits=sensitivity.bits, pinned=scorer.pinned, tied=tied, weight_only=scorer.weight_only,
                         extra_constraints=extra)


def write_sensitivity(path: Path, sensitivity: Any) -> None:
    """One row per (layer, bits): weight and activation sensitivity, Hessian trace per weight."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["layer", "bits", "weight_sensitivity", "activation_sensitivity", "hessian_trace"])
    for i, name in enumerate(sensitivity.layer_names):
        for j, bits in enumerate(sensitivity.bits):
            writer.writerow([name, bits, f"{sensitivity.weight[i, j]:.6g}",
                             f"{sensitivity.activation[i, j]:.6g}", f"{sensitivity.hessian_trace[i]:.6g}"])
    write_text_atomic(path, stream.getvalue())


def priced_layers(setup: SearchSetup, config: SearchConfig) -> tuple[Any, bool]:
    """The layer prices ``config``'s options ask for, written to the run's sensitivity.csv,
    and whether activation bits are tied to the weights' (what the integer program reads)."""
    options: SensitivityOptions = config.method_options()
    sensitivity = task_sensitivity(setup, options, config.seed, progress=config.progress)
    assert setup.run_dir is not None
    write_sensitivity(setup.run_dir / SENSITIVITY_FILE, sensitivity)
    return sensitivity, sensitivity_settings(options)[2]


def hawq_proposer(setup: SearchSetup, config: SearchConfig) -> SteppedProposer:
    return SteppedProposer(_hawq_steps(setup, config))


def _hawq_steps(setup: SearchSetup, config: SearchConfig) -> ProposalSteps:
    """Measure, solve, propose the one policy (``episodes`` beyond 1 are not needed).

    A conditioned run re-solves the program at every budget: one evaluation each, the
    sensitivities measured once.
    """
    sensitivity, tied = priced_layers(setup, config)
    budgets = setup.budgets.budgets if setup.budgets.conditioned else (None,)
    yield [Proposal(*integer_program_policy(setup.budgets.at(budget), sensitivity, tied), "hawq", budget=budget)
           for budget in budgets]
