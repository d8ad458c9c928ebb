"""Render tunes to files: ABC, MIDI and WAV for each tune, and an HTML index page.

Each tune is converted on its own, so one that abc2midi cannot convert is reported
with the reason while the others still render.
"""

from __future__ import annotations

import html
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from abcrnn.abc.midi import AbcMessage, abc_to_midi, midi_duration
from abcrnn.abc.tunes import header_fields, normalise_newlines, split_tunes
from abcrnn.atomic import write_text_atomic
from abcrnn.audio import check_sample_rate, midi_to_wav, resolve_backends
from abcrnn.errors import RenderError


@dataclass(frozen=True)
class TuneRender:
    """Files and outcome for one tune. Paths are None for files not written."""

    index: int  # 1-based position in the input
    title: str
    abc: str  # the tune's ABC text as written to abc_path
    abc_path: Path
    midi_path: Path | None
    wav_path: Path | None
    backend: str | None  # the audio backend that wrote wav_path
    ok: bool
    reason: str  # why the tune failed; "" when ok
    messages: tuple[AbcMessage, ...]  # abc2midi's warnings and errors
    seconds: float  # playing time of the MIDI file (0.0 when there is none)


@dataclass(frozen=True)
class RenderReport:
    """Outcome of rendering a list of tunes into `out_dir`."""

    out_dir: Path
    tunes: tuple[TuneRender, ...]

    @property
    def failed(self) -> int:
        """Return the number of tunes that did not render."""
        return sum(not tune.ok for tune in self.tunes)

    @property
    def backends(self) -> tuple[str, ...]:
        """Return the audio backends used, in order of first use."""
        return tuple(dict.fromkeys(t.backend for t in self.tunes if t.backend))


def tune_title(tune: str, index: int) -> str:
    """Return the tune's first T: field, or "Tune N" when it has none."""
    return header_fields(tune).get("T") or f"Tune {index}"


def render_tunes(
    tunes: list[str],
    out_dir: str | os.PathLike[str],
    stem: str = "tune",
    backend: str = "auto",
    sample_rate: int = 44100,
    strict: bool = False,
) -> RenderReport:
    """Write <stem>-01.abc, .mid and .wav for each tune into `out_dir`.

    `out_dir` is created if needed. `sample_rate` is in Hz. With `strict`, a tune is
    also reported as failed when abc2midi printed an error although it wrote a MIDI
    file. Files of a failed tune that an earlier run left behind are removed, so
    they never pass for the new tune's output. Raises RenderError before writing
    anything when the requested audio backend is missing, and ConfigError for a
    sample rate out of range.
    """
    check_sample_rate(sample_rate)
    resolve_backends(backend)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(tunes))))
    results = []
    for index, tune in enumerate(tunes, start=1):
        name = f"{stem}-{index:0{width}d}"
        results.append(
            _render_one(tune, index, out / name, backend, sample_rate, strict)
        )
    return RenderReport(out, tuple(results))


def _render_one(
    tune: str, index: int, base: Path, backend: str, sample_rate: int, strict: bool
) -> TuneRender:
    """Write one tune's ABC, MIDI and WAV as `base` plus .abc, .mid and .wav."""
    abc = normalise_newlines(tune).rstrip("\n") + "\n"
    # Not with_suffix: a stem such as "set.v2" would lose its ".v2".
    abc_path = write_text_atomic(base.with_name(f"{base.name}.abc"), abc)
    midi_path = base.with_name(f"{base.name}.mid")
    wav_path = base.with_name(f"{base.name}.wav")
    entry: dict[str, object] = {
        "index": index,
        "title": tune_title(abc, index),
        "abc": abc,
        "abc_path": abc_path,
    }

    result = abc_to_midi(abc, midi_path)
    reason = result.reason
    if result.ok and strict and result.errors:
        reason = f"abc2midi reported an error: {result.errors[0]}"
    if reason:
        midi_path.unlink(missing_ok=True)
        wav_path.unlink(missing_ok=True)
        return _failed(entry, reason, result.messages)

    try:
        used = midi_to_wav(midi_path, wav_path, backend, sample_rate)
    except RenderError as error:
        wav_path.unlink(missing_ok=True)
        return _failed(entry, str(error), result.messages, midi_path)
    return TuneRender(
        **entry,
        midi_path=midi_path,
        wav_path=wav_path,
        backend=used,
        ok=True,
        reason="",
        messages=result.messages,
        seconds=midi_duration(midi_path),
    )


