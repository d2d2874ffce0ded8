"""Which model an export writes: the fine-tuned checkpoint of a policy, or its post-training quantized model."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from haq_rl.errors import ConfigError
from haq_rl.finetune import float_structure, load_finetuned, load_quantized_model
from haq_rl.quant import QuantPolicy, export_qat, prepare_qat
from haq_rl.run.layout import FINETUNED_FILE
from haq_rl.task.task import Task

logger = logging.getLogger(__name__)


def model_to_export(task: Task, policy: QuantPolicy, policy_path: Path, checkpoint: str | Path | None,
                    out_dir: Path) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any], Path | str | None]:
    """The model at ``policy``: (the fake-quantized reference PyTorch runs, its float structure holding the
    quantized weights, the per-layer quantizer parameters, the checkpoint used or None).

    ``checkpoint`` defaults to the policy's finetuned.pt when there is one; otherwise the post-training
    quantized model (with a warning). A checkpoint fine-tuned with another policy is a ConfigError.
    """
    if checkpoint is None and (policy_path.parent / FINETUNED_FILE).is_file():
        checkpoint = policy_path.parent / FINETUNED_FILE
    if checkpoint is not None:
        payload = load_finetuned(checkpoint)
        saved = QuantPolicy.from_dict(payload["policy"])
        if saved.validate(task.layer_names, 1, 8) != policy:
            raise ConfigError(f"{checkpoint} was fine-tuned with another policy than {policy_path}")
        reference = load_quantized_model(task, payload, source=str(checkpoint))
        # A BN-folded checkpoint has the folded structure; its learned steps are in quant.
        plain = float_structure(task, payload, source=str(checkpoint))
        quant = payload["quant_params"]
    else:
        logger.warning("exporting the post-training quantized model: %s has no %s (run haq-rl finetune)",
                       out_dir, FINETUNED_FILE)
        reference = copy.deepcopy(task.model)
        prepare_qat(reference, policy, task.quant_config, task.calibration_inputs())
        exported = export_qat(reference)
        plain = copy.deepcopy(task.model)
        plain.load_state_dict(exported["state_dict"])
        quant = exported["quant"]
    reference.eval()
    return reference, plain, quant, checkpoint
