"""Tests for abcrnn.abc.parser: pitches, lengths, bars and positions of ABC tunes."""

from __future__ import annotations

from fractions import Fraction

import pytest

from abcrnn.abc.events import TICKS_PER_WHOLE, played_notes
from abcrnn.abc.keys import Meter, default_unit, parse_key, parse_meter, parse_unit
from abcrnn.abc.parser import parse_tune

EIGHTH = Fraction(1, 8)
QUARTER = Fraction(1, 4)


def tune(body: str, meter: str = "4/4", unit: str | None = "1/8", key: str = "C"):
    """Return a tune text with a standard header around `body`."""
    header = ["X:1", "T:Test", f"M:{meter}"]
    if unit is not None:
        header.append(f"L:{unit}")
    header.append(f"K:{key}")
    return "\n".join([*header, body])


def pitches(text: str) -> list[int]:
    return [event.pitch for event in parse_tune(text).notes]


def lengths(text: str, unit: Fraction = EIGHTH) -> list[Fraction]:
    return [event.duration / unit for event in parse_tune(text).notes]


def codes(text: str) -> list[str]:
    return [item.code for item in parse_tune(text).diagnostics]


# folk-rnn style text with its spaces removed: G dorian has one flat (B flat),
# no L: in 4/4 gives eighth-note units, and both bars hold 8 eighths.
DESPACED = "X:1\nM:4/4\nK:Gdor\nG2Bdc2AF|G3AB2d2|"

# A reel with a pickup, endings [1,2 and [3, a backslash continuation, six
# chord symbols and a note glued to the :: repeat sign.
THREE_ENDINGS = """X:1
T:Three Endings
M:2/4
L:1/8
K:G
DE|:"G"G2 B2|"D7"A2 F2|\\
"G"G2 d2|[1,2 "C"e2 c2:|[3 "G"g4||
|:"Em"e2 B2|G2 E2::D2 F2|A2 d2:|]"""

# An inline key change right after |: and inline key and meter changes in the
# middle of a line; in X:2 a key change in voice 1 must not reach voice 2.
INLINE_FIELDS = """X:1
T:Inline Key After Repeat
M:4/4
L:1/8
K:Gm
|: [K:Bdor] B2 c2 g2 e2 | f2 d2 B4 :| [K:C][M:3/4] B2 e2 f2 | c6 |]"""

VOICES = """X:2
T:Voice Key Leak
M:4/4
L:1/8
K:Dm
V:1
F2 B2 [K:A] F2 B2 | c8 |]
V:2
F,2 B,2 F,2 B,2 | C8 |]"""

# A flat lasts to the bar line. The tie carries the natural of F into bar 3,
# and the next F there returns to the key's F sharp.
CARRY_AND_TIE = """X:1
T:Carry And Tie
M:4/4
L:1/4
K:G
_B A B d | =F2 z F- | F F z2 |]"""

SPLIT_TIE = """X:2
T:Split Tie
M:2/4
L:1/8
K:D
A3 A/-A/ | f2 e2 |]"""

# The lab dataset's style: Z: id line, M:C|, K:G Major, chord symbols including
# "(Am)", each music line ending with |! and a closing :| with no opening |:.
BANG_LINES = """X:1
T:Bang Line Reel
Z: id:test-1
M:C|
L:1/8
K:G Major
"G"GABc dBAG|"(Am)"A2cA "D7"dcBA|!
"G"G2Bd g2fe|"D"dBAF G4:|!"""


def test_despaced_folk_rnn_pitches():
    assert pitches(DESPACED) == [67, 70, 74, 72, 69, 65, 67, 69, 70, 74]


def test_despaced_folk_rnn_lengths():
    assert lengths(DESPACED) == [2, 1, 1, 2, 1, 1, 3, 1, 2, 2]
    assert [bar.duration for bar in parse_tune(DESPACED).bars] == [1, 1]


def test_spaced_folk_rnn_reports_lone_digits():
    spaced = "X:1\nM:4/4\nK:Gdor\nG 2 B d c 2 A F | G 3 A B 2 d 2 |"
    parsed = parse_tune(spaced)
    assert [item.code for item in parsed.errors] == ["lone-length"] * 5
    assert [item.column for item in parsed.errors] == [3, 11, 21, 27, 31]


