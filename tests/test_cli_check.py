"""Tests for `abcrnn check`: output lines, JSON report and exit status."""

from __future__ import annotations

import json

from abcrnn.cli import main

# Tune 1 is valid; tune 2 has a short second bar (7 eighths in 4/4) and no
# final bar line, which is only a warning.
TWO_TUNES = """X:1
T:Good
M:4/4
L:1/8
K:G
GABc dBAG|GABc dBAG|]

X:2
T:Short Bar
M:4/4
L:1/8
K:G
GABc dBAG|GABc dBA|GABc dBAG
"""

VALID = "X:1\nT:Fine\nM:6/8\nL:1/8\nK:D\nFAd fed|e3 d3|]\n"


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_reports_faults_and_summary(tmp_path, capsys):
    path = write(tmp_path, "tunes.abc", TWO_TUNES)
    status = main(["check", path])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    assert lines == [
        f"{path}:13:11: error: tune 2 (Short Bar), bar 2: "
        "bar is too short: 7/8 where the meter needs 8/8 [bar-length]",
        f"{path}:13:28: warning: tune 2 (Short Bar), bar 3: "
        "the music does not end with a bar line [missing-final-bar]",
        "2 tunes: 1 valid, 1 invalid (tunes with each error: bar-length 1)",
    ]


def test_check_errors_only(tmp_path, capsys):
    path = write(tmp_path, "tunes.abc", TWO_TUNES)
    assert main(["check", "--errors-only", path]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "[bar-length]" in lines[0]


def test_check_valid_file_exits_zero(tmp_path, capsys):
    path = write(tmp_path, "good.abc", VALID)
    assert main(["check", path]) == 0
    assert capsys.readouterr().out == "1 tunes: 1 valid, 0 invalid\n"


def test_check_json(tmp_path, capsys):
    path = write(tmp_path, "tunes.abc", TWO_TUNES)
    good = write(tmp_path, "good.abc", VALID)
    assert main(["check", "--json", path, good]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [tune["file"] for tune in report["tunes"]] == [path, path, good]
    assert [tune["index"] for tune in report["tunes"]] == [1, 2, 1]
    assert [tune["valid"] for tune in report["tunes"]] == [True, False, True]
    assert report["tunes"][1]["title"] == "Short Bar"
    assert report["tunes"][1]["diagnostics"][0] == {
        "severity": "error",
        "code": "bar-length",
        "message": "bar is too short: 7/8 where the meter needs 8/8",
        "line": 13,
        "column": 11,
        "bar": 2,
    }
    assert report["summary"] == {
        "tunes": 3,
        "valid": 2,
        "invalid": 1,
        "error_tunes": {"bar-length": 1},
        "warnings": 1,
    }


def test_check_missing_file_exits_two(tmp_path, capsys):
    missing = tmp_path / "absent.abc"
    assert main(["check", str(missing)]) == 2
    error = capsys.readouterr().err
    assert "not found" in error
    assert str(missing) in error


def test_check_reads_standard_input(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(VALID))
    assert main(["check", "-"]) == 0
    assert capsys.readouterr().out.endswith("1 valid, 0 invalid\n")
