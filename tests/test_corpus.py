"""Tests for abcrnn.corpus and abcrnn.abc.normalise: sources, cleaning and splits."""

from pathlib import Path

import pytest

from abcrnn import corpus
from abcrnn.abc.normalise import remove_chord_symbols, remove_decorations
from abcrnn.abc.tunes import header_fields
from abcrnn.corpus import (
    COLLECTIONS,
    CorpusOptions,
    corpus_stats,
    join_tunes,
    load_corpus,
    split_corpus,
)
from abcrnn.errors import ConfigError, CorpusError

# A tune with fields that carry no music (B: N: Z: S:), a %% directive, comment
# lines, a trailing comment, spaces after field colons and trailing spaces.
NOISY_TUNE = (
    "X: 12\n"
    "T: The Noisy Reel\n"
    "B: O'Neill's 12\n"
    "N: collected in Chicago\n"
    "Z: transcribed by someone\n"
    "%%MIDI program 73\n"
    "% a comment line\n"
    "M: C|\n"
    "L: 1/8\n"
    "R: reel\n"
    "Q: 1/2=100\n"
    "K: D % two sharps\n"
    "FAdf edcB|AFAd f2ed|  \n"
    "S: source note in the body\n"
    "\tABcd e2 dc|d2 dc d4|] % end\n"
    "W: words at the end"
)
NOISY_NORMALISED = (
    "X:12\nT:The Noisy Reel\nM:C|\nL:1/8\nR:reel\nQ:1/2=100\nK:D\n"
    "FAdf edcB|AFAd f2ed|\nABcd e2 dc|d2 dc d4|]"
)

# Chord symbols, an annotation, decorations of each kind, an inline key change,
# an old-style +E3A3+ chord, and the old `!` line-break mark at the line end.
DECORATED_TUNE = (
    "X:3\nT:Decorated\nM:6/8\nL:1/8\nK:G\n"
    '"G"~G3 .B.c.d|"^fine"!trill!A3 !1!B2c|!\n'
    "+fermata+G3 +E3A3+ uAvB|[K:D] TF2 HA d2:|!"
)


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to folder/name without newline translation."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def tune(number: int, music: str = "GABc dcBA|G4 G4|]", title: str = "") -> str:
    """Return a small tune in G with the given X: number and music line."""
    title = title or f"Tune {number}"
    return f"X:{number}\nT:{title}\nM:4/4\nL:1/8\nK:G\n{music}"


def kept(text: str) -> str:
    """Return a tune as normalisation keeps it: its X: number becomes 1."""
    return "X:1" + text[text.index("\n") :]


def titles(tunes: list[str]) -> list[str]:
    """Return the T: line of each tune."""
    return [tune.split("\n")[1] for tune in tunes]


# --- sources -----------------------------------------------------------------


def test_load_single_file(tmp_path):
    path = write(tmp_path, "two.abc", tune(1) + "\n\n" + tune(2, "d4 B4|]"))
    result = load_corpus([str(path)])
    assert result.tunes == [tune(1), kept(tune(2, "d4 B4|]"))]
    assert result.report.files_read == 1
    assert result.report.tunes_found == 2
    assert result.report.tunes_kept == 2


def test_load_folder_recursive_sorted(tmp_path):
    write(tmp_path, "b.abc", tune(2, "B8|]"))
    write(tmp_path, "a.abc", tune(1, "A8|]"))
    write(tmp_path, "sub/c.abc", tune(3, "c8|]"))
    write(tmp_path, "notes.txt", tune(4, "d8|]"))  # not an .abc file: skipped
    result = load_corpus([str(tmp_path)])
    assert titles(result.tunes) == ["T:Tune 1", "T:Tune 2", "T:Tune 3"]
    assert result.report.files_read == 3
    assert result.report.sources[0].kind == "folder"
    assert result.report.sources[0].files == 3


