"""Quantization-aware fine-tuning of a chosen policy and the final evaluation.

The last stage of HAQ: the policy found by the search is applied to the float model
with fake quantizers (:func:`haq_rl.quant.prepare_qat`), the model is trained for a
short budget on the ``search_train`` split (learned step sizes and distillation from the
float model by default, see :class:`FinetuneConfig`), and the
result is measured on the ``test`` split, which neither the search (reward split) nor
the fine-tune ever saw.

:func:`finetune_run` does this for a run directory (or a bare policy JSON) and, by
default, gives the baselines the same treatment, so the comparison is fair: float
(pretrained accuracy, not fine-tuned), uniform 8/8, uniform 4/4, the largest uniform
policy within the budget and the searched policy, each fine-tuned with the same
:class:`FinetuneConfig`. It writes

    finetuned.pt   the searched policy's fine-tuned model (loads with
                   ``torch.load(weights_only=True)``): format_version, state_dict (float
                   tensors holding the quantized weights), quant_params, policy, meta
    metrics.json   the comparison table (see :func:`finetune_run`)

:func:`evaluate_policy` measures any policy (with or without a fine-tuned checkpoint).
"""

from haq_rl.finetune.checkpoint import (
    float_structure,
    load_finetuned,
    load_quantized_model,
    save_finetuned,
)
from haq_rl.finetune.compare import finetune_run
from haq_rl.finetune.config import FinetuneConfig, FinetuneResult
from haq_rl.finetune.evaluate import evaluate_policy
from haq_rl.finetune.policies import largest_uniform_within_budget, policy_costs, uniform_policy
from haq_rl.finetune.qat import finetune_policy

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "evaluate_policy",
    "finetune_policy",
    "finetune_run",
    "float_structure",
    "largest_uniform_within_budget",
    "load_finetuned",
    "load_quantized_model",
    "policy_costs",
    "save_finetuned",
    "uniform_policy",
]
