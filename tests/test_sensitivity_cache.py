"""The layer-sensitivity cache: one computation for two searches, and a bar while it runs."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from haq_rl.cache import cache_lock
from haq_rl.search import hawq
from haq_rl.search.setup import SearchSetup


@pytest.fixture()
def lenet_setup(tmp_path, monkeypatch) -> SearchSetup:
    from haq_rl.env.factory import env_for_task
    from haq_rl.task.task import load_task

    monkeypatch.setenv("HAQ_RL_CACHE", str(tmp_path / "cache"))
    task = load_task("haq_rl/LeNet5Size-v1")
    env = env_for_task(task)
    return SearchSetup(task=task, scorer=env.scorer, env=env)


def _bits(setup: SearchSetup) -> tuple[int, ...]:
    return tuple(range(setup.scorer.min_bits, setup.scorer.max_bits + 1))


def test_second_computation_waits_names_the_holder_then_goes_on(lenet_setup, caplog):
    """While another holder computes the entry, measure_sensitivity waits (saying for whom)
    instead of computing it a second time at the same time."""
    path = hawq._cache_path(lenet_setup, 2, 64, 0, _bits(lenet_setup))
    done: dict[str, object] = {}
    caplog.set_level(logging.WARNING, logger="haq_rl.cache")
    with cache_lock(path.with_name(path.name + ".lock"), "computing it in the test"):
        worker = threading.Thread(target=lambda: done.update(
            result=hawq.measure_sensitivity(lenet_setup, probes=2, images=64, seed=0)))
        worker.start()
        deadline = time.monotonic() + 60
        while "waiting for" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "result" not in done  # it waits: nothing computed while the lock is held
    worker.join(timeout=120)
    assert f"waiting for PID {os.getpid()}, which is computing it in the test" in caplog.text
    assert "released; going on" in caplog.text
    assert path.is_file() and done["result"].layer_names == list(lenet_setup.scorer.layer_names)


def test_sensitivity_phase_shows_what_it_computes(lenet_setup, capsys):
    hawq.measure_sensitivity(lenet_setup, probes=2, images=64, seed=0, progress=True)
    layers = len(lenet_setup.scorer.layer_names)
    assert f"computing layer sensitivities (2 probes x {layers} layers)" in capsys.readouterr().err
    # The second call reads the cache: no bar, same numbers.
    hawq.measure_sensitivity(lenet_setup, probes=2, images=64, seed=0, progress=True)
    assert "computing layer sensitivities" not in capsys.readouterr().err