def test_load_several_sources_in_order(tmp_path):
    second = write(tmp_path, "second.abc", tune(2, "B8|]"))
    first = write(tmp_path, "first.abc", tune(1, "A8|]"))
    result = load_corpus([str(second), str(first)])
    assert titles(result.tunes) == ["T:Tune 2", "T:Tune 1"]
    assert [s.source for s in result.report.sources] == [str(second), str(first)]
    assert [s.tunes for s in result.report.sources] == [1, 1]


def test_load_accepts_one_string(tmp_path):
    path = write(tmp_path, "one.abc", tune(1))
    assert load_corpus(str(path)).tunes == [tune(1)]


def test_unknown_source_lists_collections(tmp_path):
    missing = str(tmp_path / "nowhere.abc")
    with pytest.raises(CorpusError) as error:
        load_corpus([missing])
    message = str(error.value)
    assert repr(missing) in message
    for name in COLLECTIONS:
        assert name in message


def test_unknown_collection_name():
    with pytest.raises(CorpusError, match="'oneills1851'.*oneills1850"):
        load_corpus(["oneills1851"])


def test_no_sources():
    with pytest.raises(CorpusError, match="no corpus source"):
        load_corpus([])


def test_folder_without_abc_files(tmp_path):
    write(tmp_path, "readme.txt", "nothing")
    with pytest.raises(CorpusError, match="contains no .abc files"):
        load_corpus([str(tmp_path)])


def test_no_tunes_found(tmp_path):
    path = write(tmp_path, "empty.abc", "% only a comment\n\nT:no X line\n")
    with pytest.raises(CorpusError, match="no tunes found"):
        load_corpus([str(path)])


def test_file_over_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_FILE_BYTES", 16)
    path = write(tmp_path, "big.abc", tune(1))
    with pytest.raises(CorpusError, match="over the limit"):
        load_corpus([str(path)])


def test_size_limit_is_64_mib():
    assert corpus.MAX_FILE_BYTES == 64 * 1024 * 1024


def test_latin1_fallback_warns_with_offset(tmp_path):
    text = tune(1, title="Caf\u00e9 Reel")
    path = write(tmp_path, "latin.abc", text, encoding="latin-1")
    result = load_corpus([str(path)])
    assert result.tunes == [text]
    offset = text.encode("latin-1").index(b"\xe9")
    assert result.report.warnings == [
        f"{path}: invalid UTF-8 at byte offset {offset}; read as Latin-1"
    ]


def test_utf8_byte_order_mark_removed(tmp_path):
    path = tmp_path / "bom.abc"
    path.write_bytes(b"\xef\xbb\xbf" + tune(1).encode())
    assert load_corpus([str(path)]).tunes == [tune(1)]


def test_crlf_file_has_no_carriage_returns(tmp_path):
    text = tune(1, "GABc d2B2| % trailing comment") + "\n\nc2A2 G4|]\n\n" + tune(2)
    path = write(tmp_path, "crlf.abc", text.replace("\n", "\r\n"))
    result = load_corpus([str(path)])
    assert result.tunes == [tune(1, "GABc d2B2|"), kept(tune(2))]
    assert all("\r" not in t for t in result.tunes)
    assert result.report.dropped_lines == 1
    assert result.report.fragments == ["c2A2 G4|]"]
    assert len(result.report.warnings) == 1
    assert "'c2A2 G4|]'" in result.report.warnings[0]


def test_comment_fragments_do_not_warn(tmp_path):
    path = write(tmp_path, "header.abc", "%abc-2.1\n%%pagewidth 21cm\n\n" + tune(1))
    result = load_corpus([str(path)])
    assert result.report.dropped_lines == 2
    assert result.report.warnings == []


