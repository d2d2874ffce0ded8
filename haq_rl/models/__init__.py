"""Model zoo (no downloads), user models by import path, quantizable layers and specs."""

from haq_rl.models.attention import ExplicitMultiheadAttention, make_attention_explicit
from haq_rl.models.specs import (
    ModelSummary,
    extract_layer_specs,
    model_summary,
    quantizable_layers,
)
from haq_rl.models.user import import_from_folder, is_import_path, load_user_model
from haq_rl.models.weights import load_weights, read_state_dict
from haq_rl.models.zoo import MODEL_NAMES, build_model, check_model_name

__all__ = [
    "ExplicitMultiheadAttention",
    "MODEL_NAMES",
    "ModelSummary",
    "build_model",
    "check_model_name",
    "extract_layer_specs",
    "import_from_folder",
    "is_import_path",
    "load_user_model",
    "load_weights",
    "make_attention_explicit",
    "model_summary",
    "quantizable_layers",
    "read_state_dict",
]
