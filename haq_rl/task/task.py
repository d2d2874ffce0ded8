"""The :class:`Task`: what a search, a fine-tune and an evaluation share.

A task is a float model with its data splits, its quantizable layers' shapes, their
cost table on a hardware profile and the quantizer settings. :func:`load_task` builds
one from a :class:`~haq_rl.task.spec.TaskSpec` (the pretrained model comes from the
cache); the :class:`Task` constructor takes the same pieces as objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from haq_rl.errors import ConfigError
from haq_rl.task.spec import TaskSpec, resolve_spec

#: Added to ``split_seed`` to seed the shuffle of the per-episode fine-tune batches.
FINETUNE_SEED_OFFSET = 1
#: Added to ``split_seed`` to seed the draw of the BatchNorm re-estimation batches.
BN_SEED_OFFSET = 2
#: Seeds the draw of the reward subset (``reward_images``) from the reward split.
REWARD_SUBSET_SEED_OFFSET = 3

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
    metric: Any = None  # haq_rl.training.Metric, or None for top-1 accuracy in percent

    @classmethod
    def from_model(cls, model: nn.Module, *, search_train: Any, reward_val: Any, test: Any,
                   metric: Any = None, name: str = "UserModel", hardware: str = "bismo-edge",
                   objective: str = "latency", budget: float = 0.5, **settings: Any) -> Task:
        """A task from your own objects: any ``nn.Module`` and its data.

        Arguments:
            model: the trained float model (its forward may return a tensor, a tuple or dict
                whose first entry holds the class scores, or an object with ``.logits``).
                Its ``nn.MultiheadAttention`` modules are replaced in place by
                :class:`~haq_rl.models.attention.ExplicitMultiheadAttention` (same function,
                quantizable projections).
            search_train / reward_val / test: torch Datasets of ``(input, target)`` or
                DataLoaders over them: calibration and fine-tuning, the search's reward, and
                the final evaluation.
            metric: ``metric(outputs, targets) -> float``, higher is better, over a whole
                split; None is top-1 accuracy in percent (``haq_rl.training.METRICS`` has
                ``top1``, ``top5`` and ``neg_cross_entropy``).
            name: the task's label (its id is ``python/<name>``).
            hardware / objective / budget / settings: as in a task spec (any
                :class:`~haq_rl.task.spec.TaskSpec` field, e.g. ``min_bits``, ``reward_metric``).
        """
        from haq_rl.hardware.profile import profile_for_layers
        from haq_rl.models import extract_layer_specs, make_attention_explicit
        from haq_rl.training import resolve_device

        splits = TensorSplits.of(search_train, reward_val, test)
        spec = TaskSpec(id=f"python/{name}", model=f"{PYTHON_SOURCE}:{type(model).__name__}",
                        dataset=PYTHON_SOURCE, input_size=int(splits.input_shape[-1]), hardware=hardware,
                        objective=objective, budget=budget, **settings)
        device = resolve_device(spec.device)
        make_attention_explicit(model)  # in place: attention projections become quantizable Linears
        model = model.eval()
        profile, layers = profile_for_layers(
            spec.hardware, lambda batch: extract_layer_specs(
                model, cast("tuple[int, int, int]", splits.input_shape), batch=batch), name)
        from haq_rl.shipped_models import weights_sha256

        meta = {"model": spec.model, "source": PYTHON_SOURCE, "input_shape": list(splits.input_shape),
                "num_classes": splits.num_classes, "weights_sha256": weights_sha256(model)}
        return cls(spec=spec, model=model, meta=meta, splits=splits, layers=layers,
                   cost_table=_cost_table(layers, profile, spec), quant_config=_quant_config(spec),
                   device=device, metric=metric)

    def with_settings(self, **fields: Any) -> Task:
        """The same model and data under other spec fields (budget, objective, hardware, ...).

        The quantizer settings follow the new spec; a new hardware profile or weight method
        rebuilds the cost table (each layer's tokens per image kept, batch from the profile).
        """
        if not fields:
            return self
        spec = self.spec.replace(**fields)
        task = dataclasses.replace(self, spec=spec, quant_config=_quant_config(spec))
        if spec.hardware == self.spec.hardware and spec.weight_method == self.spec.weight_method:
            return task
        from haq_rl.hardware.profile import profile_batch, profile_for_layers

        old_batch = profile_batch(self.spec.hardware)
        profile, layers = profile_for_layers(
            spec.hardware, lambda batch: [layer.with_batch(layer.batch // old_batch * batch) for layer in self.layers],
            spec.model)
        return dataclasses.replace(task, layers=layers, cost_table=_cost_table(layers, profile, spec))

    def preprocessing(self) -> dict[str, Any]:
        """What the model's inputs are, for records a user reproduces them from (finetuned.pt,
        the ONNX metadata): ``(pixels / 255 - mean) / std`` per channel at ``input_shape``."""
        shape = [int(value) for value in self.splits.input_shape]
        if not hasattr(self.splits, "mean"):  # Task.from_model: the caller's tensors, as given
            return {"normalize": "as given", "formula": "the tensors passed to Task.from_model, unchanged",
                    "input_shape": shape}
        channels = {1: "grayscale", 3: "RGB"}.get(shape[0], f"{shape[0]} channels as stored")
        return {"normalize": getattr(self.splits, "normalize", self.spec.normalize),
                "formula": "(pixels / 255 - mean) / std", "mean": [float(v) for v in self.splits.mean],
                "std": [float(v) for v in self.splits.std], "channel_order": channels, "input_shape": shape}

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
        """The reward split as fixed (inputs, labels) batches, in order: all of it, or the
        ``reward_images`` of it drawn once with a seed (in their split order)."""
        data = self.splits.reward_val
        count = self.spec.reward_images
        if 0 < count < len(data):
            generator = torch.Generator().manual_seed(self.spec.split_seed + REWARD_SUBSET_SEED_OFFSET)
            chosen = torch.randperm(len(data), generator=generator)[:count].sort().values
            data = torch.utils.data.TensorDataset(*(tensor[chosen] for tensor in data.tensors))
        return tensor_batches(data, self.spec.reward_batch_size)

    def finetune_batches(self) -> list[Batch]:
        """HAQ's optional per-policy fine-tune batches: its own seeded shuffle of search-train."""
        if not self.spec.finetune_steps:
            return []
        generator = torch.Generator().manual_seed(self.spec.split_seed + FINETUNE_SEED_OFFSET)
        return tensor_batches(self.splits.search_train, 64, generator)