def test_endings_notes_and_chord_symbols():
    parsed = parse_tune(THREE_ENDINGS)
    assert len(parsed.notes) == 19
    assert [symbol.text for symbol in parsed.chord_symbols] == [
        "G",
        "D7",
        "G",
        "C",
        "G",
        "Em",
    ]
    assert parsed.diagnostics == []


def test_note_before_double_colon_kept():
    parsed = parse_tune(THREE_ENDINGS)
    second_part = [event.pitch for event in parsed.notes][-8:]
    assert second_part == [76, 71, 67, 64, 62, 66, 69, 74]


def test_endings_mark_section_edges():
    bars = parse_tune(THREE_ENDINGS).bars
    assert [bar.duration for bar in bars] == [QUARTER] + [Fraction(1, 2)] * 9
    assert bars[0].opens_section and bars[0].closes_section
    assert bars[4].opens_section  # [1,2 e2 c2
    assert bars[5].opens_section  # [3 g4


def test_inline_key_after_repeat():
    assert pitches(INLINE_FIELDS) == [71, 73, 80, 76, 78, 74, 71, 71, 76, 77, 72]
    assert lengths(INLINE_FIELDS, QUARTER) == [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 3]


def test_inline_meter_change_sets_bar_length():
    bars = parse_tune(INLINE_FIELDS).bars
    assert [bar.duration for bar in bars] == [1, 1, Fraction(3, 4), Fraction(3, 4)]
    assert [bar.expected_ticks for bar in bars] == [bar.ticks for bar in bars]


def test_key_change_stays_in_its_voice():
    parsed = parse_tune(VOICES)
    by_voice = {name: [] for name in parsed.voices}
    for event in parsed.notes:
        by_voice[event.voice].append(event.pitch)
    assert by_voice == {"1": [65, 70, 66, 71, 73], "2": [53, 58, 53, 58, 60]}


def test_voices_have_their_own_time():
    parsed = parse_tune(VOICES)
    second = [event for event in parsed.notes if event.voice == "2"]
    assert [event.onset for event in second] == [
        0,
        QUARTER,
        2 * QUARTER,
        3 * QUARTER,
        1,
    ]
    assert [event.duration / QUARTER for event in second] == [1, 1, 1, 1, 4]


def test_accidental_lasts_to_bar_line_and_tie_carries_it():
    played = played_notes(parse_tune(CARRY_AND_TIE).events)
    assert [pitch for pitch, _onset, _length in played] == [70, 69, 70, 74, 65, 65, 66]
    assert [length / QUARTER for _pitch, _onset, length in played] == [
        1,
        1,
        1,
        1,
        2,
        2,
        1,
    ]


def test_split_tie_is_one_eighth():
    played = played_notes(parse_tune(SPLIT_TIE).events)
    assert [pitch for pitch, _onset, _length in played] == [69, 69, 78, 76]
    assert [length / EIGHTH for _pitch, _onset, length in played] == [3, 1, 2, 2]


# Nine keys over the body C D E F G A B c, with the MIDI pitches each gives.
KEY_TABLE = [
    ("F#m", [61, 62, 64, 66, 68, 69, 71, 73]),
    ("C#", [61, 63, 65, 66, 68, 70, 72, 73]),
    ("Cmix", [60, 62, 64, 65, 67, 69, 70, 72]),
    ("Db", [60, 61, 63, 65, 66, 68, 70, 72]),
    ("Gmajor", [60, 62, 64, 66, 67, 69, 71, 72]),
    ("Ador", [60, 62, 64, 66, 67, 69, 71, 72]),
    ("Ddor", [60, 62, 64, 65, 67, 69, 71, 72]),
    ("G Major", [60, 62, 64, 66, 67, 69, 71, 72]),
    ("Gmix", [60, 62, 64, 65, 67, 69, 71, 72]),
]


@pytest.mark.parametrize(("key", "expected"), KEY_TABLE)
def test_key_spellings(key, expected):
    text = tune("CDEF GABc|]", key=key)
    assert pitches(text) == expected
    assert parse_tune(text).diagnostics == []


