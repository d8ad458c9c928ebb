"""Tests for abcrnn.abc.tunes: splitting text into tunes and reading header fields."""

import pytest

from abcrnn.abc.tunes import header_fields, split_tunes, strip_comment

# Two tunes, one blank line between them, no newline at the end of the text.
TWO_TUNES = (
    "X:1\nT:Split One\nM:4/4\nL:1/8\nK:G\nGABc d2B2|c2A2 G4|]\n"
    "\n"
    "X:2\nT:Split Two\nM:6/8\nL:1/8\nK:D\nFAd fed|e3 d3|]"
)
TUNE_ONE = "X:1\nT:Split One\nM:4/4\nL:1/8\nK:G\nGABc d2B2|c2A2 G4|]"
TUNE_TWO = "X:2\nT:Split Two\nM:6/8\nL:1/8\nK:D\nFAd fed|e3 d3|]"

# CRLF line endings, a %% directive and comments in the header, a trailing comment,
# an empty line that ends tune 1 before its second music line, and a last tune that
# ends in a W: line with no final newline.
CRLF_TEXT = (
    "X:1\r\nT:Hygiene\r\n%%MIDI program 73\r\nM:4/4\r\nL:1/8\r\n% a comment line\r\n"
    "K:G\r\nGABc d2B2| % trailing comment\r\n\r\nc2A2 G4|]\r\n\r\n"
    "X:2\r\nT:Second\r\nM:4/4\r\nL:1/4\r\nK:D\r\nF A d|\r\nW:last line words"
)


def test_split_two_tunes_without_final_newline():
    result = split_tunes(TWO_TUNES)
    assert result.tunes == [TUNE_ONE, TUNE_TWO]
    assert result.dropped_lines == 0
    assert result.fragments == []


def test_split_first_and_last_tune_boundaries():
    first, second = split_tunes(TWO_TUNES).tunes
    assert first.startswith("X:1")
    assert first.endswith("G4|]")
    assert second.startswith("X:2")
    assert second.endswith("d3|]")


@pytest.mark.parametrize(
    "text",
    [
        "\n\n" + TWO_TUNES,  # blank lines before the first tune
        TWO_TUNES + "\n\n\n",  # blank lines after the last tune
        TWO_TUNES.replace("G4|]\n\n", "G4|]\n\n\n\n"),  # a run of blank lines
        TWO_TUNES.replace("G4|]\n\n", "G4|]\n   \n\t\n"),  # whitespace-only lines
        "\n \n" + TWO_TUNES.replace("\n\n", "\n\n\n") + "\n \n",
    ],
)
def test_split_extra_blank_lines_still_two(text):
    result = split_tunes(text)
    assert result.tunes == [TUNE_ONE, TUNE_TWO]
    assert result.dropped_lines == 0


def test_split_one_tune_no_blank_lines():
    assert split_tunes(TUNE_ONE).tunes == [TUNE_ONE]


def test_split_tunes_without_blank_line_between():
    # The next X: line ends a tune even with no blank line before it.
    result = split_tunes(TUNE_ONE + "\n" + TUNE_TWO + "\n")
    assert result.tunes == [TUNE_ONE, TUNE_TWO]


def test_split_crlf_file():
    result = split_tunes(CRLF_TEXT)
    assert len(result.tunes) == 2
    assert result.tunes[0] == (
        "X:1\nT:Hygiene\n%%MIDI program 73\nM:4/4\nL:1/8\n% a comment line\n"
        "K:G\nGABc d2B2| % trailing comment"
    )
    assert (
        result.tunes[1] == "X:2\nT:Second\nM:4/4\nL:1/4\nK:D\nF A d|\nW:last line words"
    )
    assert result.fragments == ["c2A2 G4|]"]
    assert result.dropped_lines == 1


def test_split_crlf_body_is_one_line():
    first = split_tunes(CRLF_TEXT).tunes[0]
    body = first.split("K:G\n", 1)[1]
    assert body == "GABc d2B2| % trailing comment"


def test_split_removes_every_carriage_return():
    result = split_tunes(CRLF_TEXT)
    assert all("\r" not in tune for tune in result.tunes)
    assert all("\r" not in fragment for fragment in result.fragments)


def test_split_lone_carriage_returns():
    # Old Mac line endings: a lone CR ends each line.
    result = split_tunes(TWO_TUNES.replace("\n", "\r"))
    assert result.tunes == [TUNE_ONE, TUNE_TWO]


