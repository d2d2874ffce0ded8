"""Hardware cost models (numpy only): layer specs, profiles, cost tables."""

from haq_rl.hardware.layer_spec import LAYER_KINDS, LayerSpec

__all__ = ["LAYER_KINDS", "LayerSpec"]
