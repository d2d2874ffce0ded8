"""Shape facts of one quantizable layer, the input of every cost model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

LAYER_KINDS = ("conv", "depthwise", "grouped", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """One Conv2d or Linear layer as the hardware sees it.

    A linear layer has kernel 1, stride 1, groups 1 and a 1 x 1 feature map.
    ``batch`` is the number of images processed together (the accelerator's batch).
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    batch: int = 1
    has_bias: bool = True

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"LayerSpec {self.name!r}: kind {self.kind!r} not in {LAYER_KINDS}")
        for field in ("in_channels", "out_channels", "kernel", "stride", "groups",
                      "in_h", "in_w", "out_h", "out_w", "batch"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LayerSpec {self.name!r}: {field}={value!r} must be a positive int")

    # Matrix-multiply view (docs/hardware.md): M rows of weights, K reduction, N columns.
    @property
    def m(self) -> int:
        return self.out_channels // self.groups

    @property
    def k(self) -> int:
        return self.kernel * self.kernel * self.in_channels // self.groups

    @property
    def n(self) -> int:
        """Output pixels per image (1 for a linear layer)."""
        return self.out_h * self.out_w

    @property
    def weight_count(self) -> int:
        return self.out_channels * self.k

    @property
    def macs(self) -> int:
        """Multiply-accumulates for the whole batch."""
        return self.batch * self.weight_count * self.n

    def with_batch(self, batch: int) -> LayerSpec:
        return LayerSpec(**{**asdict(self), "batch": batch})

    def to_dict(self) -> dict:
        return asdict(self)


def describe(specs: list[LayerSpec], batch: int = 1) -> str:
    """Short human summary: count of layers by kind and total MACs per image of specs
    traced at ``batch`` images (a token layer's batch also counts its tokens)."""
    kinds = {kind: sum(s.kind == kind for s in specs) for kind in LAYER_KINDS}
    macs = sum(s.macs for s in specs) / batch
    counts = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    return f"{len(specs)} layers ({counts}), {macs / 1e6:.2f} M MACs per image"


