"""``--method sdq``: differentiable bit-width search (SDQ; EdMIPS as an option), one evaluation.

The peer a reviewer names first: the bit widths are learned by gradient descent together
with the weights (SDQ, Huang et al., ICML 2022; EdMIPS, Cai and Vasconcelos, CVPR 2020).
A copy of the task's float model gets one LSQ quantizer per width and layer (the
supernet's classes) and a bit parameter per layer for weights and for activations
(:mod:`haq_rl.search.sdq_relax`). ``steps`` Adam steps on batches of the task's
search-train split minimise

    distillation loss from the float model + sum_o lambda_o * max(0, E[cost_o] / budget_o - 1)

where ``E[cost_o]`` is the expected cost of the relaxed policy in the task's cost table
(the objective and any extra budget, the same lookup every method uses) and ``lambda_o``
the penalty's weight: it starts at ``penalty`` and follows dual ascent,
``lambda <- max(penalty, lambda + multiplier_lr * (E[cost] / budget - 1))`` after every
step (a budget-constrained form of EdMIPS's complexity term). Over the budget the hinge
pulls the expected cost down, harder the longer it stays over; under it only the task
loss acts and pushes bits back up where they matter, so the expected cost settles at
the budget. The temperature goes geometrically from ``temperature`` to
``final_temperature``. The most probable widths then form one policy, which the loop
walls under the budget and scores by the task's reward like every other method's
(:mod:`haq_rl.search.loop`): one evaluation. The trained weights are not kept: the
standard ``haq-rl finetune`` fine-tunes the policy as it does every method's.

Reliability. Every random draw is a function of ``(seed, step)``, and the relaxation
(model, bit parameters, Adam's state, the step) is checkpointed to ``sdq_state.pt`` in
the run directory every :data:`CHECKPOINT_STEPS` steps and at the end, so ``--resume``
after a kill continues to the policy an uninterrupted run finds. A budget the expected
cost never came within :data:`REACH_TOLERANCE` of stops with one line naming the lowest
expected cost reached; a non-finite loss or bit parameter stops with one line naming the
layer (before the policy is proposed, so no row or policy file is written).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from haq_rl.checkpoint_io import atomic_torch_save, read_torch_file
from haq_rl.errors import BudgetError, CheckpointError, DivergenceError
from haq_rl.quant.outputs import logits_of
from haq_rl.search.config import SearchConfig
from haq_rl.search.loop import Proposal, ProposalSteps, SteppedProposer
from haq_rl.search.methods import SdqOptions
from haq_rl.search.sdq_relax import BitRelaxation
from haq_rl.search.setup import SearchSetup
from haq_rl.training import distillation_loss

logger = logging.getLogger(__name__)

#: The relaxation's checkpoint in the run directory.
STATE_FILE = "sdq_state.pt"
#: Steps between checkpoints (a few seconds of training on the default env).
CHECKPOINT_STEPS = 20
#: The budget counts as reached when the expected cost came within this fraction of it
#: (the action wall then lowers the rounded policy by a bit or two, as it does any method's).
REACH_TOLERANCE = 0.02
#: The supernet's distillation mix (haq_rl.supernet.config): half labels, half the float
#: model's predictions at temperature 2 (the search reward is the KL from the float model).
DISTILL, DISTILL_TEMPERATURE = 0.5, 2.0


def sdq_proposer(setup: SearchSetup, config: SearchConfig) -> SteppedProposer:
    return SteppedProposer(_sdq_steps(setup, config))


def _sdq_steps(setup: SearchSetup, config: SearchConfig) -> ProposalSteps:
    """Train the relaxation (or read the finished one), propose its rounded policy once."""
    w_bits, a_bits = train_relaxation(setup, config)
    yield [Proposal(w_bits, a_bits, config.method_options().relaxation)]


def temperature_at(step: int, steps: int, start: float, end: float) -> float:
    """Geometric schedule from ``start`` (step 0) to ``end`` (the last step)."""
    if steps <= 1:
        return end
    return start * (end / start) ** (step / (steps - 1))


def train_relaxation(setup: SearchSetup, config: SearchConfig) -> tuple[Any, Any]:
    """The rounded policy ``(w_bits, a_bits)`` of the trained relaxation; resumes from the
    run directory's checkpoint, and returns the finished one's policy without training."""
    options = config.method_options()
    task, scorer = setup.task, setup.scorer
    objectives = [(scorer.cost_table.objective(scorer.objective), scorer.budget_cost)]
    objectives += [(scorer.cost_table.objective(name), ratio * scorer.reference_costs[name])
                   for name, ratio in scorer.extra_budgets.items()]
    relax = BitRelaxation(task, options.relaxation, objectives)
    relax.multipliers.fill_(float(options.penalty))
    if any(isinstance(m, nn.Conv2d) for m in relax.model.modules()):  # depthwise ~3x faster (training.py)
        relax.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    steps, seed = int(options.steps), int(config.seed)
    identity = json.dumps({"options": dataclasses.asdict(options), "seed": seed, "budget": scorer.budget_ratio,
                           "extra_budgets": scorer.extra_budgets, "layers": relax.layer_names}, sort_keys=True)
    optimizer = torch.optim.Adam([{"params": list(relax.model.parameters()), "lr": options.lr},
                                  {"params": [relax.bit_params], "lr": options.bit_lr}])
    assert setup.run_dir is not None
    path = setup.run_dir / STATE_FILE
    state = _read_state(path, identity)
    start, seconds, lowest = 0, 0.0, (math.inf, -1)
    if state is not None:
        relax.load_state_dict(state["relaxation"])
        optimizer.load_state_dict(state["optimizer"])
        start, seconds, lowest = int(state["step"]), float(state["seconds"]), (float(state["lowest"]),
                                                                                int(state["lowest_step"]))
        if start < steps:
            logger.warning("resuming the %s relaxation at step %d/%d (%s)", relax.kind, start, steps, path)
    began = time.perf_counter()
    for step in range(start, steps):
        load = _train_step(relax, task, optimizer, options, seed, step)
        if load < lowest[0]:
            lowest = (load, step)
        if (step + 1) % CHECKPOINT_STEPS == 0 or step + 1 == steps:
            logger.debug("%s step %d: expected cost %.3f of the budget, multipliers %s", relax.kind, step + 1,
                         load, relax.multipliers.tolist())
            _save_state(path, identity, relax, optimizer, step + 1, seconds + time.perf_counter() - began, lowest)
    if start < steps:
        logger.info("%s relaxation trained in %.0f s (%d steps)", relax.kind,
                    seconds + time.perf_counter() - began, steps)
    if lowest[0] > 1.0 + REACH_TOLERANCE:
        raise BudgetError(f"{relax.kind} did not reach budget {scorer.budget_ratio:g} of the 8/8 "
                          f"{scorer.objective} in {steps} steps: the lowest expected cost reached was "
                          f"{lowest[0] * scorer.budget_ratio:.4f} of 8/8 (step {lowest[1]}); raise the option "
                          f"multiplier_lr ({options.multiplier_lr:g}), steps ({steps}) or bit_lr ({options.bit_lr:g})")
    return relax.rounded(options.final_temperature)


@torch.enable_grad()
def _train_step(relax: BitRelaxation, task: Any, optimizer: torch.optim.Optimizer, options: SdqOptions,
                seed: int, step: int) -> float:
    """One step on one search-train batch; returns the expected cost over budget (the
    largest of the objectives). Raises DivergenceError naming the layer on a non-finite value."""
    steps = int(options.steps)
    temperature = temperature_at(step, steps, options.temperature, options.final_temperature)
    inputs, targets = _batch(task, int(options.batch_size), seed, step)
    relax.set_mixture(temperature, torch.Generator().manual_seed(seed * 1_000_003 + step))
    relax.model.train()
    with torch.random.fork_rng(devices=[]):  # dropout draws too are a function of (seed, step)
        torch.manual_seed(seed * 1_000_003 + step)
        logits = logits_of(relax(inputs))
    with torch.no_grad():
        teacher = logits_of(task.model.eval()(inputs))
    loads = relax.expected_costs(temperature)
    loss = distillation_loss(logits, teacher, targets, DISTILL, DISTILL_TEMPERATURE)
    loss = loss + (relax.multipliers * torch.relu(loads - 1.0)).sum()
    if not math.isfinite(float(loss.detach())):
        raise DivergenceError(f"{relax.kind} loss is {float(loss.detach())} at step {step}: first non-finite in "
                              f"layer {_first_nonfinite_layer(relax, inputs)}; lower the option lr "
                              f"({options.lr:g}) or bit_lr ({options.bit_lr:g})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        relax.multipliers.add_(options.multiplier_lr * (loads.detach() - 1.0)).clamp_(min=options.penalty)
        if relax.kind == "sdq":  # a width between min_bits and max_bits (projected gradient descent)
            relax.bit_params.clamp_(float(relax.min_bits), float(relax.max_bits))
        bad = ~torch.isfinite(relax.bit_params.reshape(2, len(relax.layer_names), -1)).all(dim=-1).all(dim=0)
    if bool(bad.any()):
        layer = relax.layer_names[int(bad.nonzero()[0])]
        raise DivergenceError(f"{relax.kind} bit parameter of layer {layer} is not finite after step {step}; "
                              f"lower the option bit_lr ({options.bit_lr:g})")
    return float(loads.detach().max())


def _batch(task: Any, batch_size: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s batch of the search-train split: a fresh ``(seed, epoch)`` order per epoch."""
    inputs, targets = task.splits.search_train.tensors[:2]
    per_epoch = max(1, len(targets) // batch_size)  # whole batches only: BatchNorm needs >= 2 samples
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    rows = order[index * batch_size:(index + 1) * batch_size]
    batch = inputs[rows].to(task.device)
    if batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch, targets[rows].to(task.device)


@torch.no_grad()
def _first_nonfinite_layer(relax: BitRelaxation, inputs: torch.Tensor) -> str:
    """The first layer (module order) whose bit parameters, weights or output are not finite."""
    for index, name in enumerate(relax.layer_names):
        if not bool(torch.isfinite(relax.bit_params[:, index]).all()):
            return f"{name} (bit parameters)"
    modules = dict(relax.model.named_modules())
    for name in relax.layer_names:
        if any(not bool(torch.isfinite(p).all()) for p in modules[name].parameters()):
            return f"{name} (weights or steps)"
    found: list[str] = []

    def hook(name: str) -> Any:
        def check(module: nn.Module, args: Any, output: Any) -> None:
            if not found and isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
                found.append(name)
        return check

    handles = [modules[name].register_forward_hook(hook(name)) for name in relax.layer_names]
    try:
        relax(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return f"{found[0]} (output)" if found else "(none: the distillation or cost term)"


def _save_state(path: Path, identity: str, relax: BitRelaxation, optimizer: torch.optim.Optimizer, step: int,
                seconds: float, lowest: tuple[float, int]) -> None:
    atomic_torch_save({"identity": identity, "relaxation": relax.state_dict(), "optimizer": optimizer.state_dict(),
                       "step": step, "seconds": seconds, "lowest": lowest[0], "lowest_step": lowest[1]}, path)


def _read_state(path: Path, identity: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none); CheckpointError when it is another
    search's (other options, seed, budget or layers)."""
    if not path.is_file():
        return None
    state = read_torch_file(path, {"identity", "relaxation", "optimizer", "step", "seconds", "lowest",
                                   "lowest_step"}, "sdq relaxation checkpoint")
    if state["identity"] != identity:
        raise CheckpointError(f"{path} belongs to another search (other options, seed, budget or layers); "
                              "move it away or start a new search in another --out")
    return state
