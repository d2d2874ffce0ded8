"""QuantPolicy: construction, validation errors, JSON round-trip, DataFrame view."""

from __future__ import annotations

import json

import numpy as np
import pytest

from haq_rl.errors import MissingPathError, PolicyError, UnknownNameError
from haq_rl.quant import FORMAT_VERSION, QuantPolicy

NAMES = ["features.0", "features.1.conv", "features.2.conv", "classifier"]


def test_uniform_and_arrays() -> None:
    p = QuantPolicy.uniform(NAMES, 4, 6)
    assert p.layer_names == NAMES
    assert p.w_bits.dtype == np.int64 and p.w_bits.tolist() == [4] * 4
    assert p.a_bits.tolist() == [6] * 4
    assert p["classifier"] == (4, 6)
    q = QuantPolicy.from_arrays(NAMES, np.array([8, 4, 3, 2]), [8, 7, 6, 5])
    assert q["features.2.conv"] == (3, 6)


def test_json_round_trip_with_metadata(tmp_path) -> None:
    p = QuantPolicy.from_arrays(NAMES, [8, 4, 3, 2], [8, 7, 6, 5], model="mobilenetv2")
    path = p.to_json(tmp_path / "sub" / "policy.json", profile="bismo_edge",
                     profile_sha256="ab" * 32, metrics={"accuracy": np.float64(97.5)})
    payload = json.loads(path.read_text())
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["layers"]["features.0"] == {"w_bits": 8, "a_bits": 8}
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind
    back = QuantPolicy.from_json(path)
    assert back == p
    assert back.layer_names == NAMES
    assert back.metadata == {"model": "mobilenetv2", "profile": "bismo_edge",
                             "profile_sha256": "ab" * 32, "metrics": {"accuracy": 97.5}}
    assert QuantPolicy.from_dict(p.to_dict()) == p


def test_to_frame() -> None:
    df = QuantPolicy.from_arrays(NAMES, [8, 4, 3, 2], [8, 7, 6, 5]).to_frame()
    assert list(df.columns) == ["w_bits", "a_bits"]
    assert list(df.index) == NAMES
    assert df.loc["features.2.conv", "w_bits"] == 3


def test_validate_ok_and_reorders() -> None:
    p = QuantPolicy([(n, 4, 4) for n in reversed(NAMES)])
    assert p.validate(NAMES).layer_names == NAMES


def test_unknown_layer_did_you_mean() -> None:
    p = QuantPolicy.uniform(["features.0", "features.1.conv", "features.2.conv", "clasifier"],
                            4, 4)
    with pytest.raises(UnknownNameError, match="did you mean 'classifier'") as err:
        p.validate(NAMES)
    assert "\n" not in str(err.value)


def test_missing_layer() -> None:
    with pytest.raises(PolicyError, match=r"missing \['classifier'\]"):
        QuantPolicy.uniform(NAMES[:3], 4, 4).validate(NAMES)


def test_policy_of_another_model() -> None:
    other = QuantPolicy.uniform(["conv1", "conv2", "fc1", "fc2", "fc3"], 4, 4)
    with pytest.raises(PolicyError, match="does not match this model") as err:
        other.validate(NAMES)
    msg = str(err.value)
    assert "missing layers" in msg and "extra layers" in msg and "'conv1'" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("w,a", [(9, 4), (4, 1), (0, 4), (4, 17)])
def test_bits_out_of_range(w: int, a: int) -> None:
    with pytest.raises(PolicyError, match=r"outside the allowed range \[2, 8\]"):
        QuantPolicy.uniform(NAMES, w, a).validate(NAMES, 2, 8)


@pytest.mark.parametrize("bad", [4.5, "4", True, None])
def test_non_integer_bits(bad: object) -> None:
    with pytest.raises(PolicyError, match="not an integer"):
        QuantPolicy([("a", bad, 4)])


def test_bad_files(tmp_path) -> None:
    with pytest.raises(MissingPathError):
        QuantPolicy.from_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PolicyError, match="not valid JSON"):
        QuantPolicy.from_json(tmp_path / "bad.json")
    (tmp_path / "v2.json").write_text(json.dumps({"format_version": 2, "layers": {}}))
    with pytest.raises(PolicyError, match="format_version"):
        QuantPolicy.from_json(tmp_path / "v2.json")
    with pytest.raises(PolicyError, match="reserved"):
        QuantPolicy.uniform(NAMES, 4, 4).to_dict(layers=1)