def _failed(
    entry: dict[str, object],
    reason: str,
    messages: tuple[AbcMessage, ...],
    midi_path: Path | None = None,
) -> TuneRender:
    seconds = midi_duration(midi_path) if midi_path else 0.0
    return TuneRender(
        **entry,
        midi_path=midi_path,
        wav_path=None,
        backend=None,
        ok=False,
        reason=reason,
        messages=messages,
        seconds=seconds,
    )


def render_file(
    abc_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    sample_rate: int = 44100,
    strict: bool = False,
) -> RenderReport:
    """Split an ABC file into tunes and render each with `render_tunes`.

    Output goes to `out_dir`, by default the folder of `abc_path`, and file names
    start with the ABC file's stem (songs.abc -> songs-01.abc, songs-01.mid, ...).
    Raises RenderError when the file cannot be read or contains no tune.
    """
    path = Path(abc_path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise RenderError(
            f"failed to read ABC file {path}: {error.strerror}"
        ) from error
    tunes = split_tunes(text).tunes
    if not tunes:
        raise RenderError(
            f"no tunes found in {path}: each tune must start with an X: line"
        )
    target = Path(out_dir) if out_dir is not None else path.parent
    return render_tunes(tunes, target, path.stem, backend, sample_rate, strict)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 52rem; margin: 2em auto; padding: 0 1em; }}
section {{ border-top: 1px solid #ccc; padding: 0.5rem 0 1rem; }}
pre {{ background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }}
audio {{ width: 100%; }}
.failed {{ color: #a00; }}
.messages {{ font-size: 0.9em; color: #555; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{summary}</p>
{extra}{sections}</body>
</html>
"""


def write_index_html(
    report: RenderReport,
    out_dir: str | os.PathLike[str],
    title: str,
    extra_html: str = "",
) -> Path:
    """Write out_dir/index.html listing each tune's title, audio player, files and ABC.

    Links are relative to `out_dir`, so the folder can be moved or served as is. All
    text from the tunes is HTML-escaped. `extra_html` is inserted unescaped after
    the summary line. The page uses no scripts. Returns the path of the page.
    """
    out = Path(out_dir)
    count = len(report.tunes)
    summary = f"{count} tune{'s' if count != 1 else ''}, {report.failed} failed."
    sections = "".join(_tune_section(tune, out) for tune in report.tunes)
    page = _PAGE.format(
        title=html.escape(title),
        summary=html.escape(summary),
        extra=f"{extra_html}\n" if extra_html else "",
        sections=sections,
    )
    return write_text_atomic(out / "index.html", page)


def _tune_section(tune: TuneRender, out: Path) -> str:
    """Return the HTML section for one tune."""
    anchor = html.escape(tune.abc_path.stem, quote=True)
    lines = [
        f'<section id="{anchor}">',
        f"<h2>{tune.index}. {html.escape(tune.title)}</h2>",
    ]
    if tune.ok and tune.wav_path is not None:
        source = _href(tune.wav_path, out)
        lines.append(f'<audio controls preload="none" src="{source}"></audio>')
    else:
        lines.append(f'<p class="failed">Not rendered: {html.escape(tune.reason)}</p>')

    links = [f'<a href="{_href(tune.abc_path, out)}">ABC</a>']
    if tune.midi_path is not None:
        links.append(f'<a href="{_href(tune.midi_path, out)}">MIDI</a>')
    if tune.wav_path is not None:
        links.append(f'<a href="{_href(tune.wav_path, out)}">WAV</a>')
    details = [f"{tune.seconds:.1f} s"] if tune.seconds else []
    details += [f"audio: {tune.backend}"] if tune.backend else []
    lines.append(f"<p>{' | '.join(links + details)}</p>")

    if tune.messages:
        count = len(tune.messages)
        summary = f"{count} abc2midi message{'s' if count != 1 else ''}"
        items = "".join(f"<li>{html.escape(str(m))}</li>" for m in tune.messages)
        lines.append(
            f'<details class="messages"><summary>{summary}</summary>'
            f"<ul>{items}</ul></details>"
        )
    lines.append(
        f'<pre class="abc">{html.escape(tune.abc.rstrip(), quote=False)}</pre>'
    )
    lines.append("</section>")
    return "\n".join(lines) + "\n"


def _href(path: Path, out: Path) -> str:
    """Return a URL for `path` relative to the page folder, quoted and escaped."""
    relative = Path(os.path.relpath(path, out)).as_posix()
    return html.escape(urllib.parse.quote(relative), quote=True)
