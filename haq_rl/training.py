"""Plain float training and evaluation loops shared by pretraining, search and fine-tuning."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from haq_rl.errors import ConfigError, check_device, check_integer
from haq_rl.quant.outputs import logits_of

logger = logging.getLogger(__name__)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` / ``cuda:N`` must be available.

    Raises:
        ConfigError: unknown device name, or cuda requested on a machine without it.
    """
    if isinstance(name, torch.device):
        return name
    name = "auto" if name is None else str(name).strip().lower()
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():  # cuda or cuda:N
        raise ConfigError(f"device {name!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (cpu for a parameterless model)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    return model_device(model) if device is None else resolve_device(device)


def _uses_channels_last(model: nn.Module) -> bool:
    """True when the model's convolution weights are stored channels-last (NHWC)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.dim() == 4:
            return m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
    return False


def random_shift(images: torch.Tensor, max_shift: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of a batch by up to ``max_shift`` pixels (border replicated).

    The cheapest augmentation that helps digit-like data; done on tensors so it works
    with any TensorDataset. Offsets are drawn on the CPU from ``generator``.
    """
    if max_shift <= 0 or images.dim() != 4:
        return images
    batch, _, height, width = images.shape
    # Replicate the border: zero is not "background" once images are normalised.
    padded = nn.functional.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator)
    rows = (offsets[0][:, None] + torch.arange(height)).to(images.device)
    cols = (offsets[1][:, None] + torch.arange(width)).to(images.device)
    index = torch.arange(batch, device=images.device)[:, None, None]
    # Advanced indexing gives (B, H, W, C); move channels back.
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


#: A task metric: ``metric(outputs, targets) -> float``, higher is better, over a whole split.
Metric = Callable[[torch.Tensor, torch.Tensor], float]


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror a random half of a batch left to right (clothes, not digits, keep their class)."""
    if images.dim() != 4:
        return images
    flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def top1_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Percent of samples whose highest score is the target class (the default metric)."""
    return 100.0 * float((outputs.argmax(dim=1) == targets).float().mean())


def top5_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Percent of samples whose target is among the five highest scores."""
    top = outputs.topk(min(5, outputs.shape[1]), dim=1).indices
    return 100.0 * float((top == targets[:, None]).any(dim=1).float().mean())


def negative_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Minus the mean cross-entropy (nats): higher is better, like every metric here."""
    return -float(nn.functional.cross_entropy(outputs.float(), targets))


#: The shipped metrics by name.
METRICS: dict[str, Metric] = {"top1": top1_accuracy, "top5": top5_accuracy,
                              "neg_cross_entropy": negative_cross_entropy}


def evaluate_accuracy(model: nn.Module, loader: DataLoader,
                      device: str | torch.device | None = None, metric: Metric | None = None) -> float:
    """Top-1 accuracy in percent of ``model`` on ``loader`` (eval mode, no_grad), or ``metric``
    of all its outputs and targets when given.

    The model's training flag is restored afterwards. ``device=None`` evaluates on the
    device the model already lives on (it is not moved); otherwise the model is moved.
    Inputs follow the model's memory format, so a channels-last model stays fast.
    """
    dev = _device_of(model, device)
    if device is not None:
        model.to(dev)
    channels_last = _uses_channels_last(model)
    was_training = model.training
    model.eval()
    correct = 0
    total = 0
    outputs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for inputs, targets in loader:
                inputs = inputs.to(dev, non_blocking=True)
                if channels_last and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                logits = logits_of(model(inputs))
                if metric is not None:
                    outputs.append(logits.float().cpu())
                    labels.append(targets)
                else:
                    correct += int((logits.argmax(dim=1).cpu() == targets).sum())
                total += int(targets.numel())
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("cannot evaluate accuracy on an empty data loader")
    if metric is not None:
        return float(metric(torch.cat(outputs), torch.cat(labels)))
    return 100.0 * correct / total


