"""The float models that ship inside the package: every machine starts from the same one.

These tests need no training: an empty ``$HAQ_RL_CACHE`` must give the shipped model,
bit for bit, whatever the thread count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from haq_rl.errors import CheckpointError
from haq_rl.pretrain import (
    PretrainConfig,
    cached_checkpoint_path,
    get_pretrained,
    shipped_checkpoint_for,
)
from haq_rl.shipped_models import SHIPPED_DIR, shipped_checkpoint, shipped_hashes
from haq_rl.task.spec import resolve_spec, shipped_specs

#: Every embedded env's float model ships (the envs' pretrain configs, as load_task builds them).
EMBEDDED_MODELS = ("mobilenetv2", "lenet5", "resnet8", "resnet18")


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HAQ_RL_CACHE", str(cache))
    return cache


def test_every_embedded_env_has_a_shipped_float_model():
    shipped = set(shipped_hashes())
    for env_id in shipped_specs():
        spec = resolve_spec(env_id)
        if spec.weights is not None:
            continue
        config = PretrainConfig(model=spec.model, dataset=spec.dataset, width_mult=spec.width_mult,
                                split_seed=spec.split_seed)
        assert config.short_hash() in shipped, f"{env_id}: its float model {spec.model} is not shipped"
    assert {PretrainConfig(model=m).short_hash() for m in EMBEDDED_MODELS} <= shipped


def test_empty_cache_loads_the_shipped_model_and_trains_nothing(empty_cache):
    model, meta = get_pretrained(PretrainConfig(model="lenet5"))
    assert meta["source"] == "shipped"
    assert not cached_checkpoint_path(PretrainConfig(model="lenet5")).exists()  # nothing trained
    manifest = json.loads((SHIPPED_DIR / "manifest.json").read_text())["models"]
    assert meta["weights_sha256"] == manifest[PretrainConfig(model="lenet5").short_hash()]["weights_sha256"]
    assert next(model.parameters()).dtype.is_floating_point and next(model.parameters()).dtype.itemsize == 4


def test_shipped_accuracy_is_what_the_weights_score(empty_cache, mnist5k_splits):
    """The meta's accuracy was measured on the fp16-rounded weights that ship."""
    from haq_rl.data import make_loader
    from haq_rl.training import evaluate_accuracy

    model, meta = get_pretrained(PretrainConfig(model="mobilenetv2"))
    accuracy = evaluate_accuracy(model, make_loader(mnist5k_splits.test, batch_size=256))
    # 1,000 test images: 0.1 point is one image, which float rounding of a borderline logit
    # on another CPU may flip; more than that would mean other weights.
    assert abs(accuracy - meta["test_accuracy"]) <= 0.1 + 1e-9


_PROBE = ("import json; from haq_rl.pretrain import PretrainConfig, get_pretrained; "
          "m, meta = get_pretrained(PretrainConfig()); "
          "print(json.dumps([meta['source'], meta['weights_sha256'], meta['test_accuracy']]))")


