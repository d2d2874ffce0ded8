from pathlib import Path

import pytest

from haq_rl.errors import ConfigError, MissingPathError, UnknownNameError
from haq_rl.hardware import HardwareProfile, load_profile, profile_names

SHIPPED = {"bismo-edge": "bismo", "bismo-cloud": "bismo", "bitfusion": "bitfusion",
           "bops": "bops", "size": "size"}


def test_shipped_profiles_load():
    assert set(SHIPPED) <= set(profile_names())
    for name, model in SHIPPED.items():
        profile = load_profile(name)
        assert isinstance(profile, HardwareProfile)
        assert profile.name == name and profile.cost_model == model
        assert len(profile.sha256) == 64 and profile.description
    assert load_profile("bitfusion").min_bits == 2
    assert load_profile("bismo-edge").min_bits == 1
    assert load_profile("bismo-cloud").batch == 16 and load_profile("bismo-edge").batch == 1


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'bismo-cloud'"):
        load_profile("bismo-clod")


def test_missing_path():
    with pytest.raises(MissingPathError):
        load_profile("/nonexistent/hw.yaml")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


BASE = """name: mine
description: test
model: bismo
min_bits: 1
max_bits: 8
params:
  dm: 8
  dn: 8
  dk: 64
  clock_mhz: 100
  mem_bits_per_cycle: 64
  e_binop_pj: 0.01
  e_sram_read_pj_per_bit: 0.1
  e_sram_write_pj_per_bit: 0.1
  e_dram_pj_per_bit: 20
"""


def test_user_yaml_and_hash(tmp_path):
    profile = load_profile(_write(tmp_path, BASE))
    assert profile.name == "mine" and profile.params["dk"] == 64
    assert load_profile(str(tmp_path / "mine.yaml")).sha256 == profile.sha256


@pytest.mark.parametrize("old, new, match", [
    ("  dk: 64", "  dkk: 64", "did you mean 'dk'"),
    ("min_bits: 1", "min_bit: 1", "did you mean 'min_bits'"),
    ("  dm: 8\n", "", "missing field 'dm'"),
    ("  dm: 8", "  dm: 0", "must be positive"),
    ("  dm: 8", "  dm: -3", "must be positive"),
    ("  dm: 8", "  dm: 2.5", "integer"),
    ("model: bismo", "model: bismoo", "did you mean 'bismo'"),
    ("max_bits: 8", "max_bits: 0", "positive"),
    ("description: test\n", "", "missing field 'description'"),
])
def test_validation_errors(tmp_path, old, new, match):
    with pytest.raises(ConfigError, match=match):
        load_profile(_write(tmp_path, BASE.replace(old, new)))


def test_bitfusion_min_bits(tmp_path):
    text = load_profile("bitfusion").path.read_text().replace("min_bits: 2", "min_bits: 1")
    with pytest.raises(ConfigError, match="2..8"):
        load_profile(_write(tmp_path, text))


def test_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError):
        load_profile(_write(tmp_path, "- a\n- b\n"))