@pytest.mark.parametrize(
    ("value", "tonic", "mode"),
    [
        ("EMin", "E", "minor"),
        ("A Dorian", "A", "dorian"),
        ("D Mixolydian", "D", "mixolydian"),
        ("Bphr", "B", "phrygian"),
        ("G Lydian", "G", "lydian"),
        ("Bloc", "B", "locrian"),
        ("Eaeolian", "E", "aeolian"),
        ("F ionian", "F", "ionian"),
        ("none", None, "none"),
        ("G clef=bass % comment", "G", "major"),
    ],
)
def test_parse_key_modes(value, tonic, mode):
    key = parse_key(value)
    assert (key.tonic, key.mode) == (tonic, mode)


def test_parse_key_explicit_accidentals():
    assert parse_key("D exp ^f ^c").signature == (1, 0, 0, 1, 0, 0, 0)
    assert parse_key("G ^c").signature == (1, 0, 0, 1, 0, 0, 0)
    assert parse_key("Hp").signature == (1, 0, 0, 1, 0, 0, 0)
    assert parse_key("HP").signature == (0,) * 7


@pytest.mark.parametrize("value", ["Bn", "Dmixm", "Gxyz", "H", "G maj7"])
def test_parse_key_rejects(value):
    with pytest.raises(ValueError):
        parse_key(value)


def test_parse_key_without_tonic_keeps_key():
    assert parse_key("") is None
    assert parse_key("clef=bass") is None


@pytest.mark.parametrize(
    ("value", "meter"),
    [
        ("C", Meter(4, 4)),
        ("C|", Meter(2, 2)),
        ("6/8", Meter(6, 8)),
        ("2+3/8", Meter(5, 8)),
        ("(2+2+3)/8", Meter(7, 8)),
        ("none", None),
    ],
)
def test_parse_meter(value, meter):
    assert parse_meter(value) == meter


@pytest.mark.parametrize("value", ["9/8 EDC DA,B,|", "x/4", "0/4", "3/0"])
def test_parse_meter_rejects(value):
    with pytest.raises(ValueError):
        parse_meter(value)


def test_parse_unit_and_default():
    assert parse_unit("1/16") == (1, 16)
    assert parse_unit("1") == (1, 1)
    assert default_unit(Meter(2, 4)) == (1, 16)
    assert default_unit(Meter(3, 4)) == (1, 8)
    assert default_unit(None) == (1, 8)


def test_cut_time_without_unit():
    # M:C| is 2/2 (not 4/4); with no L: the unit is 1/8, so each bar is 8 eighths
    text = "X:1\nM:C|\nQ:1/4=100\nK:G\nGABc dcBA|G8|]"
    parsed = parse_tune(text)
    assert parsed.meter == Meter(2, 2)
    assert lengths(text) == [1] * 8 + [8]
    assert [bar.duration for bar in parsed.bars] == [1, 1]


def test_two_four_without_unit_uses_sixteenths():
    # 2/4 is below 3/4, so the default unit is 1/16 and G4 is a quarter note
    text = "X:2\nM:2/4\nQ:1/4=100\nK:G\nG4 A4|B8|]"
    assert lengths(text, QUARTER) == [1, 1, 2]


def test_free_meter_has_no_expected_length():
    # M:none: bars of 11 and 4 eighths have no length to match
    text = tune("GABc d2 e2 f g a|b4|]", meter="none")
    assert [bar.expected_ticks for bar in parse_tune(text).bars] == [None, None]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "A2 A/2 A/ A// A3/2 A//2|",
            [
                2,
                Fraction(1, 2),
                Fraction(1, 2),
                Fraction(1, 4),
                Fraction(3, 2),
                Fraction(1, 4),
            ],
        ),
        ("A>B A<B|", [Fraction(3, 2), Fraction(1, 2), Fraction(1, 2), Fraction(3, 2)]),
        ("A>>B|", [Fraction(7, 4), Fraction(1, 4)]),
        ("(3ABc d|", [Fraction(2, 3)] * 3 + [1]),
        ("(3:2:2AB c|", [Fraction(2, 3)] * 2 + [1]),
        ("[CEG]2 [C2E]|", [2, 2, 2, 2, 1]),
        ("{g}A {/ag}B|", [1, 1]),
    ],
)
def test_lengths_in_units(body, expected):
    assert lengths(tune(body)) == expected


def test_chord_takes_length_of_first_note():
    parsed = parse_tune(tune("[C2E4] D|"))
    assert [event.onset / EIGHTH for event in parsed.notes] == [0, 0, 2]


