"""Tests for abcrnn.abc.checker: which tunes are valid, and where their faults are."""

from __future__ import annotations

import pytest

from abcrnn.abc.checker import check_text, check_tune, summarise


def tune(body: str, meter: str = "4/4", unit: str = "1/8", key: str = "G") -> str:
    """Return a tune text with a standard header around `body`."""
    return f"X:1\nT:Test\nM:{meter}\nL:{unit}\nK:{key}\n{body}"


def error_codes(text: str) -> list[str]:
    return [item.code for item in check_tune(text).errors]


def bar_errors(text: str) -> list[int]:
    """Return the bar numbers of the bar-length errors."""
    return [item.bar for item in check_tune(text).errors if item.code == "bar-length"]


# A reel with a pickup, endings [1,2 and [3, a backslash continuation and a note
# glued to ::. The one-quarter pickup is not a short-bar fault.
THREE_ENDINGS = """X:1
T:Three Endings
M:2/4
L:1/8
K:G
DE|:"G"G2 B2|"D7"A2 F2|\\
"G"G2 d2|[1,2 "C"e2 c2:|[3 "G"g4||
|:"Em"e2 B2|G2 E2::D2 F2|A2 d2:|]"""

# Two tunes as the lab dataset writes them: X:1 valid, X:2 with one unclosed
# chord, which must give exactly one error and no bar-length error after it.
LAB_FILE = """X:1
T:Bang Line Reel
Z: id:test-1
M:C|
L:1/8
K:G Major
"G"GABc dBAG|"(Am)"A2cA "D7"dcBA|!
"G"G2Bd g2fe|"D"dBAF G4:|!

X:2
T:Unclosed
M:3/4
L:1/8
K:C
c2 B2 A2|[Ac4 B2|G2 F2 E2|]"""

# CRLF line endings, a %% directive, comments, an empty line that ends tune 1
# (the fragment after it belongs to no tune), and a tune 2 without |] and with
# no final newline.
HYGIENE_FILE = (
    "X:1\r\nT:Crlf Tune\r\nM:4/4\r\nL:1/8\r\nK:G\r\n%%MIDI program 73\r\n"
    "% a comment line\r\nGABc d2B2| % trailing comment\r\n\r\nc2A2 G4|]\r\n\r\n"
    "X:2\r\nT:No Final Newline\r\nM:3/4\r\nL:1/4\r\nK:D\r\nF A d|\r\n"
    "W:last line words"
)


def test_three_endings_valid():
    result = check_tune(THREE_ENDINGS)
    assert result.valid
    assert result.diagnostics == []
    assert result.title == "Three Endings"


def test_lab_file_one_unclosed_chord():
    first, second = check_text(LAB_FILE)
    assert first.valid and first.diagnostics == []
    assert not second.valid
    assert [(item.code, item.line, item.column) for item in second.diagnostics] == [
        ("unclosed-chord", 15, 10)
    ]
    assert second.diagnostics[0].message == "unclosed chord: '[' has no ']'"


def test_spaced_tokens_invalid():
    text = "X:1\nM:4/4\nK:Gdor\nG 2 B d c 2 A F | G 3 A B 2 d 2 |"
    result = check_tune(text)
    assert not result.valid
    assert {item.code for item in result.errors} == {"lone-length"}


def test_despaced_tokens_valid():
    assert check_tune("X:1\nM:4/4\nK:Gdor\nG2Bdc2AF|G3AB2d2|").valid


def test_hygiene_file_both_tunes_valid():
    results = check_text(HYGIENE_FILE)
    assert [result.valid for result in results] == [True, True]
    assert [result.first_line for result in results] == [1, 12]
    assert all(result.errors == [] for result in results)


def test_free_meter_skips_bar_check():
    assert check_tune(tune("GABc d2 e2 f g a|b4|]", meter="none")).valid


def test_cut_time_and_default_unit():
    assert check_tune("X:1\nM:C|\nK:G\nGABc dcBA|G8|]").valid
    assert check_tune("X:2\nM:2/4\nK:G\nG4 A4|B8|]").valid
    assert error_codes("X:3\nM:2/4\nK:G\nB8|G2 A2|B8|]") == ["bar-length"]