def test_collection_found_without_importing_music21(tmp_path, monkeypatch):
    write(tmp_path, "corpus/ryansMammoth/b/Reel.abc", tune(2, "B8|]"))
    write(tmp_path, "corpus/ryansMammoth/a/Jig.abc", tune(1, "A8|]"))
    monkeypatch.setattr(corpus, "music21_corpus_root", lambda: tmp_path / "corpus")
    result = load_corpus(["ryansmammoth"])  # names match regardless of case
    assert titles(result.tunes) == ["T:Tune 1", "T:Tune 2"]
    assert result.report.sources[0].kind == "collection"
    assert result.report.sources[0].source == "ryansmammoth"


def test_collection_without_music21(monkeypatch):
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorpusError, match="pip install music21"):
        load_corpus(["oneills1850"])


@pytest.mark.skipif(
    corpus.music21_corpus_root() is None, reason="music21 is not installed"
)
def test_oneills1850_counts():
    # music21's O'Neill's 1850 collection: 39 files, 2009 X: entries with 1838
    # distinct catalogue numbers, since overlapping files hold other
    # transcriptions of the same numbers. One line is a mistyped X: line (":1646").
    result = load_corpus(["oneills1850"])
    report = result.report
    assert report.files_read == 39
    assert report.tunes_found == 2009
    assert report.duplicates_removed == 171
    assert report.tunes_kept == 1838
    assert report.dropped_lines == 1
    assert report.fragments == [":1646"]
    assert result.tunes[0].startswith("X:1\nT:The Enchanted Valley\nM:2/4\nL:1/16\n")


# --- normalisation -----------------------------------------------------------


def load_text(tmp_path: Path, text: str, **options) -> corpus.Corpus:
    """Load one file holding `text` with the given CorpusOptions fields."""
    path = write(tmp_path, "tunes.abc", text)
    return load_corpus([str(path)], CorpusOptions(**options))


def test_normalise_keeps_music_fields(tmp_path):
    result = load_text(tmp_path, NOISY_TUNE)
    assert result.tunes == [kept(NOISY_NORMALISED)]


def test_normalise_counts_what_it_dropped(tmp_path):
    counts = load_text(tmp_path, NOISY_TUNE).report.normalised
    assert dict(counts.field_lines) == {"B": 1, "N": 1, "Z": 1, "S": 1, "W": 1}
    assert counts.directives == 1
    assert counts.comments == 3  # one comment line, two trailing comments
    assert counts.titles == 0


def test_normalise_off_keeps_text(tmp_path):
    result = load_text(tmp_path, NOISY_TUNE, normalise=False)
    assert result.tunes == [NOISY_TUNE]


def test_normalise_keeps_parts_voices_and_inline_fields(tmp_path):
    text = "X:1\nT:Parts\nP:AB\nM:2/4\nL:1/8\nK:G\nV:1\nP:A\nGA [K:D] fe|[M:3/4] d6|]"
    assert load_text(tmp_path, text).tunes == [text]


def test_normalise_field_continuation(tmp_path):
    text = "X:1\nT:Long\n+: Title \nN:a note\n+:more note\nK:G\nG8|]"
    result = load_text(tmp_path, text)
    assert result.tunes == ["X:1\nT:Long\n+:Title\nK:G\nG8|]"]
    assert dict(result.report.normalised.field_lines) == {"N": 1, "+": 1}


def test_normalise_removes_blank_lines_in_header(tmp_path):
    text = "X:1\nT:Gap\n\nM:2/4\nK:G\nG4|]"
    result = load_text(tmp_path, text, normalise=False)
    assert result.tunes == ["X:1\nT:Gap\nM:2/4\nK:G\nG4|]"]
    assert result.report.normalised.blank_lines == 1


def test_drop_titles(tmp_path):
    text = "X:1\nT:Main\nT:Alternative\nK:G\nGABc|\nT:Part Two\ndefg|]"
    result = load_text(tmp_path, text, drop_titles=True)
    assert result.tunes == ["X:1\nK:G\nGABc|\ndefg|]"]
    assert result.report.normalised.titles == 3


