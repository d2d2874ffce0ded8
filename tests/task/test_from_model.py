"""Task.from_model: any nn.Module with its own data and metric, through env, search, fine-tune, report."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from haq_rl.env.factory import make_env
from haq_rl.errors import ConfigError
from haq_rl.finetune import (
    FinetuneConfig,
    evaluate_policy,
    finetune_policy,
    finetune_run,
    uniform_policy,
)
from haq_rl.report import load_run, policy_table
from haq_rl.search import SearchConfig, run_search
from haq_rl.task import Task, load_task
from haq_rl.training import METRICS


@dataclass
class Output:
    """A Hugging Face style output: the scores are in ``.logits``."""

    logits: torch.Tensor


class DictNet(nn.Module):
    """Returns its scores three ways depending on ``style``."""

    def __init__(self, style: str = "object") -> None:
        super().__init__()
        self.style = style
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                      nn.Flatten(), nn.Linear(128, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor):
        logits = self.head(self.features(x))
        if self.style == "tuple":
            return logits, None
        if self.style == "dict":
            return {"logits": logits, "aux": logits.detach()}
        return Output(logits)


class Digits(Dataset):
    """scikit-learn's 8x8 digits as a plain map-style Dataset of (image, label)."""

    def __init__(self, part: slice) -> None:
        from sklearn.datasets import load_digits

        data = load_digits()
        self.images = torch.tensor(data.images[part], dtype=torch.float32).unsqueeze(1) / 16.0
        self.labels = torch.tensor(data.target[part], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Digits, DataLoader, Digits]:
    torch.manual_seed(0)
    train, reward, test = Digits(slice(0, 1200)), Digits(slice(1200, 1500)), Digits(slice(1500, None))
    model = DictNet("object")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(15):
        for images, labels in DataLoader(train, batch_size=64, shuffle=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images).logits, labels).backward()
            optimizer.step()
    return model.eval(), train, DataLoader(reward, batch_size=100), test


def _task(trained, **settings) -> Task:
    model, train, reward, test = trained
    return Task.from_model(model, search_train=train, reward_val=reward, test=test, name="Digits",
                           hardware="bismo-edge", budget=0.6, pin_first_last=False, **settings)


def test_from_model_env_search_finetune_evaluate_report(trained, tmp_path):
    task = _task(trained)
    assert task.spec.id == "python/Digits" and len(task.layers) == 3 and task.splits.num_classes == 10
    env = make_env(task)
    observation, _ = env.reset(seed=0)
    assert observation.shape == env.observation_space.shape
    result = run_search(SearchConfig(method="hawq", out=str(tmp_path / "run"), progress=False), task=task)
    assert result.best_cost_ratio <= 0.6 + 1e-9 and result.best_accuracy > 50.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["float_accuracy"] == pytest.approx(env.scorer.evaluator.float_accuracy)
    metrics = finetune_run(tmp_path / "run", FinetuneConfig(compare=False), task=task, progress=False)
    searched = next(row for row in metrics["rows"] if row["name"] == "searched")
    assert searched["accuracy"] > 50.0 and searched["within_budget"]
    assert evaluate_policy(task, uniform_policy(task, 8))["accuracy"] > 80.0
    table = policy_table(load_run(tmp_path / "run"))  # the report needs no model: config.json's layers
    assert list(table["layer"]) == task.layer_names
    with pytest.raises(ConfigError, match="built from Python objects"):
        load_task(task.spec)  # a CLI finetune of this run would say so in one line


@pytest.mark.parametrize("style", ["tuple", "dict", "object"])
def test_outputs_tuple_dict_and_logits_attribute(trained, style):
    model = trained[0]
    model.style = style
    try:
        task = _task(trained)
        scores = make_env(task).scorer.evaluator.scores(np.full(3, 8), np.full(3, 8))
        assert scores.accuracy > 80.0 and scores.kl < 0.05
    finally:
        model.style = "object"


def test_metric_top5_and_negative_cross_entropy(trained):
    top1 = make_env(_task(trained)).scorer.evaluator.float_accuracy
    top5 = make_env(_task(trained, metric=METRICS["top5"])).scorer.evaluator.float_accuracy
    nce = make_env(_task(trained, metric=METRICS["neg_cross_entropy"])).scorer.evaluator.float_accuracy
    assert top1 <= top5 <= 100.0 and top5 > 95.0
    assert -2.0 < nce < 0.0
    custom = _task(trained, metric=lambda outputs, targets: float((outputs.argmax(1) == targets).sum()))
    result = finetune_policy(custom, uniform_policy(custom, 8), FinetuneConfig(), progress=False)
    assert result.accuracy == pytest.approx(float(round(result.accuracy)))  # a count of correct images
    assert result.accuracy > 200  # of the 297 test images


def test_bad_splits_are_clear_errors(trained):
    model, train, reward, test = trained
    with pytest.raises(ConfigError, match="reward_val must be a torch Dataset or DataLoader"):
        Task.from_model(model, search_train=train, reward_val=[1, 2, 3], test=test)