def test_grace_notes_take_no_time():
    parsed = parse_tune(tune("{ag}A B|"))
    kinds = [(event.kind, event.duration) for event in parsed.events]
    assert kinds == [("grace", 0), ("grace", 0), ("note", EIGHTH), ("note", EIGHTH)]


def test_tuplet_in_compound_meter():
    # (5 in 6/8 puts five notes in the time of three
    assert lengths(tune("(5ABcde c|", meter="6/8")) == [Fraction(3, 5)] * 5 + [1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("^C ^^C _C __C =C|", [61, 62, 59, 58, 60]),
        ("C, C c c' c''|", [48, 60, 72, 84, 96]),
        # an accidental applies to its letter in every octave until the bar line
        ("^F F f F,|F|", [66, 66, 78, 54, 65]),
        # a grace note's accidental applies to the notes after it
        ("{^c}c c|", [73, 73, 73]),
        # a key change cancels the accidentals written before it in the bar
        ("^f [K:G] f =f [K:D] f|", [78, 78, 77, 78]),
    ],
)
def test_accidentals_and_octaves(body, expected):
    assert [event.pitch for event in parse_tune(tune(body)).events] == expected


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ("%%propagate-accidentals pitch", [66, 78, 66]),
        ("%%propagate-accidentals octave", [66, 77, 66]),
        ("%%propagate-accidentals not", [66, 77, 65]),
        ("I:propagate-accidentals octave", [66, 77, 66]),
    ],
)
def test_propagate_accidentals_directive(directive, expected):
    text = f"X:1\n{directive}\nM:4/4\nL:1/8\nK:C\n^F f F|"
    assert pitches(text) == expected


def test_rests_are_events_without_pitch():
    parsed = parse_tune(tune("z2 x A|"))
    assert [(event.kind, event.pitch) for event in parsed.events] == [
        ("rest", None),
        ("rest", None),
        ("note", 69),
    ]


def test_multibar_rest_counts_bars():
    parsed = parse_tune(tune("Z4|A8|"))
    assert [(bar.number, bar.rests, bar.duration) for bar in parsed.bars] == [
        (1, 4, 4),
        (5, 0, 1),
    ]


def test_decorations_and_annotations_are_not_notes():
    text = tune('!trill!A +fermata+B ~c .d HA "^text"B "Am"c "@x"d|')
    parsed = parse_tune(text)
    assert pitches(text) == [69, 71, 72, 74, 69, 71, 72, 74]
    assert [item.text for item in parsed.annotations] == ["^text", "@x"]
    assert [item.text for item in parsed.chord_symbols] == ["Am"]
    assert parsed.diagnostics == []


def test_bang_line_ends_of_lab_data():
    parsed = parse_tune(BANG_LINES)
    assert parsed.diagnostics == []
    assert len(parsed.notes) == 26
    assert [item.text for item in parsed.chord_symbols] == ["G", "(Am)", "D7", "G", "D"]
    assert [event.pitch for event in parsed.notes][:8] == [
        67,
        69,
        71,
        72,
        74,
        71,
        69,
        67,
    ]
    assert [bar.duration for bar in parsed.bars] == [1, 1, 1, 1]


def test_comments_directives_and_no_final_newline():
    # CRLF line ends, a %% directive, a comment line and a trailing comment
    text = (
        "X:1\r\nT:Crlf Tune\r\nM:4/4\r\nL:1/8\r\nK:G\r\n%%MIDI program 73\r\n"
        "% a comment line\r\nGABc d2B2| % trailing comment"
    )
    parsed = parse_tune(text)
    assert [event.pitch for event in parsed.notes] == [67, 69, 71, 72, 74, 71]
    assert parsed.diagnostics == []


def test_lyrics_line_and_missing_closing_bar():
    # no |] and no final newline; the W: words line is not music
    text = "X:2\nT:No Final Newline\nM:3/4\nL:1/4\nK:D\nF A d|\nW:last line words"
    parsed = parse_tune(text)
    assert [event.pitch for event in parsed.notes] == [66, 69, 74]
    assert parsed.diagnostics == []


def test_blank_line_ends_the_tune():
    text = tune("GABc d2B2|\n\nc2A2 G4|]")
    parsed = parse_tune(text)
    assert len(parsed.notes) == 6
    assert [(item.code, item.line) for item in parsed.diagnostics] == [
        ("ignored-text", 8)
    ]