def test_long_bar_is_error():
    text = tune("GABc dBAG|GABc dBAG A|GABc dBAG|]")
    result = check_tune(text)
    assert [item.code for item in result.errors] == ["bar-length"]
    error = result.errors[0]
    assert (error.line, error.column, error.bar) == (6, 11, 2)
    assert error.message == "bar is too long: 9/8 where the meter needs 8/8"


def test_short_bar_mid_section_is_error():
    assert bar_errors(tune("GABc dBAG|GABc dBA|GABc dBAG|]")) == [2]


def test_pickup_allowed():
    assert bar_errors(tune("D|GABc dBAG|GABc dBAG|]")) == []


def test_pickup_pairs_with_bar_before_repeat():
    # 1 + 7 eighths: the last bar before :| completes the pickup
    text = tune("D|GABc dBAG|GABc dBA:|\nD|GABc dBAG|GABc dBA:|")
    assert bar_errors(text) == []


def test_bar_split_across_repeat():
    # |: ... A2 :| then B2 | adds up to one 2/4 bar of 4 eighths
    assert bar_errors(tune("|:GABc|A2:|B2|cBAG|]", meter="2/4")) == []


def test_unpaired_short_bar_before_repeat():
    # 5 eighths before :| with no pickup anywhere to make 6
    text = tune("GAB cBA|GGG G2:|\nA3 B3|cBA G3|]", meter="6/8")
    assert bar_errors(text) == [2]


def test_short_bars_split_by_plain_bar_line():
    # a part written out twice, its pickup after a plain bar line
    text = tune("e|faaf gefd|efdB A3|\ne|faaf gefd|efdB A3|]")
    assert bar_errors(text) == [3, 4]


def test_short_final_bar_with_bar_line_allowed():
    assert bar_errors(tune("z|GABc dBAG|GABc dBAG|D4|]")) == []


def test_short_final_bar_without_bar_line_is_error():
    result = check_tune(tune("GABc dBAG|GABc dB"))
    assert [item.code for item in result.errors] == ["bar-length"]
    assert [item.code for item in result.diagnostics if item.severity == "warning"] == [
        "missing-final-bar"
    ]


def test_endings_pair_with_pickup():
    text = tune("D|GABc dBAG|[1 GABc dBA:|[2 GABc d3|]")
    assert bar_errors(text) == []


def test_damaged_bar_not_measured():
    # the unknown symbol is the only error; the bar it sits in is not measured
    assert error_codes(tune("GABc dB=|GABc dBAG|]")) == ["unknown-symbol"]


def test_meter_change_mid_bar_not_measured():
    assert error_codes(tune("GABc [M:3/4] dB|GAB cBA|]")) == []


def test_multibar_rest_fills_bars():
    assert check_tune(tune("Z2|GABc dBAG|]")).valid


def test_voices_checked_separately():
    text = "X:1\nM:2/4\nL:1/8\nK:C\nV:1\nCDEF|GABc|]\nV:2\nC,4|E,2G,2 C|]"
    result = check_tune(text)
    assert [(item.code, item.bar) for item in result.errors] == [("bar-length", 2)]


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("T:No number\nM:4/4\nL:1/8\nK:G\nGABc dBAG|]", ["missing-x"]),
        ("X:1\nM:4/4\nL:1/8\nGABc dBAG|]", ["missing-k"]),
        ("X:1\nM:4/4\nL:1/8\nK:G\n", ["no-music"]),
        (tune("GABc dBAG|]", key="Gxyz"), ["invalid-key"]),
        (tune("GABc dBAG|]", meter="5"), ["invalid-meter"]),
        (tune("GAB!rol!c dBAG|]"), ["unknown-decoration"]),
        (tune("(GABc dBAG|]"), ["unclosed-slur"]),
    ],
)
def test_tune_level_errors(text, codes):
    assert error_codes(text) == codes


def test_missing_meter_is_warning():
    result = check_tune("X:1\nL:1/8\nK:G\nGABc dBA|GABc dBAG|]")
    assert result.valid
    assert [(item.code, item.line) for item in result.diagnostics] == [
        ("missing-meter", 3)
    ]


def test_warnings_keep_tune_valid():
    result = check_tune(tune("GABc dBAG|GABc dBAG"))
    assert result.valid
    assert [item.code for item in result.diagnostics] == ["missing-final-bar"]