#: The ``model``/``dataset`` of a task built from Python objects (Task.from_model).
PYTHON_SOURCE = "python"
#: A float model whose top-1 is within this share of the way from chance to 100 % is "near
#: chance" (10 classes: below 19 %): the search refuses it (:func:`check_float_model`).
NEAR_CHANCE_SHARE = 0.1


def check_float_model(task: Task, float_accuracy: float) -> None:
    """ConfigError (one line naming the likely causes and their fixes) when the float model
    scores near chance on the reward split: a search would only rank noise.

    Only for top-1 (``task.metric`` None) on a classification task: a custom metric has no
    known chance level. Every quantized policy scores at or below the float model, so a
    broken float model is never worth searching; weights trained on other pixels are the
    common cause (a model trained on ``pixels / 255`` scores near chance under the default
    ``normalize=dataset``).
    """
    classes = int(getattr(task.splits, "num_classes", 0) or 0)
    if task.metric is not None or classes < 2:
        return
    chance = 100.0 / classes
    if float_accuracy > chance + NEAR_CHANCE_SHARE * (100.0 - chance):
        return
    if task.spec.dataset == PYTHON_SOURCE:
        pixels = "the inputs you pass to Task.from_model must be preprocessed exactly as in training"
    else:
        pixels = (f"haq-rl feeds (pixels/255 - mean)/std with normalize={task.spec.normalize}; trained on "
                  "pixels/255 only: --set normalize=none, or your mean/std: --set normalize=MEAN/STD")
    raise ConfigError(
        f"the float model scores {float_accuracy:.1f} % on the reward split, near chance ({chance:.1f} % for "
        f"{classes} classes); likely causes: normalisation ({pixels}); labels (the dataset's class order "
        f"must be the one the model was trained with); weights for another model or dataset (check --weights "
        f"and --model). See docs/preprocessing.md")


@dataclass
class TensorSplits:
    """The three splits of a task built from Python objects, as TensorDatasets."""

    search_train: torch.utils.data.TensorDataset
    reward_val: torch.utils.data.TensorDataset
    test: torch.utils.data.TensorDataset
    input_shape: tuple[int, ...]
    num_classes: int

    @classmethod
    def of(cls, search_train: Any, reward_val: Any, test: Any) -> TensorSplits:
        named = {"search_train": search_train, "reward_val": reward_val, "test": test}
        tensors = {key: _materialise(value, key) for key, value in named.items()}
        shapes = {tuple(data.tensors[0].shape[1:]) for data in tensors.values()}
        if len(shapes) != 1:
            raise ConfigError(f"the splits' inputs differ in shape: {sorted(shapes)}")
        targets = torch.cat([data.tensors[1] for data in tensors.values()])
        classes = int(targets.max()) + 1 if targets.dtype in (torch.int64, torch.int32) and targets.numel() else 0
        return cls(**tensors, input_shape=shapes.pop(), num_classes=classes)


