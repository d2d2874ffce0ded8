"""The fine-tune recipe: LSQ steps in finetuned.pt, old checkpoints, BN folding, distillation, divergence.

LeNet-5 with linear weights under a latency budget (exportable, seconds per fine-tune).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from haq_rl.errors import DivergenceError
from haq_rl.finetune import (
    FinetuneConfig,
    evaluate_policy,
    finetune_policy,
    finetune_run,
    load_finetuned,
    uniform_policy,
)
from haq_rl.finetune.train import distillation_loss
from haq_rl.quant import quantizable_modules
from haq_rl.quant.fold import fold_batchnorm
from haq_rl.quant.quantizers import weight_scales
from haq_rl.run.layout import FINETUNED_FILE
from haq_rl.task.spec import resolve_spec
from haq_rl.task.task import Task, load_task

from .quant.helpers import calib_batches, tiny_cnn

#: A fast mnist5k env whose spec these tests vary (the default env is Fashion-MNIST).
MNIST5K_ENV_ID = "haq_rl/MobileNetV2Edge-v1"


@pytest.fixture(scope="module")
def task() -> Task:
    spec = resolve_spec(MNIST5K_ENV_ID).replace(id="test/LeNet5Latency-v0", model="lenet5", pin_first_last=False)
    return load_task(spec)


def _finetuned(task: Task, folder: Path, config: FinetuneConfig, bits: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    policy_path = uniform_policy(task, bits).to_json(folder / "policy.json", env_id=MNIST5K_ENV_ID)
    finetune_run(policy_path, config, task=task, progress=False)
    return policy_path


def _as_old_checkpoint(path: Path) -> None:
    """Rewrite a max-abs checkpoint in the format written before LSQ (no zero points, no quantizer)."""
    payload = torch.load(path, weights_only=True)
    for params in payload["quant_params"].values():
        params.pop("a_zero_point")
        params.pop("quantizer")
    for key in ("quantizer", "fold_bn"):
        payload["meta"].pop(key)
    torch.save(payload, path)


def test_finetuned_pt_holds_the_learned_steps(task: Task, tmp_path: Path) -> None:
    policy_path = _finetuned(task, tmp_path, FinetuneConfig(compare=False))
    payload = load_finetuned(tmp_path / FINETUNED_FILE)
    assert payload["meta"]["quantizer"] == "lsq"
    state = payload["state_dict"]
    floats = dict(task.model.named_parameters())
    moved = 0
    for name, params in payload["quant_params"].items():
        steps = torch.tensor(params["w_scale"])
        weight = state[f"{name}.weight"]
        levels = weight / steps.reshape(-1, *([1] * (weight.dim() - 1)))
        # The saved weights lie on the learned grid: integers in [-3, 3] at 3 bits.
        assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 3 + 1e-3
        start = weight_scales(floats[f"{name}.weight"], 3, True)  # the search's max-abs scale
        moved += int(not torch.allclose(steps, start, rtol=1e-3))
        assert isinstance(params["a_zero_point"], int)
    assert moved > 0  # the steps were trained, not recomputed max-abs scales
    evaluated = evaluate_policy(task, None, tmp_path / FINETUNED_FILE)
    assert evaluated["accuracy"] == pytest.approx(payload["meta"]["accuracy"])
    assert policy_path.is_file()


@pytest.mark.parametrize("kind", ["old max-abs", "lsq", "lsq fold_bn"])
def test_evaluate_and_export_read_old_and_new_checkpoints(task: Task, tmp_path: Path, kind: str) -> None:
    pytest.importorskip("onnxruntime")
    from haq_rl.export import export_onnx

    config = {"old max-abs": FinetuneConfig.legacy(compare=False), "lsq": FinetuneConfig(compare=False),
              "lsq fold_bn": FinetuneConfig(compare=False, fold_bn=True)}[kind]
    policy_path = _finetuned(task, tmp_path, config, bits=4)
    checkpoint = tmp_path / FINETUNED_FILE
    if kind == "old max-abs":
        _as_old_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)["meta"]["accuracy"]
    assert evaluate_policy(task, None, checkpoint)["accuracy"] == pytest.approx(saved)
    result = export_onnx(policy_path, task=task, force=True)
    assert result.finetuned and result.agreement >= 0.995
    assert result.onnx_accuracy == pytest.approx(saved, abs=0.2)


def test_fold_bn_is_exact_in_eval_mode() -> None:
    model = tiny_cnn()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    x = calib_batches(1, 8)[0]
    reference = copy.deepcopy(model)
    pairs = fold_batchnorm(model, x)
    assert pairs == [("0", "1")] and isinstance(model[1], torch.nn.Identity)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)
    assert len(quantizable_modules(model)) == 4


def test_distillation_loss_mixes_ce_and_kl() -> None:
    logits = torch.randn(6, 10)
    targets = torch.randint(0, 10, (6,))
    ce = torch.nn.functional.cross_entropy(logits, targets)
    assert distillation_loss(logits, logits, targets, 0.5, 4.0) == pytest.approx(0.5 * float(ce), abs=1e-5)
    assert distillation_loss(logits, torch.randn(6, 10), targets, 1.0, 2.0) > 0


def test_divergence_is_one_line_naming_the_layer_and_writes_nothing(task: Task, tmp_path: Path) -> None:
    config = FinetuneConfig(compare=False, optimizer="sgd", lr=1e6, distill=0.0, warmup=0.0)
    with pytest.raises(DivergenceError, match=r"diverged .*(weights|step size) of layer '[\w.]+'") as info:
        _finetuned(task, tmp_path, config)
    assert "\n" not in str(info.value)
    assert not (tmp_path / FINETUNED_FILE).exists()


def test_a_collapse_to_chance_is_one_line_and_writes_nothing(task: Task, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Finite but broken training (every logit equal after the epoch) stops like a NaN does."""
    def collapse(model: torch.nn.Module, *args: object, **kwargs: object) -> list[float]:
        _, last = quantizable_modules(model)[-1]
        with torch.no_grad():
            last.parametrizations.weight.original.zero_()  # latent weights 0: quantized weights 0
            last.bias.zero_()
        return [1.0]

    monkeypatch.setattr("haq_rl.finetune.qat.train_qat", collapse)
    with pytest.raises(DivergenceError, match=r"collapsed to chance: test accuracy \d+\.\d% -> \d+\.\d%") as info:
        _finetuned(task, tmp_path, FinetuneConfig(compare=False))
    assert "\n" not in str(info.value)
    assert not (tmp_path / FINETUNED_FILE).exists()


def test_recipe_recovers_2_bit_accuracy(task: Task) -> None:
    result = finetune_policy(task, uniform_policy(task, 2), FinetuneConfig(), progress=False)
    assert result.accuracy > result.accuracy_before + 5
