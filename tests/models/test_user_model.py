"""User models by import path ``package.module:factory``."""

from __future__ import annotations

import sys
import textwrap

import pytest

from haq_rl.errors import ConfigError, HaqError
from haq_rl.models import build_model, extract_layer_specs, quantizable_layers

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, num_classes=10, in_channels=1):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))

    def make(num_classes, input_size, **extra):
        model = Tiny(num_classes)
        model.seen = dict(extra, input_size=input_size)
        return model

    def not_a_model(num_classes=10):
        return 42

    NOT_CALLABLE = 3
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "haq_test_user_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "haq_test_user_models"
    sys.modules.pop("haq_test_user_models", None)


def test_class_factory_gets_only_accepted_kwargs(user_module: str) -> None:
    model = build_model(f"{user_module}:Tiny", num_classes=3, in_channels=2, input_size=16)
    assert model.fc.out_features == 3 and model.conv.in_channels == 2
    assert [n for n, _ in quantizable_layers(model)] == ["conv", "fc"]
    specs = extract_layer_specs(model, (2, 16, 16))
    assert [s.kind for s in specs] == ["conv", "linear"]


def test_var_kwargs_factory_gets_everything(user_module: str) -> None:
    model = build_model(f"{user_module}:make", num_classes=4, input_size=20, width_mult=0.5)
    assert model.seen == {"input_size": 20, "in_channels": 1, "width_mult": 0.5}


@pytest.mark.parametrize("path,match", [
    ("haq_no_such_module_xyz:make", "cannot import"),
    ("{mod}:missing", "no attribute"),
    ("{mod}:NOT_CALLABLE", "not callable"),
    ("{mod}:not_a_model", "not a torch nn.Module"),
    (":make", "package.module:factory"),
])
def test_bad_import_paths(user_module: str, path: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_model(path.format(mod=user_module))
    assert isinstance(info.value, HaqError)
    assert "\n" not in str(info.value)
