"""Tests for `abcrnn corpus`: the text and JSON reports and error handling."""

import json
from pathlib import Path

import pytest

from abcrnn import corpus
from abcrnn.cli import main

# Three tunes (one repeats tune 1 under another number), a comment line, a field
# that normalisation drops, a chord symbol, a decoration and a stray line.
CORPUS_TEXT = (
    "% tunes for the command test\n"
    'X:1\nT:First\nZ:someone\nM:4/4\nL:1/8\nK:G\n"G"GABc ~d2B2|c2A2 G4|]\n\n'
    "X:2\nT:Second\nM:6/8\nL:1/8\nK:D\nFAd fed|e3 d3|]\n\n"
    "stray line\n\n"
    "X:3\nT:Third\nM:6/8\nL:1/8\nK:D\nAFD DFA|d3 d3|]\n\n"
    'X:4\nT:First\nM:4/4\nL:1/8\nK:G\n"G"GABc ~d2B2|c2A2 G4|]\n'
)


@pytest.fixture
def abc_file(tmp_path: Path) -> Path:
    path = tmp_path / "tunes.abc"
    path.write_text(CORPUS_TEXT)
    return path


def run_json(capsys, *args: str) -> dict:
    """Run `abcrnn corpus ARGS --json` and return the parsed output."""
    assert main(["corpus", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_counts(abc_file, capsys):
    summary = run_json(capsys, str(abc_file), "--valid-fraction", "0.3")
    assert summary["tunes"] == 3
    assert summary["tunes_found"] == 4
    assert summary["train"]["tunes"] == 2
    assert summary["valid"]["tunes"] == 1
    assert summary["sources"][0]["source"] == str(abc_file)
    assert summary["sources"][0]["kind"] == "file"
    assert summary["warnings"] == [
        f"{abc_file}: dropped 1 line(s) outside any tune (no X: line before them), "
        "the first is 'stray line'"
    ]


def test_json_dropped(abc_file, capsys):
    dropped = run_json(capsys, str(abc_file))["dropped"]
    assert dropped["duplicate_tunes"] == 1
    assert dropped["lines_outside_tunes"] == 2  # the comment and the stray line
    assert dropped["field_lines"] == {"Z": 1}
    assert dropped["chords"] == 0


def test_json_characters_match_tunes(abc_file, capsys):
    summary = run_json(capsys, str(abc_file))
    first = 'X:1\nT:First\nM:4/4\nL:1/8\nK:G\n"G"GABc ~d2B2|c2A2 G4|]'
    second = "X:2\nT:Second\nM:6/8\nL:1/8\nK:D\nFAd fed|e3 d3|]"
    third = "X:3\nT:Third\nM:6/8\nL:1/8\nK:D\nAFD DFA|d3 d3|]"
    assert summary["characters"] == len(first) + len(second) + len(third) + 6
    assert (
        summary["train"]["characters"] + summary["valid"]["characters"]
        == (summary["characters"])
    )
    assert summary["meters"] == {"6/8": 2, "4/4": 1}
    assert summary["keys"] == {"D": 2, "G": 1}
    assert summary["lengths"]["max"] == len(first)


def test_json_vocabulary_and_example(abc_file, capsys):
    summary = run_json(capsys, str(abc_file))
    vocabulary = summary["vocabulary"]
    assert vocabulary == sorted(vocabulary)
    assert vocabulary[0] == "\n"
    example = summary["example"]
    assert len(example["text"]) == 20
    assert example["ids"] == [vocabulary.index(char) for char in example["text"]]


def test_json_drop_options(abc_file, capsys):
    summary = run_json(
        capsys, str(abc_file), "--drop-chords", "--drop-decorations", "--drop-titles"
    )
    assert summary["dropped"]["chords"] == 2
    assert summary["dropped"]["decorations"] == 2
    assert summary["dropped"]["titles"] == 4
    assert '"' not in summary["vocabulary"]
    assert "~" not in summary["vocabulary"]


def test_json_no_normalise_no_dedupe(abc_file, capsys):
    summary = run_json(capsys, str(abc_file), "--no-normalise", "--no-dedupe")
    assert summary["tunes"] == 4
    assert summary["dropped"]["field_lines"] == {}
    assert summary["options"]["normalise"] is False
    assert summary["options"]["deduplicate"] is False


def test_seed_changes_split(tmp_path, capsys):
    path = tmp_path / "many.abc"
    path.write_text("\n\n".join(f"X:{i}\nK:G\nG{i}|]" for i in range(1, 31)))
    first = run_json(capsys, str(path), "--seed", "1")
    again = run_json(capsys, str(path), "--seed", "1")
    other = run_json(capsys, str(path), "--seed", "2")
    assert first["valid"] == again["valid"]
    assert first["valid"]["tunes"] == 3
    assert first["example"] == again["example"]
    assert (first["example"], first["valid"]) != (other["example"], other["valid"])


def test_text_report(abc_file, capsys):
    assert main(["corpus", str(abc_file)]) == 0
    out = capsys.readouterr().out
    assert "Tunes: 3 kept of 4 found" in out
    assert "train      2 tunes" in out
    assert "valid      1 tunes" in out
    assert "Vocabulary: " in out
    assert "  0 '\\n'" in out
    assert "Example: 'X:" in out
    assert "Meters (top 10 of 2): 6/8 2, 4/4 1" in out
    assert "Keys (top 10 of 2): D 2, G 1" in out
    assert "duplicate tunes        1" in out
    assert "field lines            1 (Z: 1)" in out
    assert "Warnings (1):" in out


def test_unknown_source_exits_2(tmp_path, capsys):
    missing = str(tmp_path / "missing.abc")
    assert main(["corpus", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abcrnn corpus: error: corpus source")
    assert "oneills1850" in err
    assert "Traceback" not in err


def test_one_tune_cannot_split(tmp_path, capsys):
    path = tmp_path / "one.abc"
    path.write_text("X:1\nK:G\nGABc|]\n")
    assert main(["corpus", str(path)]) == 2
    assert "needs at least 2" in capsys.readouterr().err


def test_bad_valid_fraction_exits_2(abc_file, capsys):
    assert main(["corpus", str(abc_file), "--valid-fraction", "1.5"]) == 2
    assert "valid fraction 1.5 is out of range" in capsys.readouterr().err


def test_default_source_is_oneills(capsys, monkeypatch, tmp_path):
    folder = tmp_path / "corpus" / "oneills1850"
    folder.mkdir(parents=True)
    (folder / "a.abc").write_text("X:1\nK:G\nGABc|]\n\nX:2\nK:D\nDFA|]\n")
    monkeypatch.setattr(corpus, "music21_corpus_root", lambda: tmp_path / "corpus")
    summary = run_json(capsys)
    assert summary["sources"][0]["source"] == "oneills1850"
    assert summary["tunes"] == 2
