"""Build a :class:`QuantizationEnv` from an :class:`EnvSpec` (the registered entry point)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from haq_rl.env.evaluator import PolicyEvaluator
from haq_rl.env.quant_env import QuantizationEnv
from haq_rl.env.spec import EnvSpec

logger = logging.getLogger(__name__)


def make_env(spec: EnvSpec | str | Path, render_mode: str | None = None, **overrides: Any) -> QuantizationEnv:
    """Create the environment of ``spec`` (an EnvSpec, a registered id or a YAML path).

    The pretrained float model is trained once and cached (see :mod:`haq_rl.pretrain`).
    """
    from haq_rl.env.registration import resolve_spec

    spec = resolve_spec(spec).replace(**overrides) if overrides else resolve_spec(spec)
    return build_env(spec, render_mode=render_mode)


#: Added to ``split_seed`` to seed the shuffle of the per-episode fine-tune batches.
FINETUNE_SEED_OFFSET = 1
#: Added to ``split_seed`` to seed the draw of the BatchNorm re-estimation batches.
BN_SEED_OFFSET = 2


@dataclass
class Task:
    """The pieces of one quantization task that an env, a fine-tune or an evaluation share.

    Built by :func:`load_task` so that the search and the fine-tune/evaluate commands see
    the same pretrained model, the same splits and the same cost table.
    """

    spec: EnvSpec
    model: nn.Module
    meta: dict[str, Any]
    splits: Any  # haq_rl.data.DataSplits (imported lazily: torch-heavy)
    specs: list[Any]  # list[haq_rl.hardware.LayerSpec]
    cost_table: Any  # haq_rl.hardware.CostTable
    quant_config: Any  # haq_rl.quant.QuantConfig
    device: torch.device

    @property
    def layer_names(self) -> list[str]:
        """Quantizable layer names, in module order (the order of policies and cost arrays)."""
        return [layer.name for layer in self.specs]

    def search_train_batches(self, batch_size: int, seed: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``count`` (inputs, labels) batches of a ``seed``-shuffled search-train split."""
        generator = torch.Generator().manual_seed(seed)
        return _batches(self.splits.search_train, batch_size, generator)[:count]

    def calibration_inputs(self) -> list[torch.Tensor]:
        """The activation-calibration batches of the search: same seed, same images."""
        batches = self.search_train_batches(self.spec.reward_batch_size, self.spec.split_seed,
                                            self.spec.calibration_batches)
        return [inputs for inputs, _ in batches]

    def bn_inputs(self) -> list[torch.Tensor]:
        """The search-train batches that re-estimate BatchNorm per policy (``bn_recalibration``)."""
        batches = self.search_train_batches(self.spec.reward_batch_size, self.spec.split_seed + BN_SEED_OFFSET,
                                            self.spec.bn_recalibration)
        return [inputs for inputs, _ in batches]


def load_task(spec: EnvSpec | str | Path) -> Task:
    """Load the pretrained model, splits, layer specs, cost table and quantizer settings of ``spec``.

    The pretrained float model comes from the cache (trained once the first time).
    """
    from haq_rl.data import SplitConfig, load_dataset, make_splits
    from haq_rl.env.registration import resolve_spec
    from haq_rl.hardware import CostTable, load_profile
    from haq_rl.models import extract_layer_specs
    from haq_rl.pretrain import PretrainConfig, get_pretrained
    from haq_rl.quant import QuantConfig
    from haq_rl.training import resolve_device

    spec = resolve_spec(spec)
    device = resolve_device(spec.device)
    profile = load_profile(spec.hardware)
    # Native-size data needs no resize and shares the cache entry of `haq-rl pretrain`
    # with default settings; split_seed keeps the reward and test images out of training.
    image_size = spec.input_size if spec.input_size != _native_size(spec.dataset) else None
    model, meta = get_pretrained(PretrainConfig(
        model=spec.model, dataset=spec.dataset, data_root=spec.data_root, width_mult=spec.width_mult,
        input_size=image_size, split_seed=spec.split_seed))
    splits = make_splits(load_dataset(spec.dataset, spec.data_root, image_size=image_size),
                         SplitConfig(seed=spec.split_seed))
    specs = extract_layer_specs(model, splits.input_shape, batch=profile.batch)
    cost_table = CostTable.build(specs, profile, kmeans_codebooks=spec.weight_method == "kmeans")
    quant_config = QuantConfig(
        act_calibration=spec.calibration, calibration_batches=spec.calibration_batches,
        min_bits=spec.min_bits, max_bits=spec.max_bits, weight_method=spec.weight_method)
    return Task(spec=spec, model=model, meta=meta, splits=splits, specs=specs,
                cost_table=cost_table, quant_config=quant_config, device=device)


def build_env(spec: EnvSpec, render_mode: str | None = None) -> QuantizationEnv:
    from haq_rl.models import quantizable_layers

    task = load_task(spec)
    model, splits, specs, device = task.model, task.splits, task.specs, task.device
    cost_table, quant_config = task.cost_table, task.quant_config
    # HAQ's optional per-episode fine-tune shuffles with its own seeded generator, so
    # its batch order does not depend on how the calibration images were drawn.
    finetune_generator = torch.Generator().manual_seed(spec.split_seed + FINETUNE_SEED_OFFSET)
    evaluator = PolicyEvaluator(
        model,
        [name for name, _ in quantizable_layers(model)],
        reward_batches=_batches(splits.reward_val, spec.reward_batch_size),
        calibration_inputs=task.calibration_inputs(),
        quant_config=quant_config,
        device=device,
        finetune_batches=_batches(splits.search_train, 64, finetune_generator) if spec.finetune_steps else (),
        finetune_steps=spec.finetune_steps,
        finetune_lr=spec.finetune_lr,
        bn_batches=task.bn_inputs(),
    )
    logger.info("built env %s: %d layers, float reward accuracy %.2f%%",
                spec.id, len(specs), evaluator.float_accuracy)
    env = QuantizationEnv(
        evaluator, specs, cost_table, objective=spec.objective, budget=spec.budget,
        min_bits=spec.min_bits, max_bits=spec.max_bits, pin_first_last=spec.pin_first_last,
        step_mode=spec.step_mode, budget_feature=spec.budget_feature, reward_metric=spec.reward_metric,
        render_mode=render_mode,
        env_spec=spec)
    env.task = task  # the splits, for methods that need labelled search-train data (hawq)
    return env


def _native_size(dataset: str) -> int | None:
    return {"mnist5k": 28, "mnist": 28, "digits": 8, "cifar10": 32}.get(dataset)


def _batches(dataset: torch.utils.data.TensorDataset, batch_size: int,
             generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Materialise a TensorDataset as (inputs, labels) batches; shuffled with ``generator``."""
    inputs, labels = dataset.tensors
    order = torch.randperm(len(labels), generator=generator) if generator is not None else torch.arange(len(labels))
    return [(inputs[order[i:i + batch_size]].contiguous(), labels[order[i:i + batch_size]])
            for i in range(0, len(labels), batch_size)]