def test_split_blank_line_in_header_keeps_tune():
    # A blank line before K: does not end the tune; the header is still open.
    text = "X:1\nT:Gap\n\nM:2/4\nL:1/8\nK:G\nGABc|]\n\nX:2\nK:D\nFAdf|]"
    result = split_tunes(text)
    assert result.tunes == [
        "X:1\nT:Gap\n\nM:2/4\nL:1/8\nK:G\nGABc|]",
        "X:2\nK:D\nFAdf|]",
    ]
    assert result.dropped_lines == 0


def test_split_blank_line_after_key_before_music():
    # Some collections put a blank line right after K:, and the music that
    # follows it still belongs to the tune.
    text = "X:22\nT:Late Body\nK:D Major\n\nA,C|D2 DF|!\nde|fd d2|]\n\nX:23\nK:G\nG4|]"
    result = split_tunes(text)
    assert result.tunes[0] == "X:22\nT:Late Body\nK:D Major\n\nA,C|D2 DF|!\nde|fd d2|]"
    assert result.tunes[1] == "X:23\nK:G\nG4|]"
    assert result.dropped_lines == 0


def test_split_blank_line_after_music_ends_tune():
    result = split_tunes("X:1\nK:G\nGABc|\n\ndefg|]\n")
    assert result.tunes == ["X:1\nK:G\nGABc|"]
    assert result.fragments == ["defg|]"]


def test_split_lines_before_first_tune_are_fragments():
    text = "%abc-2.1\n%%pagewidth 21cm\nSome notes about the book\n\n" + TUNE_ONE
    result = split_tunes(text)
    assert result.tunes == [TUNE_ONE]
    assert result.fragments == ["%abc-2.1\n%%pagewidth 21cm\nSome notes about the book"]
    assert result.dropped_lines == 3


def test_split_counts_separate_fragments():
    text = TUNE_ONE + "\n\nstray one\n\nstray two\nstray three\n\n" + TUNE_TWO
    result = split_tunes(text)
    assert result.tunes == [TUNE_ONE, TUNE_TWO]
    assert result.fragments == ["stray one", "stray two\nstray three"]
    assert result.dropped_lines == 3


@pytest.mark.parametrize("text", ["", "\n", "\n\n  \n", "no tune here\n"])
def test_split_text_without_tunes(text):
    result = split_tunes(text)
    assert result.tunes == []


def test_split_never_returns_empty_tune():
    text = "X:1\n\n\nX:2\n\nX:3"
    result = split_tunes(text)
    assert result.tunes == ["X:1", "X:2", "X:3"]
    assert all(tune.strip() for tune in result.tunes)


def test_split_x_line_with_space():
    result = split_tunes("X: 7\nT: Spaced\nK: G\nGABc|]\n")
    assert result.tunes == ["X: 7\nT: Spaced\nK: G\nGABc|]"]


def test_split_start_lines():
    result = split_tunes("\n" + TWO_TUNES)
    assert result.start_lines == [2, 9]


def test_split_tune_ends_without_trailing_newline():
    result = split_tunes(TUNE_ONE + "\n\n")
    assert not result.tunes[0].endswith("\n")


def test_header_fields_first_values():
    fields = header_fields(TUNE_ONE)
    assert fields == {"X": "1", "T": "Split One", "M": "4/4", "L": "1/8", "K": "G"}


def test_header_fields_stop_at_key():
    # T: after K: is a section title in the body, not a header field.
    tune = "X:3\nT:First\nT:Second\nM:6/8\nK:D\nFAd|\nT:Part B\nM:9/8\nfed|]"
    fields = header_fields(tune)
    assert fields == {"X": "3", "T": "First", "M": "6/8", "K": "D"}


def test_header_fields_strip_spaces_and_comments():
    tune = "X: 12 \nT: Spaced Title\n% a comment line\nK:G % two sharps in print\nG|]"
    fields = header_fields(tune)
    assert fields == {"X": "12", "T": "Spaced Title", "K": "G"}


def test_header_fields_crlf_and_continuation():
    tune = "X:1\r\nT:Long\r\n+:Title\r\nK:Ador\r\nA|]"
    fields = header_fields(tune)
    assert fields == {"X": "1", "T": "Long Title", "K": "Ador"}


def test_header_fields_without_key():
    fields = header_fields("X:5\nT:No Key\nABcd|]\nM:3/4")
    assert fields == {"X": "5", "T": "No Key"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GABc d2B2| % trailing comment", ("GABc d2B2| ", True)),
        ("GABc|]", ("GABc|]", False)),
        ('"50% slower"GABc|', ('"50% slower"GABc|', False)),  # inside quotes
        ("T:100\\% Irish % source", ("T:100\\% Irish ", True)),  # escaped percent
    ],
)
def test_strip_comment(line, expected):
    assert strip_comment(line) == expected