def test_default_float_model_is_identical_with_1_and_2_threads(tmp_path):
    """Two empty caches, OMP_NUM_THREADS 1 and 2 (a cheap stand-in for another CPU): the
    same weights (when each machine trained its own, the test accuracy differed: 96.1 vs
    95.2 %). test_shipped_accuracy_is_what_the_weights_score checks what they score."""
    results = []
    for threads in ("1", "2"):
        env = {**os.environ, "HAQ_RL_CACHE": str(tmp_path / f"cache{threads}"), "OMP_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                             timeout=300, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0][0] == results[1][0] == "shipped"
    assert results[0][1:] == results[1][1:]


def test_a_damaged_shipped_file_is_refused(tmp_path):
    folder = tmp_path / "pretrained"
    shutil.copytree(SHIPPED_DIR, folder, ignore=shutil.ignore_patterns("resnet18*", "mobilenetv2*"))
    config_hash = PretrainConfig(model="lenet5").short_hash()
    assert shipped_checkpoint(config_hash, folder) is not None
    path = next(folder.glob("lenet5-*.pt"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        shipped_checkpoint(config_hash, folder)


def test_other_configs_are_not_shipped():
    assert shipped_checkpoint_for(PretrainConfig(model="lenet5", epochs=1)) is None
    assert shipped_checkpoint_for(PretrainConfig(model="lenet5", dataset="digits")) is None


def test_a_forced_local_model_wins_over_the_shipped_one(empty_cache):
    """The cache replaces a shipped model only when `pretrain --force` wrote it; an older
    haq-rl's own training in the cache does not (every machine keeps the shipped one)."""
    from haq_rl.checkpoint_io import atomic_torch_save, load_torch_file

    config = PretrainConfig(model="lenet5")
    payload = load_torch_file(shipped_checkpoint_for(config))
    payload["state_dict"] = {k: v.float() * 0.5 if v.is_floating_point() else v
                             for k, v in payload["state_dict"].items()}
    for forced, source in ((False, "shipped"), (True, "cache")):
        payload["meta"] = {**payload["meta"], "replaces_shipped": forced}
        atomic_torch_save(payload, cached_checkpoint_path(config))
        assert get_pretrained(config)[1]["source"] == source


def test_pretrain_cli_reports_a_shipped_model(empty_cache, capsys):
    from haq_rl.cli import main

    assert main(["pretrain", "--model", "lenet5", "--no-progress"]) == 0
    assert "ships with haq-rl" in capsys.readouterr().out
    assert not cached_checkpoint_path(PretrainConfig(model="lenet5")).exists()


@pytest.mark.slow  # trains LeNet-5 for its 15 epochs (about 20 s)
def test_pretrain_cli_reports_a_shipped_model_and_force_retrains(empty_cache, capsys):
    from haq_rl.cli import main

    assert main(["pretrain", "--model", "lenet5", "--no-progress"]) == 0
    assert "ships with haq-rl" in capsys.readouterr().out
    config = PretrainConfig(model="lenet5")
    assert not cached_checkpoint_path(config).exists()
    assert main(["pretrain", "--model", "lenet5", "--force", "--no-progress"]) == 0
    assert cached_checkpoint_path(config).exists()
    _, meta = get_pretrained(config)
    assert meta["source"] == "cache" and meta["replaces_shipped"] is True


def test_config_json_names_the_float_model_by_its_digest(empty_cache, tmp_path):
    """Two runs can be told apart by their float model: config.json records its source and
    the SHA-256 of its weights, the manifest's for a shipped model."""
    from haq_rl.cli import main

    out = tmp_path / "run"
    assert main(["search", "haq_rl/LeNet5Size-v1", "--method", "random", "--episodes", "1", "--out", str(out),
                 "--no-progress"]) == 0
    record = json.loads((out / "config.json").read_text())["float_model"]
    manifest = json.loads((SHIPPED_DIR / "manifest.json").read_text())["models"]
    assert record["source"] == "shipped"
    assert record["weights_sha256"] == manifest[PretrainConfig(model="lenet5").short_hash()]["weights_sha256"]


def test_a_shipped_cache_entry_is_used_only_when_its_checksum_holds(tmp_path):
    """Shipped cache entries (the default env's sensitivities) are verified; a damaged or
    unlisted one is not used (it is then computed as if none shipped)."""
    from haq_rl.maintain.ship import ship_entry
    from haq_rl.shipped_models import shipped_entry

    folder = tmp_path / "pretrained"
    cached = tmp_path / "mobilenetv2-0123456789abcdef.npz"
    cached.write_bytes(b"sensitivities")
    entry = ship_entry(cached, folder)
    assert entry["file"] == cached.name and shipped_entry(cached.name, folder) == folder / cached.name
    assert shipped_entry("other.npz", folder) is None and shipped_entry("../x.npz", folder) is None
    (folder / cached.name).write_bytes(b"tampered")
    assert shipped_entry(cached.name, folder) is None


def test_the_default_envs_sensitivities_ship():
    """make run's search (guided, seed 0) finds the Hessian sensitivities of the default env shipped."""
    manifest = json.loads((SHIPPED_DIR / "manifest.json").read_text())
    entries = manifest.get("entries", {})
    assert any(name.startswith("mobilenetv2-") and name.endswith(".npz") for name in entries)
    from haq_rl.shipped_models import shipped_entry

    assert all(shipped_entry(name) is not None for name in entries)


def test_the_maintainers_ship_script_runs_as_a_module():
    """``python -m haq_rl.maintain.ship`` (the shipped files' refresh) starts and says its usage."""
    done = subprocess.run([sys.executable, "-m", "haq_rl.maintain.ship"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: python -m haq_rl.maintain.ship" in done.stderr