def test_check_text_file_lines():
    text = (
        "\n\n" + tune("GABc dBAG|GABc dBA|GABc dBAG|]") + "\n\n" + tune("GABc dBAG|]")
    )
    results = check_text(text)
    assert [result.index for result in results] == [1, 2]
    assert [result.first_line for result in results] == [3, 10]
    assert [(item.line, item.column) for item in results[0].diagnostics] == [(8, 11)]


def test_summarise_counts_tunes_per_error():
    results = check_text(
        "\n\n".join(
            [
                tune("GABc dBAG|GABc dBA|GABc dBAG|]"),
                tune("GABc dB=|GABc dBA|GABc dBAG|]"),
                tune("GABc dBAG|]"),
            ]
        )
    )
    summary = summarise(results)
    assert (summary.tunes, summary.valid, summary.invalid) == (3, 1, 2)
    assert summary.error_tunes == {"bar-length": 2, "unknown-symbol": 1}
    assert summary.to_dict()["invalid"] == 2


def test_result_to_dict():
    result = check_tune(tune("GABc dBAG|GABc dBA|GABc dBAG|]"))
    data = result.to_dict()
    assert data["valid"] is False
    assert data["diagnostics"][0] == {
        "severity": "error",
        "code": "bar-length",
        "message": "bar is too short: 7/8 where the meter needs 8/8",
        "line": 6,
        "column": 11,
        "bar": 2,
    }


def test_ending_inside_bar_shares_notes():
    # `G2G` belongs to both endings: G2G+G2 with the c pickup, and G2G+G3.
    text = tune("c|B2c d2e|G2G [1 G2:|\\\n[2 G3||B2G GAB|c2c c3|]", meter="6/8")
    assert bar_errors(text) == []
    # G2G + G4 overfills the bar of the second ending.
    text = tune("c|B2c d2e|G2G [1 G2:|[2 G4||B2G GAB|]", meter="6/8")
    assert bar_errors(text) == [4]


def test_damaged_pickup_still_pairs():
    # The unknown `K` is reported; the pickup it sits in still completes `D2::`.
    text = tune('"Dm"K(E/F/)|AFD DEF|EDD D2::\nA|d2e f2d|EDD D2:|', meter="6/8")
    assert error_codes(text) == ["unknown-symbol"]


def test_ending_number_after_continuation():
    # `|\` then `1` on the next line is the ending `|1`, not a stray length.
    text = tune("A|GABc dBAG|GABc dBA|\\\n1 GABc dBA:|2 GABc d3|]")
    assert check_tune(text).valid


def test_slur_may_start_inside_chord():
    assert check_tune(tune("GABc dBAG|[E4(e4]c2) GA|GABc dBAG|]")).valid


def test_note_field_with_double_colon():
    # "N::2nd Setting" is a note field; "A:|" would be music.
    assert check_tune("X:1\nT:t\nN::2nd Setting\nM:C\nK:G\nGABc dBAG|]").valid


def test_reserved_character_is_ignored():
    # ABC 2.1 reserves # * ; ? @ for later use, and programs should ignore them.
    result = check_tune(tune("GABc dBAG|GABc d4|]*"))
    assert result.valid
    assert [item.code for item in result.diagnostics] == ["reserved-character"]


def test_old_line_break_after_bar_line():
    # "|!" with no closing "!" is the line break of ABC before 2.1.
    result = check_tune(tune("GABc dBAG|!GABc d4|]"))
    assert result.valid
    assert [(item.code, item.column) for item in result.diagnostics] == [
        ("old-line-break", 11)
    ]
    assert error_codes(tune("GABc dBAG|!trill GABc d4|]")) == ["unclosed-decoration"]
    assert check_tune(tune("GABc !trill!dBAG|GABc d4|]")).valid


def test_directive_continued_with_backslash():
    text = "X:1\nT:t\nM:C\n%%Bfly 0 300 6 \\\n 0 0 3 2 1\nK:G\nGABc dBAG|]"
    assert check_tune(text).valid


def test_old_line_breaks_inside_and_at_end():
    result = check_tune(tune("GABc dBAG|!GABc d4|GABc dBAG|]!"))
    assert result.valid
    assert [item.code for item in result.diagnostics] == ["old-line-break"]


def test_pickup_after_meter_change_completes_bar():
    # 7/8 in 4/4, then M:2/4 and a pickup of 1/8: one full 4/4 bar.
    text = tune("GABc dBAG|GABc d3||\nM:2/4\nG|BG D2|A2 G2|]")
    assert bar_errors(text) == []
