"""Shared session-scoped fixtures: pretrained models and the default mnist5k splits.

The pretrained models come from :func:`haq_rl.pretrain.get_pretrained` with the default
recipe, i.e. from the user cache (``$HAQ_RL_CACHE``, default ``~/.cache/haq_rl``): the
first test session trains them (about a minute for mobilenetv2 on CPU), later sessions
load them in well under a second. Tests must not modify these objects in place without
restoring them (they are shared by the whole session); deep-copy when in doubt.
"""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on 2 shared cores: one torch thread avoids oversubscription (measured
    several times faster under load) and makes results independent of the core count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def mnist5k_splits():
    """``make_splits(load_dataset("mnist5k"))`` with the default SplitConfig (seed 0)."""
    from haq_rl.data import load_dataset, make_splits

    return make_splits(load_dataset("mnist5k"))


@pytest.fixture(scope="session")
def pretrained_mobilenetv2() -> tuple[nn.Module, dict[str, Any]]:
    """(model, meta): the default small-input MobileNetV2 pretrained on mnist5k, eval mode."""
    from haq_rl.pretrain import PretrainConfig, get_pretrained

    model, meta = get_pretrained(PretrainConfig(model="mobilenetv2"))
    return model.eval(), meta


@pytest.fixture(scope="session")
def pretrained_lenet5() -> tuple[nn.Module, dict[str, Any]]:
    """(model, meta): LeNet-5 pretrained on mnist5k with the default recipe, eval mode."""
    from haq_rl.pretrain import PretrainConfig, get_pretrained

    model, meta = get_pretrained(PretrainConfig(model="lenet5"))
    return model.eval(), meta