def _materialise(data: Any, name: str) -> torch.utils.data.TensorDataset:
    """A Dataset or DataLoader of (input, target) pairs as one TensorDataset."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return data
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=256, shuffle=False)
    if not isinstance(data, DataLoader):
        raise ConfigError(f"{name} must be a torch Dataset or DataLoader of (input, target), "
                          f"got {type(data).__name__}")
    inputs, targets = [], []
    for batch in data:
        if not isinstance(batch, list | tuple) or len(batch) < 2:
            raise ConfigError(f"{name} must yield (input, target) pairs")
        inputs.append(torch.as_tensor(batch[0]))
        targets.append(torch.as_tensor(batch[1]))
    if not inputs:
        raise ConfigError(f"{name} is empty")
    return TensorDataset(torch.cat(inputs).float(), torch.cat(targets))


def load_task(spec: TaskSpec | str | Path, **overrides: Any) -> Task:
    """Load the pretrained model, splits, layer specs, cost table and quantizer settings of ``spec``.

    ``spec`` is a TaskSpec, a registered id or a YAML path; ``overrides`` replace its fields.
    The pretrained float model comes from the cache (trained once the first time).
    """
    from haq_rl.data import SplitConfig, load_dataset, make_splits
    from haq_rl.hardware.profile import profile_for_layers
    from haq_rl.models import extract_layer_specs
    from haq_rl.pretrain import PretrainConfig, get_pretrained
    from haq_rl.training import resolve_device

    spec = resolve_spec(spec, **overrides)
    if spec.dataset == PYTHON_SOURCE:
        raise ConfigError(f"task {spec.id} was built from Python objects (Task.from_model): pass the Task "
                          "itself (run_search(config, task=...), finetune_run(run, task=...))")
    device = resolve_device(spec.device)
    # Native-size data needs no resize and shares the cache entry of `haq-rl pretrain`
    # with default settings; split_seed keeps the reward and test images out of training.
    image_size = spec.input_size if spec.input_size != _native_size(spec.dataset) else None
    if spec.weights is None:
        model, meta = get_pretrained(PretrainConfig(
            model=spec.model, dataset=spec.dataset, data_root=spec.data_root, width_mult=spec.width_mult,
            input_size=image_size, split_seed=spec.split_seed, normalize=spec.normalize))
    splits = make_splits(load_dataset(spec.dataset, spec.data_root, image_size=image_size),
                         SplitConfig(seed=spec.split_seed), normalize=spec.normalize)
    if spec.weights is not None:
        model, meta = _model_with_weights(spec, splits)
    profile, layers = profile_for_layers(
        spec.hardware, lambda batch: extract_layer_specs(model, splits.input_shape, batch=batch),
        f"{spec.model}-{spec.input_size}px")
    return Task(spec=spec, model=model, meta=meta, splits=splits, layers=layers,
                cost_table=_cost_table(layers, profile, spec), quant_config=_quant_config(spec), device=device)


def _cost_table(layers: list[Any], profile: Any, spec: TaskSpec) -> Any:
    """The layers' CostTable on ``profile`` (k-means codebooks counted for k-means weights)."""
    from haq_rl.hardware import CostTable

    return CostTable.build(layers, profile, kmeans_codebooks=spec.weight_method == "kmeans")


def _quant_config(spec: TaskSpec) -> Any:
    """The QuantConfig every method quantizes the spec's task with."""
    from haq_rl.quant import QuantConfig

    return QuantConfig(act_calibration=spec.calibration, calibration_batches=spec.calibration_batches,
                       min_bits=spec.min_bits, max_bits=spec.max_bits, weight_method=spec.weight_method)


def _model_with_weights(spec: TaskSpec, splits: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The spec's architecture with the user's trained weights: nothing is trained."""
    from haq_rl.models import build_model, load_weights
    from haq_rl.shipped_models import weights_sha256

    channels = int(splits.input_shape[0])
    model = build_model(spec.model, num_classes=int(splits.num_classes), in_channels=channels,
                        input_size=spec.input_size, width_mult=spec.width_mult)
    load_weights(model, str(spec.weights), model_name=f"model {spec.model!r}")
    meta = {"model": spec.model, "weights": str(spec.weights), "dataset": spec.dataset,
            "num_classes": int(splits.num_classes), "in_channels": channels,
            "input_size": spec.input_size, "width_mult": spec.width_mult,
            "source": "weights file", "weights_sha256": weights_sha256(model)}
    return model, meta


def _native_size(dataset: str) -> int | None:
    return {"mnist5k": 28, "mnist": 28, "fashion-mnist": 28, "digits": 8, "cifar10": 32}.get(dataset)


def tensor_batches(dataset: torch.utils.data.TensorDataset, batch_size: int,
                   generator: torch.Generator | None = None) -> list[Batch]:
    """Materialise a TensorDataset as (inputs, labels) batches; shuffled with ``generator``."""
    inputs, labels = dataset.tensors
    order = torch.randperm(len(labels), generator=generator) if generator is not None else torch.arange(len(labels))
    return [(inputs[order[i:i + batch_size]].contiguous(), labels[order[i:i + batch_size]])
            for i in range(0, len(labels), batch_size)]
