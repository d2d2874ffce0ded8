"""Command line entry point ``haq-rl``.

Thin by design: each sub-command lives in ``haq_rl/commands/<name>.py`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Errors of the library
(:class:`haq_rl.errors.HaqError`) become one-line messages and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from haq_rl import __version__
from haq_rl.errors import BudgetWarning, HaqError
from haq_rl.interrupts import INTERRUPTED, TERMINATED, InterruptWatch, Terminated

# Sub-command modules, in the order `haq-rl --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pretrain",
    "profile",
    "envs",
    "supernet",
    "search",
    "finetune",
    "evaluate",
    "report",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haq-rl",
        description="Hardware-aware mixed-precision quantization with reinforcement learning (HAQ).",
        epilog="Run 'haq-rl COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"haq-rl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"haq_rl.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"haq_rl.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, watch: InterruptWatch | None = None) -> int:
    """Run one command; every failure is one line on stderr: exit 2 for errors (haq-rl's
    own and the file system's), 130 for Ctrl-C and 143 for SIGTERM at any moment, imports
    included. ``watch``: the one ``python -m haq_rl`` installed before its imports."""
    with watch or InterruptWatch() as watch:
        try:
            watch.arm()
            code = _main(argv)
        except KeyboardInterrupt as stop:
            code = _report_interrupt(stop)
        except Exception:
            if not watch.received:
                raise
            # A signal can still interrupt a library outside an import and leave it half
            # done, so that the next use of it fails with another error; the signal
            # recorded says which of the two stopped the command.
            code = _report_interrupt(Terminated() if watch.received[-1] == signal.SIGTERM else None)
    return code


def entry(watch: InterruptWatch | None = None) -> None:
    """The console script and ``python -m haq_rl``: :func:`main`, then exit with its code.

    After a Ctrl-C the exit goes through ``os._exit(130)`` (streams flushed first): CPython
    kills itself with SIGINT at exit once an interrupt has escaped code that a C extension
    ran during an import (Py_RunMain's unhandled-keyboard-interrupt flag), even when the
    interrupt was then caught, which turned exit code 130 into a death by signal.
    """
    code = main(watch=watch)
    if code in (INTERRUPTED, TERMINATED):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _report_interrupt(stop: BaseException | None, command: str | None = None) -> int:
    """One line, and the exit code of the signal that stopped the command."""
    terminated = isinstance(stop, Terminated)
    prefix = f"haq-rl {command}" if command else "haq-rl"
    print(f"{prefix}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return TERMINATED if terminated else INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            _import_model_argument(args)
            return int(args.run(args) or 0)
    except HaqError as error:
        print(f"haq-rl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only folder, a file where a folder should be, a full disk
        print(f"haq-rl {args.command}: error: {_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        return _report_interrupt(stop, args.command)


def _import_model_argument(args: argparse.Namespace) -> None:
    """A ``--model pkg.mod:factory`` typed on this command line is imported from the current
    folder, as ``python -m`` would (the console script does not have it on sys.path); import
    paths read from files never are."""
    model = getattr(args, "model", None)
    if isinstance(model, str) and ":" in model:
        from haq_rl.models.user import import_from_folder

        import_from_folder(model, os.getcwd())


def _os_error(error: OSError) -> str:
    """``cannot write runs/x/config.json: Permission denied``, one line."""
    text = str(error).strip()
    reason = error.strerror or (text.splitlines()[0] if text else type(error).__name__)
    names = [name for name in (error.filename, error.filename2) if name]
    return f"{reason}: {' -> '.join(map(str, names))}" if names else str(reason)


def _one_line_warning(command: str) -> Any:
    """Print the library's budget warnings as one line; leave the others to Python."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
        if issubclass(category, BudgetWarning):
            print(f"haq-rl {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, *rest, **kwargs)
    return show


if __name__ == "__main__":
    sys.exit(main())
