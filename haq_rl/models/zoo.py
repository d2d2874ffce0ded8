"""The built-in model zoo (random init, no downloads) and :func:`build_model`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from haq_rl.errors import ConfigError, UnknownNameError, check_integer
from haq_rl.models import resnet
from haq_rl.models.attention import make_attention_explicit
from haq_rl.models.lenet import LeNet5
from haq_rl.models.mobilenet import MobileNetV1, MobileNetV2
from haq_rl.models.user import check_user_model, is_import_path, load_user_model

_Factory = Callable[[int, int, int, float], nn.Module]

# name -> factory(num_classes, in_channels, input_size, width_mult)
_ZOO: dict[str, _Factory] = {
    "lenet5": lambda n, c, s, w: LeNet5(n, c, s),
    "resnet8": lambda n, c, s, w: resnet.resnet8(n, c),
    "resnet20": lambda n, c, s, w: resnet.resnet20(n, c),
    "resnet18": lambda n, c, s, w: resnet.resnet18(n, c),
    "resnet50": lambda n, c, s, w: resnet.resnet50(n, c),
    "mobilenetv1": lambda n, c, s, w: MobileNetV1(n, c, s, w),
    "mobilenetv2": lambda n, c, s, w: MobileNetV2(n, c, s, w),
}

MODEL_NAMES: tuple[str, ...] = tuple(_ZOO)

# Models that honour width_mult; others reject a value other than 1.0 rather than ignore it.
WIDTH_MODELS = frozenset({"mobilenetv1", "mobilenetv2"})


def check_model_name(name: str) -> None:
    """Raise UnknownNameError unless ``name`` is a zoo name or a ``module:factory`` path."""
    if not is_import_path(name) and name not in _ZOO:
        raise UnknownNameError("model", name, MODEL_NAMES)


def build_model(name: str, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                width_mult: float = 1.0) -> nn.Module:
    """Build a zoo model (randomly initialised) or a user model ``package.module:factory``.

    A user model's ``nn.MultiheadAttention`` modules are replaced by
    :class:`~haq_rl.models.attention.ExplicitMultiheadAttention` (same function).
    ``input_size`` picks the layout of the MobileNets (small-input variant at <= 64 px,
    ImageNet layout above) and sizes LeNet-5's classifier; the ResNets accept any size.
    """
    for field, value in (("num_classes", num_classes), ("in_channels", in_channels),
                         ("input_size", input_size)):
        check_integer(field, value, 1)
    if not width_mult > 0:
        raise ConfigError(f"width_mult must be > 0, got {width_mult!r}")
    if is_import_path(name):
        model = load_user_model(name, num_classes=num_classes, in_channels=in_channels,
                                input_size=input_size, width_mult=width_mult)
        make_attention_explicit(model)  # attention projections become quantizable Linears
        check_user_model(model, name, num_classes, in_channels, input_size)
        return model
    check_model_name(name)
    if width_mult != 1.0 and name not in WIDTH_MODELS:
        raise ConfigError(f"model {name!r} has no width multiplier (only {sorted(WIDTH_MODELS)}); "
                          f"got width_mult={width_mult}")
    try:
        return _ZOO[name](num_classes, in_channels, input_size, width_mult)
    except ValueError as error:  # e.g. an input too small for lenet5
        raise ConfigError(f"model {name!r}: {error}") from error