def test_drop_chords(tmp_path):
    result = load_text(tmp_path, DECORATED_TUNE, drop_chords=True)
    body = result.tunes[0].split("K:G\n")[1]
    assert body == (
        "~G3 .B.c.d|!trill!A3 !1!B2c|!\n+fermata+G3 +E3A3+ uAvB|[K:D] TF2 HA d2:|!"
    )
    assert result.report.normalised.chords == 2


def test_drop_decorations(tmp_path):
    result = load_text(tmp_path, DECORATED_TUNE, drop_decorations=True)
    body = result.tunes[0].split("K:G\n")[1]
    assert body == '"G"G3 Bcd|"^fine"A3 B2c|!\nG3 +E3A3+ AB|[K:D] F2 A d2:|!'
    assert result.report.normalised.decorations == 11


def test_drop_options_work_without_normalise(tmp_path):
    result = load_text(
        tmp_path, DECORATED_TUNE + " % end", normalise=False, drop_chords=True
    )
    assert result.tunes[0].endswith("HA d2:|! % end")
    assert '"' not in result.tunes[0]


@pytest.mark.parametrize(
    ("line", "expected", "count"),
    [
        ("~G3 .B.c.d|", "G3 Bcd|", 4),
        ("!trill!A3 !1!B2|", "A3 B2|", 2),  # a fingering is a decoration too
        ("uAvB TF2 HA Mc Od Pe Sf Lg|", "AB F2 A c d e f g|", 9),
        ("GABc|!", "GABc|!", 0),  # the old line-break mark stays
        ("GABc|! defg|!", "GABc|! defg|!", 0),
        ("+E3A3+ +fermata+G2|", "+E3A3+ G2|", 1),  # +E3A3+ is a chord
        ("[K:Dmix] [M:6/8] [P:A] [V:1] G|", "[K:Dmix] [M:6/8] [P:A] [V:1] G|", 0),
        ('"Tune A" "^Mad" G|', '"Tune A" "^Mad" G|', 0),
        ("Hz4 .[CEG]2 ~{g}A|", "z4 [CEG]2 {g}A|", 3),
        ("G2 % Try. Hold the note", "G2 % Try. Hold the note", 0),
        ("A.B c.d|.|", "AB cd|.|", 2),  # a dotted bar line stays
    ],
)
def test_remove_decorations(line, expected, count):
    assert remove_decorations(line) == (expected, count)


def test_remove_chord_symbols():
    assert remove_chord_symbols('"G"GABc "D7"d2 "^rit."c|') == ("GABc d2 c|", 3)


# --- deduplication -----------------------------------------------------------


def test_deduplicate_ignores_x_number(tmp_path):
    text = "\n\n".join([tune(1), tune(2), tune(7, title="Tune 1"), tune(1)])
    result = load_text(tmp_path, text)
    assert result.tunes == [tune(1), kept(tune(2))]
    assert result.report.duplicates_removed == 2
    assert result.report.tunes_found == 4


def test_deduplicate_after_normalisation(tmp_path):
    # The copies differ only in fields and comments that normalisation drops.
    copy = tune(5, title="Tune 1").replace("K:G", "Z:another transcriber\nK:G % key")
    result = load_text(tmp_path, tune(1) + "\n\n" + copy)
    assert result.tunes == [tune(1)]


def test_deduplicate_off(tmp_path):
    text = "\n\n".join([tune(1), tune(1)])
    result = load_text(tmp_path, text, deduplicate=False)
    assert result.tunes == [tune(1), tune(1)]
    assert result.report.duplicates_removed == 0


def test_deduplicate_across_files(tmp_path):
    first = write(tmp_path, "a.abc", tune(1))
    second = write(tmp_path, "b.abc", tune(9, title="Tune 1"))
    result = load_corpus([str(first), str(second)])
    assert result.tunes == [tune(1)]
    assert result.report.duplicates_removed == 1


