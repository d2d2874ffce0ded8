"""The :class:`Task`: what a search, a fine-tune and an evaluation share.

A task is a float model with its data splits, its quantizable layers' shapes, their
cost table on a hardware profile and the quantizer settings. :func:`load_task` builds
one from a :class:`~haq_rl.task.spec.TaskSpec` (the pretrained model comes from the
cache); the :class:`Task` constructor takes the same pieces as objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from haq_rl.task.spec import TaskSpec, resolve_spec

#: Added to ``split_seed`` to seed the shuffle of the per-episode fine-tune batches.
FINETUNE_SEED_OFFSET = 1
#: Added to ``split_seed`` to seed the draw of the BatchNorm re-estimation batches.
BN_SEED_OFFSET = 2

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Task:
    """The pieces of one quantization task that a search, a fine-tune or an evaluation share.

    Arguments:
        spec: the task's settings (objective, budget, bit range, evaluation settings).
        model: the float model (never modified: evaluations restore it, fine-tunes copy it).
        meta: where the model came from (pretraining metadata, accuracies).
        splits: ``haq_rl.data.DataSplits`` (search_train, reward_val, test).
        layers: the quantizable layers' :class:`~haq_rl.hardware.LayerSpec`, in module order.
        cost_table: their :class:`~haq_rl.hardware.CostTable` on the spec's hardware.
        quant_config: the :class:`~haq_rl.quant.QuantConfig` every method quantizes with.
        device: where evaluations and fine-tunes run.
    """

    spec: TaskSpec
    model: nn.Module
    meta: dict[str, Any]
    splits: Any  # haq_rl.data.DataSplits (torch-heavy, imported lazily)
    layers: list[Any]  # list[haq_rl.hardware.LayerSpec]
    cost_table: Any  # haq_rl.hardware.CostTable
    quant_config: Any  # haq_rl.quant.QuantConfig
    device: torch.device

    @property
    def layer_names(self) -> list[str]:
        """Quantizable layer names, in module order (the order of policies and cost arrays)."""
        return [layer.name for layer in self.layers]

    def search_train_batches(self, batch_size: int, seed: int, count: int) -> list[Batch]:
        """The first ``count`` (inputs, labels) batches of a ``seed``-shuffled search-train split."""
        generator = torch.Generator().manual_seed(seed)
        return tensor_batches(self.splits.search_train, batch_size, generator)[:count]

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

    def reward_batches(self) -> list[Batch]:
        """The reward split as fixed (inputs, labels) batches, in order."""
        return tensor_batches(self.splits.reward_val, self.spec.reward_batch_size)

    def finetune_batches(self) -> list[Batch]:
        """HAQ's optional per-policy fine-tune batches: its own seeded shuffle of search-train."""
        if not self.spec.finetune_steps:
            return []
        generator = torch.Generator().manual_seed(self.spec.split_seed + FINETUNE_SEED_OFFSET)
        return tensor_batches(self.splits.search_train, 64, generator)


def load_task(spec: TaskSpec | str | Path, **overrides: Any) -> Task:
    """Load the pretrained model, splits, layer specs, cost table and quantizer settings of ``spec``.

    ``spec`` is a TaskSpec, a registered id or a YAML path; ``overrides`` replace its fields.
    The pretrained float model comes from the cache (trained once the first time).
    """
    from haq_rl.data import SplitConfig, load_dataset, make_splits
    from haq_rl.hardware import CostTable, load_profile
    from haq_rl.models import extract_layer_specs
    from haq_rl.pretrain import PretrainConfig, get_pretrained
    from haq_rl.quant import QuantConfig
    from haq_rl.training import resolve_device

    spec = resolve_spec(spec, **overrides)
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
    layers = extract_layer_specs(model, splits.input_shape, batch=profile.batch)
    cost_table = CostTable.build(layers, profile, kmeans_codebooks=spec.weight_method == "kmeans")
    quant_config = QuantConfig(
        act_calibration=spec.calibration, calibration_batches=spec.calibration_batches,
        min_bits=spec.min_bits, max_bits=spec.max_bits, weight_method=spec.weight_method)
    return Task(spec=spec, model=model, meta=meta, splits=splits, layers=layers,
                cost_table=cost_table, quant_config=quant_config, device=device)


def _native_size(dataset: str) -> int | None:
    return {"mnist5k": 28, "mnist": 28, "digits": 8, "cifar10": 32}.get(dataset)


def tensor_batches(dataset: torch.utils.data.TensorDataset, batch_size: int,
                   generator: torch.Generator | None = None) -> list[Batch]:
    """Materialise a TensorDataset as (inputs, labels) batches; shuffled with ``generator``."""
    inputs, labels = dataset.tensors
    order = torch.randperm(len(labels), generator=generator) if generator is not None else torch.arange(len(labels))
    return [(inputs[order[i:i + batch_size]].contiguous(), labels[order[i:i + batch_size]])
            for i in range(0, len(labels), batch_size)]
