"""Rendering tunes to ABC, MIDI and WAV files, and the HTML index page."""

from __future__ import annotations

import shutil

import pytest

from abcrnn import render
from abcrnn.abc.midi import midi_duration, midi_notes
from abcrnn.audio import RELEASE_S, read_wav, rms
from abcrnn.errors import ConfigError, RenderError
from abcrnn.render import render_file, render_tunes, write_index_html

# Two small tunes that convert cleanly.
GOOD = "X:1\nT:Small\nM:4/4\nL:1/8\nQ:1/4=120\nK:G\nGABc d2B2|"
SECOND = "X:2\nT:Second\nM:3/4\nL:1/4\nK:D\nF A d|"
# A header with no music: abc2midi writes a MIDI file without notes.
NO_NOTES = "X:3\nT:Nothing\nM:6/8\nL:1/8\nK:D"
# An unclosed chord: abc2midi prints an error but still writes a MIDI file.
UNCLOSED = "X:4\nT:Unclosed\nM:3/4\nL:1/8\nK:C\nc2 B2 A2|[Ac4 B2|G2 F2 E2|]"


def names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_each_tune_gets_three_files(tmp_path):
    report = render_tunes([GOOD, SECOND], tmp_path, backend="sine")
    assert report.failed == 0
    assert report.backends == ("sine",)
    assert names(tmp_path) == [
        "tune-01.abc",
        "tune-01.mid",
        "tune-01.wav",
        "tune-02.abc",
        "tune-02.mid",
        "tune-02.wav",
    ]
    first = report.tunes[0]
    assert (first.index, first.title, first.ok, first.reason) == (1, "Small", True, "")
    assert first.abc_path.read_text() == GOOD + "\n"
    assert first.abc == GOOD + "\n"
    assert first.backend == "sine"
    assert first.seconds == midi_duration(first.midi_path)
    pitches = [pitch for pitch, _, _ in midi_notes(first.midi_path)]
    assert pitches == [67, 69, 71, 72, 74, 71]


def test_wav_matches_midi_length(tmp_path):
    report = render_tunes([GOOD, SECOND], tmp_path)
    for tune in report.tunes:
        samples, rate = read_wav(tune.wav_path)
        assert len(samples) == round((tune.seconds + RELEASE_S) * rate)
        assert rms(samples) > 0.01


def test_failing_tune_does_not_stop_others(tmp_path):
    report = render_tunes([GOOD, NO_NOTES, SECOND], tmp_path, backend="sine")
    assert report.failed == 1
    assert [tune.ok for tune in report.tunes] == [True, False, True]
    failed = report.tunes[1]
    assert failed.title == "Nothing"
    assert failed.reason == "abc2midi wrote a MIDI file with no notes"
    assert (failed.midi_path, failed.wav_path, failed.backend) == (None, None, None)
    assert failed.abc_path.read_text() == NO_NOTES + "\n"
    assert "tune-02.mid" not in names(tmp_path)
    assert "tune-03.wav" in names(tmp_path)


def test_failed_tune_removes_stale_files(tmp_path):
    (tmp_path / "tune-01.mid").write_bytes(b"from an earlier run")
    (tmp_path / "tune-01.wav").write_bytes(b"from an earlier run")
    report = render_tunes([NO_NOTES], tmp_path, backend="sine")
    assert report.failed == 1
    assert names(tmp_path) == ["tune-01.abc"]


def test_strict_fails_on_abc2midi_error(tmp_path):
    lenient = render_tunes([UNCLOSED], tmp_path / "lenient", backend="sine")
    assert lenient.failed == 0
    assert [m.kind for m in lenient.tunes[0].messages].count("error") == 1

    strict = render_tunes([UNCLOSED], tmp_path / "strict", backend="sine", strict=True)
    assert strict.failed == 1
    assert strict.tunes[0].reason == (
        "abc2midi reported an error: line 7, column 26: error: "
        "Sustained notes beyond end of track"
    )
    assert names(tmp_path / "strict") == ["tune-01.abc"]


def test_title_defaults_to_tune_number(tmp_path):
    untitled = "X:1\nM:4/4\nL:1/4\nK:C\nCDEF|"
    report = render_tunes([GOOD, untitled], tmp_path, stem="song", backend="sine")
    assert [tune.title for tune in report.tunes] == ["Small", "Tune 2"]
    assert report.tunes[1].abc_path.name == "song-02.abc"


def test_numbering_widens_past_99(tmp_path, monkeypatch):
    bases = []

    def record(tune, index, base, backend, sample_rate, strict):
        bases.append(base.name)

    monkeypatch.setattr(render, "_render_one", record)
    render_tunes([GOOD] * 120, tmp_path)
    assert bases[0] == "tune-001"
    assert bases[-1] == "tune-120"


def test_crlf_tune_written_with_lf(tmp_path):
    report = render_tunes([GOOD.replace("\n", "\r\n")], tmp_path, backend="sine")
    assert report.tunes[0].abc_path.read_bytes() == (GOOD + "\n").encode()