def test_tunes_without_music_dropped(tmp_path):
    text = "X:1\nT:Header Only\nM:4/4\nK:G\n\n" + tune(2)
    result = load_text(tmp_path, text)
    assert result.tunes == [kept(tune(2))]
    assert result.report.tunes_without_music == 1


def test_report_dropped_keys(tmp_path):
    dropped = load_text(tmp_path, NOISY_TUNE).report.dropped()
    assert dropped == {
        "duplicate_tunes": 0,
        "tunes_without_music": 0,
        "lines_outside_tunes": 0,
        "fragments": 0,
        "field_lines": {"B": 1, "N": 1, "Z": 1, "S": 1, "W": 1},
        "directives": 1,
        "comments": 3,
        "blank_lines": 0,
        "titles": 0,
        "chords": 0,
        "decorations": 0,
    }


# --- split, join and statistics ----------------------------------------------

TUNES = [tune(i, f"G{i}|]") for i in range(1, 21)]


def test_split_corpus_sizes_and_order():
    train, valid = split_corpus(TUNES, valid_fraction=0.1, seed=0)
    assert len(train) == 18
    assert len(valid) == 2
    assert sorted(train + valid) == sorted(TUNES)
    assert train == [t for t in TUNES if t in train]  # corpus order kept
    assert valid == [t for t in TUNES if t in valid]


def test_split_corpus_deterministic():
    assert split_corpus(TUNES, 0.25, seed=3) == split_corpus(TUNES, 0.25, seed=3)


def test_split_corpus_seed_changes_split():
    valid_sets = {tuple(split_corpus(TUNES, 0.25, seed=seed)[1]) for seed in range(5)}
    assert len(valid_sets) > 1


def test_split_corpus_at_least_one_valid():
    train, valid = split_corpus(TUNES[:2], valid_fraction=0.01)
    assert len(train) == 1
    assert len(valid) == 1


def test_split_corpus_keeps_one_train_tune():
    train, valid = split_corpus(TUNES[:3], valid_fraction=0.9)
    assert len(train) == 1
    assert len(valid) == 2


def test_split_corpus_needs_two_tunes():
    with pytest.raises(CorpusError, match="has 1 tune"):
        split_corpus(TUNES[:1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_corpus_fraction_out_of_range(fraction):
    with pytest.raises(ConfigError, match="valid fraction"):
        split_corpus(TUNES, valid_fraction=fraction)


def test_join_tunes():
    assert join_tunes(["X:1\nK:G\nG|]", "X:2\nK:D\nD|]"]) == (
        "X:1\nK:G\nG|]\n\nX:2\nK:D\nD|]\n\n"
    )


def test_corpus_stats():
    tunes = [
        "X:1\nM:6/8\nK:G\nGAB|]",  # 19 characters
        "X:2\nM:6/8\nK:D\nFAd fed|]",  # 23
        "X:3\nM:C|\nK:G\nGABc dBAG|]",  # 24
        "X:4\nK:Ador\nA8|]",  # 15, no M: field
    ]
    stats = corpus_stats(tunes)
    assert stats == {
        "tunes": 4,
        "characters": 19 + 23 + 24 + 15 + 4 * 2,
        "meters": {"6/8": 2, "C|": 1, "(none)": 1},
        "keys": {"G": 2, "D": 1, "Ador": 1},
        "lengths": {"min": 15, "median": 21.0, "mean": 20.2, "max": 24},
    }


def test_corpus_stats_empty():
    stats = corpus_stats([])
    assert stats["tunes"] == 0
    assert stats["characters"] == 0


def test_oneills_catalogue_numbers_deduplicated():
    # O'Neill's X: numbers are catalogue numbers; music21 ships overlapping files
    # with other transcriptions of the same numbers, so each number is kept once.
    corpus = load_corpus(["oneills1850"], CorpusOptions(normalise=False))
    numbers = [header_fields(tune)["X"] for tune in corpus.tunes]
    assert len(numbers) == len(set(numbers))
    assert corpus.report.duplicates_removed == 171
