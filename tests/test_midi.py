"""ABC to MIDI with abc2midi: exact pitches, durations, tempos and meters."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import mido
import pytest

from abcrnn.abc import midi as abc_midi
from abcrnn.abc.midi import (
    AbcMessage,
    abc_to_midi,
    find_abc2midi,
    midi_duration,
    midi_notes,
    parse_messages,
)
from abcrnn.errors import RenderError

# abc2midi writes 480 ticks a quarter and moves each note by one tick, so every
# start and duration below is compared to within 1.5 ticks.
TOLERANCE_QUARTERS = 1.5 / 480


def convert(tmp_path, tune: str, name: str = "tune.mid"):
    """Convert `tune`, assert that it worked, and return the MidiResult."""
    result = abc_to_midi(tune, tmp_path / name)
    assert result.ok, result.reason
    return result


def pitches(path, **options) -> list[int]:
    return [pitch for pitch, _, _ in midi_notes(path, **options)]


def in_quarters(seconds: list[float], qpm: float) -> list[float]:
    return [value * qpm / 60.0 for value in seconds]


def assert_quarters(actual_seconds, expected_quarters, qpm=120.0):
    """Check note lengths or starts, in seconds, against quarter-note counts."""
    actual = in_quarters(actual_seconds, qpm)
    assert actual == pytest.approx(expected_quarters, abs=TOLERANCE_QUARTERS)


def durations(path) -> list[float]:
    return [duration for _, _, duration in midi_notes(path)]


def last_note_end(path) -> float:
    return max(start + duration for _, start, duration in midi_notes(path))


def meta_events(path, kind: str) -> list[tuple[int, mido.MetaMessage]]:
    """Return (absolute tick, message) for each meta message of one type."""
    events = []
    for track in mido.MidiFile(path).tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == kind:
                events.append((tick, message))
    return events


def notes_by_channel(path) -> dict[int, list[tuple[int, int]]]:
    """Return {channel: [(pitch, length in ticks), ...]} in playing order."""
    timed: dict[int, list[tuple[int, int, int]]] = {}
    for track in mido.MidiFile(path).tracks:
        tick, started = 0, {}
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                started[(message.channel, message.note)] = tick
            elif message.type in ("note_on", "note_off"):
                on = started.pop((message.channel, message.note))
                timed.setdefault(message.channel, []).append(
                    (on, message.note, tick - on)
                )
    return {
        channel: [(pitch, length) for _, pitch, length in sorted(notes)]
        for channel, notes in timed.items()
    }


# Eighths and quarters in G major at 120 quarters a minute.
SMALL_TUNE = "X:1\nT:Small\nM:4/4\nL:1/8\nQ:1/4=120\nK:G\nGABc d2B2|\n"


def test_small_tune_exact_notes(tmp_path):
    result = convert(tmp_path, SMALL_TUNE)
    notes = midi_notes(result.path)
    assert result.notes == 6
    assert result.messages == ()
    assert [p for p, _, _ in notes] == [67, 69, 71, 72, 74, 71]
    starts = [start for _, start, _ in notes]
    assert starts == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.5], abs=0.0016)
    lengths = [length for _, _, length in notes]
    assert lengths == pytest.approx([0.25] * 4 + [0.5] * 2, abs=0.0016)


def test_small_tune_duration(tmp_path):
    result = convert(tmp_path, SMALL_TUNE)
    assert last_note_end(result.path) == pytest.approx(2.0, abs=0.0016)
    # The file ends a few ticks after the last note.
    assert 2.0 <= midi_duration(result.path) < 2.1


# Nine one-bar tunes, identical body, only K: differs: pitches for C D E F G A B c.
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
def test_key_and_mode_spellings(tmp_path, key, expected):
    tune = f"X:1\nT:Key {key}\nM:4/4\nL:1/8\nK:{key}\nCDEF GABc|]\n"
    result = convert(tmp_path, tune)
    assert pitches(result.path) == expected
    assert result.messages == ()


# Accidentals last to the bar line; a tie carries its natural across the bar.
CARRY_AND_TIE = """X:1
T:Carry And Tie
M:4/4
L:1/4
K:G
_B A B d | =F2 z F- | F F z2 |]"""

# A dotted note, then two tied half-length notes of the same pitch.
SPLIT_TIE = """X:2
T:Split Tie
M:2/4
L:1/8
K:D
A3 A/-A/ | f2 e2 |]"""


def test_accidental_lasts_to_bar_line(tmp_path):
    result = convert(tmp_path, CARRY_AND_TIE)
    assert pitches(result.path) == [70, 69, 70, 74, 65, 65, 66]
    assert_quarters(durations(result.path), [1, 1, 1, 1, 2, 2, 1])
    assert result.messages == ()


def test_split_tie_is_one_note(tmp_path):
    result = convert(tmp_path, SPLIT_TIE)
    assert pitches(result.path) == [69, 69, 78, 76]
    assert_quarters(durations(result.path), [1.5, 0.5, 1, 1])
    assert result.messages == ()


# Meter symbols, free meter, missing L:, tempo in compound and cut time, missing Q:.
CUT_TIME = "X:1\nT:Cut Time No L\nM:C|\nQ:1/4=100\nK:G\nGABc dcBA|G8|]"
TWO_FOUR = "X:2\nT:Two Four No L\nM:2/4\nQ:1/4=100\nK:G\nG4 A4|B8|]"
FREE_METER = "X:3\nT:Free Meter\nM:none\nL:1/8\nK:G\nGABc d2 e2 f g a|b4|]"
EIGHTH_TEMPO = "X:4\nT:Eighth Tempo\nM:6/8\nL:1/8\nQ:1/8=120\nK:G\nGAB cBA|G3 G3|]"
NO_TEMPO = "X:5\nT:No Tempo\nM:6/8\nL:1/8\nK:G\nGAB cBA|G3 G3|]"


def tempos(path) -> list[int]:
    return [message.tempo for _, message in meta_events(path, "set_tempo")]


def meters(path) -> list[tuple[int, int, int]]:
    """Return (tick, numerator, denominator) for each time signature."""
    return [
        (tick, message.numerator, message.denominator)
        for tick, message in meta_events(path, "time_signature")
    ]


def test_cut_time_meter_and_tempo(tmp_path):
    result = convert(tmp_path, CUT_TIME)
    assert meters(result.path) == [(0, 2, 2)]
    assert tempos(result.path) == [600000]
    assert result.notes == 9
    # Unit 1/8 from the 2/2 meter: eight eighths, then a whole note.
    assert_quarters(durations(result.path), [0.5] * 8 + [4], qpm=100)
    assert last_note_end(result.path) == pytest.approx(4.8, abs=0.003)


def test_two_four_defaults_to_sixteenths(tmp_path):
    result = convert(tmp_path, TWO_FOUR)
    assert pitches(result.path) == [67, 69, 71]
    assert_quarters(durations(result.path), [1, 1, 2], qpm=100)
    assert last_note_end(result.path) == pytest.approx(2.4, abs=0.003)
    assert result.messages == ()


def test_free_meter_has_no_bar_warnings(tmp_path):
    result = convert(tmp_path, FREE_METER)
    assert result.notes == 10
    assert result.messages == ()
    # abc2midi writes 4/4 for M:none.
    assert meters(result.path) == [(0, 4, 4)]


def test_eighth_note_tempo_in_six_eight(tmp_path):
    result = convert(tmp_path, EIGHTH_TEMPO)
    assert tempos(result.path) == [1000000]
    assert meters(result.path) == [(0, 6, 8)]
    assert result.notes == 8
    assert last_note_end(result.path) == pytest.approx(6.0, abs=0.003)


def test_missing_tempo_uses_quarter_120(tmp_path):
    result = convert(tmp_path, NO_TEMPO)
    assert tempos(result.path) == [500000]
    assert result.notes == 8
    assert last_note_end(result.path) == pytest.approx(3.0, abs=0.0016)


def test_tempo_change_mid_tune(tmp_path):
    tune = "X:1\nT:Slower\nM:4/4\nL:1/4\nQ:1/4=120\nK:C\nCD [Q:1/4=60] EF|]"
    result = convert(tmp_path, tune)
    assert tempos(result.path) == [500000, 1000000]
    notes = midi_notes(result.path)
    assert [start for _, start, _ in notes] == pytest.approx(
        [0, 0.5, 1.0, 2.0], abs=0.003
    )
    assert [length for _, _, length in notes] == pytest.approx(
        [0.5, 0.5, 1.0, 1.0], abs=0.003
    )


# CRLF line endings, a %%MIDI program, comments, then an empty line that ends the
# tune: the bar after it belongs to no tune and must not be converted.
CRLF_TUNE = (
    "X:1\r\nT:Crlf Tune\r\nM:4/4\r\nL:1/8\r\nK:G\r\n%%MIDI program 73\r\n"
    "% a comment line\r\nGABc d2B2| % trailing comment\r\n\r\nc2A2 G4|]\r\n"
)
# No closing bar line, a W: line and no final newline.
NO_FINAL_NEWLINE = (
    "X:2\r\nT:No Final Newline\r\nM:3/4\r\nL:1/4\r\nK:D\r\nF A d|\r\nW:last line words"
)


def test_crlf_tune_program_and_notes(tmp_path):
    result = convert(tmp_path, CRLF_TUNE)
    assert pitches(result.path) == [67, 69, 71, 72, 74, 71]
    programs = [
        message.program
        for track in mido.MidiFile(result.path).tracks
        for message in track
        if message.type == "program_change"
    ]
    assert programs == [73]


def test_no_final_newline_and_words(tmp_path):
    result = convert(tmp_path, NO_FINAL_NEWLINE)
    assert pitches(result.path) == [66, 69, 74]
    assert_quarters(durations(result.path), [1, 1, 1])


# Inline key and meter changes right after a repeat sign and mid-line.
INLINE_FIELDS = """X:1
T:Inline Key After Repeat
M:4/4
L:1/8
K:Gm
|: [K:Bdor] B2 c2 g2 e2 | f2 d2 B4 :| [K:C][M:3/4] B2 e2 f2 | c6 |]"""

# A key change inside voice 1 must not reach voice 2.
VOICE_KEY = """X:2
T:Voice Key Leak
M:4/4
L:1/8
K:Dm
V:1
F2 B2 [K:A] F2 B2 | c8 |]
V:2
F,2 B,2 F,2 B,2 | C8 |]"""


def test_inline_key_and_meter_changes(tmp_path):
    result = convert(tmp_path, INLINE_FIELDS)
    dorian = [71, 73, 80, 76, 78, 74, 71]
    assert pitches(result.path) == dorian * 2 + [71, 76, 77, 72]
    assert_quarters(
        durations(result.path), [1] * 6 + [2] + [1] * 6 + [2] + [1] * 3 + [3]
    )
    assert meters(result.path) == [(0, 4, 4), (16 * 480, 3, 4)]
    assert last_note_end(result.path) == pytest.approx(11.0, abs=0.0016)
    assert result.messages == ()


def test_key_change_stays_in_its_voice(tmp_path):
    result = convert(tmp_path, VOICE_KEY)
    voices = notes_by_channel(result.path)
    assert sorted(voices) == [0, 1]
    assert [pitch for pitch, _ in voices[0]] == [65, 70, 66, 71, 73]
    assert [pitch for pitch, _ in voices[1]] == [53, 58, 53, 58, 60]
    for channel in (0, 1):
        lengths = [ticks / 480 for _, ticks in voices[channel]]
        assert lengths == pytest.approx([1, 1, 1, 1, 4], abs=TOLERANCE_QUARTERS)
    tracks_with_notes = [
        track
        for track in mido.MidiFile(result.path).tracks
        if any(message.type == "note_on" for message in track)
    ]
    assert len(tracks_with_notes) == 2


# Endings [1,2 and [3, a backslash continuation, chord symbols and `::` right
# after a note. Played: pickup, section A three times, then B's two halves twice.
ENDINGS = """X:1
T:Three Endings
M:2/4
L:1/8
K:G
DE|:"G"G2 B2|"D7"A2 F2|\\
"G"G2 d2|[1,2 "C"e2 c2:|[3 "G"g4||
|:"Em"e2 B2|G2 E2::D2 F2|A2 d2:|]"""

ENDINGS_PITCHES = (
    [62, 64]
    + [67, 71, 69, 66, 67, 74, 76, 72] * 2
    + [67, 71, 69, 66, 67, 74, 79]
    + [76, 71, 67, 64] * 2
    + [62, 66, 69, 74] * 2
)


def test_repeats_with_endings(tmp_path):
    result = convert(tmp_path, ENDINGS)
    assert result.notes == 41
    assert pitches(result.path) == ENDINGS_PITCHES
    expected = [0.5, 0.5] + [1] * 16 + [1] * 6 + [2] + [1] * 16
    assert_quarters(durations(result.path), expected)
    assert last_note_end(result.path) == pytest.approx(20.5, abs=0.0016)
    # The one-quarter pickup is not reported as a short bar.
    assert result.messages == ()


def test_chord_symbols_are_accompaniment(tmp_path):
    result = convert(tmp_path, ENDINGS)
    everything = midi_notes(result.path, accompaniment=True)
    assert len(midi_notes(result.path)) == 41
    assert len(everything) > 41
    accompaniment = {pitch for pitch, _, _ in everything} - set(ENDINGS_PITCHES)
    assert accompaniment  # bass and chord notes that the melody never plays


# The lab's style: `!` right before each line end is a line break, not the start of
# a !decoration!; the lone :| repeats from the start.
BANG_LINES = """X:1
T:Bang Line Reel
Z: id:test-1
M:C|
L:1/8
K:G Major
"G"GABc dBAG|"(Am)"A2cA "D7"dcBA|!
"G"G2Bd g2fe|"D"dBAF G4:|!"""


def test_bang_at_line_end_is_line_break(tmp_path):
    result = convert(tmp_path, BANG_LINES)
    assert result.notes == 52
    assert pitches(result.path)[:8] == [67, 69, 71, 72, 74, 71, 69, 67]
    assert meters(result.path) == [(0, 2, 2)]
    assert last_note_end(result.path) == pytest.approx(16.0, abs=0.0016)
    assert result.messages == ()


def test_bang_line_end_then_decoration(tmp_path):
    # A `!` line end followed by a real !accent! decoration on the next line.
    tune = "X:1\nT:t\nM:6/8\nL:1/8\nK:D\nABc def|!\nABc !accent!def|\n"
    result = convert(tmp_path, tune)
    assert pitches(result.path) == [69, 71, 73, 74, 76, 78] * 2


def test_blank_line_in_header_is_dropped(tmp_path):
    tune = "X:1\nT:Gap\n\nM:4/4\nL:1/4\nK:C\nCDEF|]"
    result = convert(tmp_path, tune)
    assert pitches(result.path) == [60, 62, 64, 65]


def test_message_lines_count_dropped_blank_lines(tmp_path):
    tune = "X:1\nT:Gap\n\nM:6/8\nL:1/8\nK:D\nABc def|ABc def g|\n"
    result = convert(tmp_path, tune)
    assert [(m.line, m.column) for m in result.messages] == [(7, 18)]


def test_empty_text_fails(tmp_path):
    result = abc_to_midi("", tmp_path / "a.mid")
    assert not result.ok
    assert result.reason.startswith("abc2midi wrote no MIDI file")


def test_bar_length_warning_parsed(tmp_path):
    tune = "X:1\nT:Long Bar\nM:6/8\nL:1/8\nK:D\nABc def|ABc def g|ABc de|\n"
    result = convert(tmp_path, tune)
    assert result.messages == (
        AbcMessage(
            "warning",
            6,
            18,
            "Track 0 Bar 1 has 7 time units while the time signature has 6",
        ),
        AbcMessage(
            "warning",
            6,
            25,
            "Track 0 Bar 2 has 5 time units while the time signature has 6",
        ),
    )
    assert result.errors == ()
    assert len(result.warnings) == 2


def test_parse_messages_skips_other_output():
    output = (
        "5.02 February 16 2025 abc2midi\n"
        "Error in line-char 6-5 : Unrecognized character: @\n"
        "writing MIDI file tune.mid\n"
        "Error : no position given\n"
    )
    messages = parse_messages(output)
    assert messages == (
        AbcMessage("error", 6, 6, "Unrecognized character: @"),
        AbcMessage("error", None, None, "no position given"),
    )
    assert str(messages[0]) == "line 6, column 6: error: Unrecognized character: @"


def test_tune_without_notes_fails(tmp_path):
    result = abc_to_midi("X:1\nT:Nothing\nM:6/8\nL:1/8\nK:D\n", tmp_path / "a.mid")
    assert not result.ok
    assert result.reason == "abc2midi wrote a MIDI file with no notes"
    assert result.notes == 0
    assert not (tmp_path / "a.mid").exists()


def test_garbage_fails_and_keeps_old_file(tmp_path):
    target = tmp_path / "a.mid"
    target.write_bytes(b"old")
    result = abc_to_midi("hello world, no tune here", target)
    assert not result.ok
    assert result.reason.startswith("abc2midi wrote no MIDI file")
    assert "Possible missing X: field" in result.reason
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["a.mid"]


def test_two_tunes_in_one_text_fail(tmp_path):
    text = SMALL_TUNE + "\nX:2\nT:Second\nK:C\nCDEF|\n"
    result = abc_to_midi(text, tmp_path / "a.mid")
    assert not result.ok
    assert "more than one X: line" in result.reason


def test_timeout_is_reported(tmp_path, monkeypatch):
    def too_slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(abc_midi.subprocess, "run", too_slow)
    result = abc_to_midi(SMALL_TUNE, tmp_path / "a.mid", timeout=2.5)
    assert not result.ok
    assert result.reason == "abc2midi timed out after 2.5 s"


def test_find_abc2midi_prefers_symusic():
    assert find_abc2midi().endswith("symusic/bin/abc2midi")


def test_find_abc2midi_falls_back_to_path(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def no_symusic(name, *args):
        return None if name == "symusic" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_symusic)
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")
    assert find_abc2midi() == "/opt/bin/abc2midi"


def test_missing_abc2midi_names_install_commands(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def no_symusic(name, *args):
        return None if name == "symusic" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_symusic)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RenderError) as caught:
        find_abc2midi()
    assert "pip install symusic" in str(caught.value)
    assert "apt-get install abcmidi" in str(caught.value)
