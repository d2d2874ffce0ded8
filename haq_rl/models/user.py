"""Load a user model from an import path ``package.module:factory``."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from haq_rl.errors import ConfigError, DataFormatError
from haq_rl.quant.outputs import logits_of

logger = logging.getLogger(__name__)

#: The import paths named in this process by the user (``--model``, :func:`name_user_model`):
#: the only ones a run directory or a checkpoint may record and still be rebuilt with.
_NAMED: set[str] = set()


def name_user_model(path: str) -> str:
    """Vouch for the user model ``path`` (``--model`` on the command line, or a Python
    call): a run directory or checkpoint that records this import path may now be rebuilt
    with it. Returns ``path``."""
    _NAMED.add(path)
    return path


def model_from_file(name: object, source: str) -> str:
    """A model name read from ``source`` (a run's config.json, a checkpoint's meta).

    Nothing read from a file is imported: a zoo name is returned as it is, an import path
    only when the user named the same one in this process (:func:`name_user_model`);
    otherwise ConfigError, one line saying to name it again with ``--model``. A value that
    is no name at all is a DataFormatError.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataFormatError(f"{source}: model={name!r} is not a model name")
    if is_import_path(name) and name not in _NAMED:
        shown = name if name.isprintable() else repr(name)
        raise ConfigError(f"{source} names the user model {shown!r}: haq-rl never imports code named in a "
                          f"file; if you trust it, name it again with --model {shown}")
    return name


def is_import_path(name: str) -> bool:
    """True for ``module:attr`` names (user models), False for zoo names."""
    return ":" in name


def import_from_folder(path: str, folder: str | Path) -> None:
    """Import the module of the import path ``path`` as ``python -m`` would from ``folder``.

    For import paths typed by the user (command line, Python): ``haq-rl`` as a console
    script does not have the current folder on ``sys.path``, so ``--model mypkg.nets:make``
    was not found next to the user. ``folder`` is put first on ``sys.path`` for this import
    only, then removed again: the module stays in ``sys.modules`` (where
    :func:`load_user_model` finds it), and nothing imported later, nor an import path read
    from a file, is looked up there. Does nothing for zoo names.

    Raises ConfigError naming ``folder`` when the module is not found there nor on sys.path.
    """
    if not is_import_path(path):
        return
    module_name = path.partition(":")[0]
    if not module_name:
        return  # load_user_model's message for a malformed path
    where = str(Path(folder).expanduser().resolve())
    sys.path.insert(0, where)
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.split(".")[0]
        if error.name is not None and (module_name == error.name or module_name.startswith(f"{error.name}.")):
            raise ConfigError(f"cannot import model module {module_name!r} of {path!r}: no {top!r} in the "
                              f"current folder {where} nor on sys.path (run haq-rl from the folder that "
                              f"holds {top}/ or {top}.py, or add that folder to PYTHONPATH)") from None
        # The module exists but imports something that does not.
        raise ConfigError(f"importing model module {module_name!r} of {path!r} failed: "
                          f"{_described(error)}") from None
    except (Exception, SystemExit) as error:  # user code: any error, a SyntaxError, a sys.exit()
        raise ConfigError(f"importing model module {module_name!r} of {path!r} failed: {_described(error)}") from None
    finally:
        # Only this import may look in the folder (a copied run directory must not supply code).
        try:
            sys.path.remove(where)
        except ValueError:  # the user's module removed it itself
            pass


def load_user_model(path: str, **kwargs: Any) -> nn.Module:
    """Import ``module:factory`` and call the factory with the keyword arguments it accepts.

    ``factory`` may be a function or an ``nn.Module`` class; arguments it does not declare
    are dropped (all are passed when it takes ``**kwargs``). Raises ConfigError with the
    import path in the message when anything goes wrong before a model exists.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model import path {path!r} must look like 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        hint = ""
        if error.name is not None and (module_name == error.name or module_name.startswith(f"{error.name}.")):
            # Only an import path typed by the user is looked up in the current folder.
            hint = (f" (not on sys.path: give --model {path} on the command line to load it from the "
                    "current folder, or add its folder to PYTHONPATH)")
        raise ConfigError(f"cannot import model module {module_name!r} of {path!r}: {error}{hint}") from error
    except ImportError as error:
        raise ConfigError(f"cannot import model module {module_name!r} of {path!r}: {error}") from error
    except (Exception, SystemExit) as error:  # user code: any error, a SyntaxError, a sys.exit()
        raise ConfigError(f"importing model module {module_name!r} of {path!r} failed: {_described(error)}") from None
    factory: Any = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (model {path!r})")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(f"model factory {path!r} is not callable")
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass nothing extra
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in kwargs.items() if takes_all or k in params}
    logger.debug("building user model %s with %s", path, accepted)
    try:
        model = factory(**accepted)
    except (Exception, SystemExit) as error:
        raise ConfigError(f"model factory {path!r} failed: {_described(error)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {path!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def check_user_model(model: nn.Module, path: str, num_classes: int, in_channels: int, input_size: int) -> None:
    """ConfigError (one line naming ``path``) unless the user model has parameters and its
    forward maps a batch of two ``in_channels x input_size x input_size`` images to finite
    scores for ``num_classes`` classes: found now, not as a traceback in pretraining or a
    search scoring 10 %."""
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"model {path!r} has no parameters: there is nothing to train or quantize")
    was_training = model.training
    model.eval()  # BatchNorm statistics stay as they are
    try:
        with torch.no_grad():
            first = next(model.parameters())
            sample = torch.zeros(2, in_channels, input_size, input_size, dtype=first.dtype, device=first.device)
            scores = logits_of(model(sample))
    except ConfigError as error:
        raise ConfigError(f"model {path!r}: {error}") from None
    except (Exception, SystemExit) as error:  # user code: any error
        raise ConfigError(f"model {path!r}: its forward failed on a batch of shape "
                          f"{tuple(sample.shape)}: {_described(error)}") from None
    finally:
        model.train(was_training)
    if tuple(scores.shape) != (2, num_classes):
        raise ConfigError(f"model {path!r} returns scores of shape {tuple(scores.shape)} for a batch of 2; "
                          f"expected (2, {num_classes}) for the dataset's {num_classes} classes")
    if not bool(torch.isfinite(scores).all()):
        raise ConfigError(f"model {path!r} returns non-finite scores (NaN or inf) for an all-zero image")


def _described(error: BaseException) -> str:
    """``SyntaxError: invalid syntax (bad.py, line 3)``, ``SystemExit(3)``: one line."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