def test_missing_backend_raises_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RenderError, match="'timidity' is not installed"):
        render_tunes([GOOD], tmp_path / "out", backend="timidity")
    assert not (tmp_path / "out").exists()


def test_bad_sample_rate_raises_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="sample rate 100 Hz"):
        render_tunes([GOOD], tmp_path / "out", sample_rate=100)
    assert not (tmp_path / "out").exists()


# CRLF file: tune 1 ends at the empty line, so the bar after it belongs to no tune;
# tune 2 has no final newline.
CRLF_FILE = (
    "X:1\r\nT:Crlf Tune\r\nM:4/4\r\nL:1/8\r\nK:G\r\n%%MIDI program 73\r\n"
    "% a comment line\r\nGABc d2B2| % trailing comment\r\n\r\nc2A2 G4|]\r\n\r\n"
    "X:2\r\nT:No Final Newline\r\nM:3/4\r\nL:1/4\r\nK:D\r\nF A d|\r\n"
    "W:last line words"
)


def test_render_file_writes_beside_input(tmp_path):
    source = tmp_path / "songs.abc"
    source.write_bytes(CRLF_FILE.encode())
    report = render_file(source, backend="sine")
    assert report.out_dir == tmp_path
    assert report.failed == 0
    assert [tune.title for tune in report.tunes] == ["Crlf Tune", "No Final Newline"]
    first, second = report.tunes
    assert first.abc_path == tmp_path / "songs-01.abc"
    assert [p for p, _, _ in midi_notes(first.midi_path)] == [67, 69, 71, 72, 74, 71]
    assert [p for p, _, _ in midi_notes(second.midi_path)] == [66, 69, 74]
    assert "c2A2" not in first.abc_path.read_text()
    assert "\r" not in first.abc_path.read_text()


def test_render_file_to_out_dir(tmp_path):
    source = tmp_path / "songs.abc"
    source.write_text(GOOD + "\n\n" + SECOND + "\n")
    report = render_file(source, tmp_path / "out", backend="sine")
    assert report.out_dir == tmp_path / "out"
    assert names(tmp_path / "out")[0] == "songs-01.abc"
    assert names(tmp_path) == ["out", "songs.abc"]


def test_render_file_stem_with_dot(tmp_path):
    source = tmp_path / "set.v2.abc"
    source.write_text(GOOD)
    render_file(source, tmp_path / "out", backend="sine")
    assert names(tmp_path / "out") == [
        "set.v2-01.abc",
        "set.v2-01.mid",
        "set.v2-01.wav",
    ]


def test_render_file_missing(tmp_path):
    with pytest.raises(RenderError, match="failed to read ABC file"):
        render_file(tmp_path / "missing.abc")


def test_render_file_without_tunes(tmp_path):
    source = tmp_path / "notes.abc"
    source.write_text("just some words\nand no X: field at a line start\n")
    with pytest.raises(RenderError, match="no tunes found"):
        render_file(source)


TRICKY = 'X:1\nT:Fish & <Chips>\nM:4/4\nL:1/4\nK:C\n"<b>"CDEF|'


def test_index_page_content(tmp_path):
    report = render_tunes([TRICKY, NO_NOTES], tmp_path, backend="sine")
    page = write_index_html(report, tmp_path, "Set <1>", extra_html="<p id=x>hi</p>")
    text = page.read_text()
    assert page == tmp_path / "index.html"
    assert "<title>Set &lt;1&gt;</title>" in text
    assert "<h2>1. Fish &amp; &lt;Chips&gt;</h2>" in text
    assert '<audio controls preload="none" src="tune-01.wav"></audio>' in text
    assert '<a href="tune-01.abc">ABC</a>' in text
    assert '<a href="tune-01.mid">MIDI</a>' in text
    assert '"&lt;b&gt;"CDEF|' in text
    assert "<b>" not in text
    assert "Not rendered: abc2midi wrote a MIDI file with no notes" in text
    assert "tune-02.wav" not in text
    assert "<p id=x>hi</p>" in text
    assert "2 tunes, 1 failed." in text
    assert str(tmp_path) not in text
    assert names(tmp_path).count("index.html") == 1
    assert not [name for name in names(tmp_path) if name.endswith(".tmp")]


def test_index_lists_abc2midi_messages(tmp_path):
    report = render_tunes([UNCLOSED], tmp_path, backend="sine")
    text = write_index_html(report, tmp_path, "Messages").read_text()
    assert "<summary>6 abc2midi messages</summary>" in text
    assert (
        "<li>line 7, column 26: error: Sustained notes beyond end of track</li>" in text
    )


def test_index_links_relative_to_page_folder(tmp_path):
    report = render_tunes([GOOD], tmp_path / "media", stem="my tune", backend="sine")
    text = write_index_html(report, tmp_path, "Links").read_text()
    assert 'src="media/my%20tune-01.wav"' in text
