import csv
from pathlib import Path

import pytest

from haq_rl.commands.profile import CSV_COLUMNS, parse_bits
from haq_rl.errors import ConfigError

HAQ_TABLE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / \
    "haq_mobilenetv2_cloud_latency_table.npy"


def test_parse_bits():
    assert parse_bits("2,4,8", "--w-bits") == [2, 4, 8]
    assert parse_bits("2-4,8", "--w-bits") == [2, 3, 4, 8]
    with pytest.raises(ConfigError, match="1..8"):
        parse_bits("0,9", "--w-bits")
    with pytest.raises(ConfigError, match="integers"):
        parse_bits("a", "--w-bits")


def _main(argv):
    cli = pytest.importorskip("haq_rl.cli")
    pytest.importorskip("torch")
    return cli.main(argv)


def test_bad_bits_exit_2(capsys):
    code = _main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", "bitfusion",
                  "--w-bits", "0,9"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--w-bits" in err


def test_unknown_profile_exit_2(capsys):
    code = _main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", "bismo-clod"])
    assert code == 2
    assert "did you mean 'bismo-cloud'" in capsys.readouterr().err


def test_csv_small_model(tmp_path, capsys):
    out = tmp_path / "sub" / "costs.csv"
    code = _main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", "bismo-edge",
                  "--w-bits", "2,8", "--a-bits", "4", "--csv", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "total" in text and "bound" in text
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {(r["w_bits"], r["a_bits"]) for r in rows} == {("2", "4"), ("8", "4")}
    assert all(r["energy_uj"] for r in rows)
    assert not list(out.parent.glob("*.tmp"))


def test_bops_csv_has_empty_energy(tmp_path):
    out = tmp_path / "bops.csv"
    assert _main(["profile", "--model", "lenet5", "--input-size", "28", "--hw", "bops",
                  "--w-bits", "4", "--a-bits", "4", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows and all(r["energy_uj"] == "" and r["cycles"] == "" for r in rows)


@pytest.mark.skipif(not HAQ_TABLE.is_file(), reason=f"HAQ's published table not found at {HAQ_TABLE}")
def test_compare_table_acceptance(capsys):
    code = _main(["profile", "--model", "mobilenetv2", "--input-size", "224", "--batch", "16",
                  "--hw", "bismo-cloud", "--compare-table", str(HAQ_TABLE)])
    assert code == 0
    text = capsys.readouterr().out
    median = float(text.split("median ")[1].split("%")[0])
    spearman = float(text.split("seed 0): ")[1].split()[0])
    assert median <= 5.0 and spearman >= 0.99