def train_epochs(model: nn.Module, loader: DataLoader, *, epochs: int, lr: float,
                 device: str | torch.device | None = None, weight_decay: float = 4e-5,
                 momentum: float = 0.9, warmup_fraction: float = 0.05, augment_shift: int = 0,
                 augment_flip: bool = False, seed: int | None = None, progress: bool = True,
                 desc: str = "train") -> list[float]:
    """Train with SGD (Nesterov momentum) and a per-step cosine schedule with short warmup.

    The model is trained in place on ``device`` (default: where it is) and left there in
    train mode. Convolutional models train in channels-last memory format, which makes
    depthwise convolutions about 3x faster on CPU; the weights are converted back to the
    default contiguous format afterwards so that callers see ordinary tensors.

    Weight decay is not applied to biases and BatchNorm parameters (1-d tensors), the
    usual recipe for MobileNets. ``augment_shift`` > 0 randomly translates every training
    image by up to that many pixels and ``augment_flip`` mirrors a random half of each
    batch (draws from a generator seeded with ``seed``, or torch's global one). Returns the mean training loss of each epoch.
    """
    check_integer("epochs", epochs, 1)
    if not lr > 0:
        raise ConfigError(f"lr must be > 0, got {lr!r}")
    dev = _device_of(model, device)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    model.to(dev)
    if has_conv:
        # torch's Module.to stubs omit memory_format, which Module.to accepts at runtime.
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, momentum=momentum, nesterov=momentum > 0)
    steps_per_epoch = len(loader)
    total_steps = max(1, epochs * steps_per_epoch)
    warmup = int(warmup_fraction * total_steps)

    def lr_at(step: int) -> float:
        # Linear warmup, then cosine to zero: robust for from-scratch BN nets at high lr.
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * lr * (1.0 + math.cos(math.pi * t))

    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    epoch_losses: list[float] = []
    step = 0
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=False, unit="step")
    try:
        for epoch in range(epochs):
            running, seen = 0.0, 0
            for inputs, targets in loader:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                step += 1
                bar.update(1)
                if len(targets) < 2:
                    continue  # BatchNorm cannot train on a single sample
                inputs = random_shift(inputs.to(dev, non_blocking=True), augment_shift, generator)
                if augment_flip:
                    inputs = random_flip(inputs, generator)
                targets = targets.to(dev, non_blocking=True)
                if has_conv and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                loss = loss_fn(logits_of(model(inputs)), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running += float(loss.detach()) * len(targets)
                seen += len(targets)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / max(1, seen):.3f}")
            epoch_losses.append(running / max(1, seen))
            logger.info("%s epoch %d/%d: loss %.4f", desc, epoch + 1, epochs, epoch_losses[-1])
    finally:
        bar.close()
        if has_conv:
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # stub omits memory_format
    return epoch_losses


@torch.no_grad()
def teacher_logits(model: nn.Module, dataset: TensorDataset, device: torch.device,
                   batch_size: int = 256) -> torch.Tensor:
    """The float model's logits on every sample of ``dataset`` (eval mode), on the CPU."""
    was_training = model.training
    model.eval()
    inputs = dataset.tensors[0]
    try:
        out = [logits_of(model(inputs[i:i + batch_size].to(device))).float().cpu()
               for i in range(0, len(inputs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor,
                      distill: float, temperature: float) -> torch.Tensor:
    """``(1 - distill) * CE(student, targets) + distill * T^2 * KL(teacher_T || student_T)``."""
    ce = nn.functional.cross_entropy(student, targets)
    if distill <= 0.0:
        return ce
    t = temperature
    kl = nn.functional.kl_div(nn.functional.log_softmax(student / t, dim=1),
                              nn.functional.log_softmax(teacher / t, dim=1), log_target=True,
                              reduction="batchmean")
    # T^2 keeps the soft term's gradient on the scale of the hard one (Hinton et al.).
    return (1.0 - distill) * ce + distill * t * t * kl


def lr_multiplier(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the peak rate at ``step`` of ``total``: a linear warm-up over ``warmup``
    steps (``kind="steps"``, learned quantizer steps, skip it), then a cosine to zero."""
    if step < warmup:
        return 1.0 if kind == "steps" else (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their plain average over ``batches``
    (forward passes in train mode, nothing else trained); the model is left in eval mode.

    What a quantized model needs after its weights or activations changed: the statistics
    the float model (or a supernet's mix of widths) gathered no longer fit it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.eval()
    for m in norms:
        m.train()
    try:
        for inputs in batches:
            model(inputs)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