def test_blank_line_before_music_is_skipped():
    text = "X:1\nM:4/4\nL:1/8\nK:D\n\nDEFG ABcd|]"
    parsed = parse_tune(text)
    assert len(parsed.notes) == 8
    assert [item.code for item in parsed.diagnostics] == ["blank-line"]


def test_unclosed_chord_is_one_error_at_bracket():
    text = "X:2\nT:Unclosed\nM:3/4\nL:1/8\nK:C\nc2 B2 A2|[Ac4 B2|G2 F2 E2|]"
    parsed = parse_tune(text)
    assert [(item.code, item.line, item.column) for item in parsed.diagnostics] == [
        ("unclosed-chord", 6, 10)
    ]


@pytest.mark.parametrize(
    ("body", "code", "column"),
    [
        ("A2 (B2 c4|", "unclosed-slur", 4),
        ("A2 B2) c4|", "unmatched-close", 6),
        ("A2 {gB2 c4|", "unclosed-grace", 4),
        ("A2 (3B2 c2|", "unclosed-tuplet", 4),
        ("A2 !trill B2 c4|", "unclosed-decoration", 4),
        ("A2 !foo!B2 c4|", "unknown-decoration", 4),
        ('A2 "Am B2 c4|', "unclosed-quote", 4),
        ("A2 [K:G B2 c4|", "unclosed-field", 4),
        ("A2 B2 c4 =|", "unknown-symbol", 10),
        ("> B2 c4 d2|", "misplaced-broken-rhythm", 1),
        ("A2 B2 c2 c>|", "misplaced-broken-rhythm", 11),
        ("A2 B><c c4|", "misplaced-broken-rhythm", 6),
        ("A2 B/0 c4 d|", "lone-length", 6),
        ("A2 B0 c4 d|", "lone-length", 5),
    ],
)
def test_syntax_faults_have_positions(body, code, column):
    parsed = parse_tune(tune(body))
    assert [(item.code, item.line, item.column) for item in parsed.errors] == [
        (code, 6, column)
    ]


def test_missing_x_and_k():
    assert codes("T:No number\nM:4/4\nK:G\nGABc|]") == ["missing-x"]
    assert codes("X:1\nT:No key\nM:4/4\nGABc|]") == ["missing-k"]


def test_header_errors():
    assert codes(tune("GABc dBAG|", key="Bn")) == ["invalid-key"]
    assert codes(tune("GABc dBAG|", meter="9/8 EDC")) == ["invalid-meter"]
    assert codes(tune("GABc dBAG|", unit="eighth")) == ["invalid-length"]


def test_x_in_body_stops_the_tune():
    parsed = parse_tune(tune("GABc dBAG|\nX:2\nT:Glued\nK:D\nDEFG ABcd|"))
    assert len(parsed.notes) == 8
    assert [(item.code, item.line) for item in parsed.diagnostics] == [
        ("misplaced-x", 7)
    ]


def test_events_carry_bar_line_and_column():
    parsed = parse_tune(tune("GA Bc|\nde|"))
    positions = [(event.bar, event.line, event.column) for event in parsed.notes]
    assert positions == [
        (1, 6, 1),
        (1, 6, 2),
        (1, 6, 4),
        (1, 6, 5),
        (2, 7, 1),
        (2, 7, 2),
    ]


def test_onsets_are_exact_fractions():
    parsed = parse_tune(tune("(3ABc d|"))
    assert [event.onset for event in parsed.notes] == [
        0,
        Fraction(1, 12),
        Fraction(1, 6),
        Fraction(1, 4),
    ]
    assert TICKS_PER_WHOLE % 3 == 0


def test_header_fields_are_kept():
    parsed = parse_tune(BANG_LINES)
    assert parsed.title == "Bang Line Reel"
    assert parsed.header["M"] == "C|"
    assert parsed.key.signature == (0, 0, 0, 1, 0, 0, 0)


def test_user_defined_shorthand():
    text = "X:1\nM:4/4\nL:1/8\nU:W = !trill!\nK:C\nWA B c d e f g a|"
    assert codes(text) == []
    assert codes(tune("WA B c d e f g a|")) == ["unknown-symbol"]


def test_dollar_line_break_needs_directive():
    body = "GABc$ dBAG|"
    assert codes(tune(body)) == ["unknown-symbol"]
    assert codes(tune(body).replace("K:C", "I:linebreak $\nK:C")) == []
