"""The report of a study: PNG plots, report.md, a self-contained report.html, HParams.

Written to study_dir/report/ from the run summaries, so it can be redrawn at any
time (`abcrnn sweep --report-only`). report.html embeds the plots and the first
CLIP_SECONDS of each sample tune's audio. When abcjs is installed with npm, it
also embeds the abcjs script, which draws each tune as sheet music. Without
abcjs the page shows the ABC text only. TensorBoard's HParams view reads
study_dir/tb.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abcrnn.atomic import atomic_path, write_text_atomic
from abcrnn.sweep import RUNS_FOLDER, Factor, StudySpec, design_values, format_value
from abcrnn.sweep import run_name as design_name
from abcrnn.sweep_analysis import MEASURES, analyse, line_runs
from abcrnn.sweep_scoring import read_summary

REPORT_FOLDER = "report"
TENSORBOARD_FOLDER = "tb"
CLIP_SECONDS = 10.0
ABCJS_ENV = "ABCRNN_ABCJS"
ABCJS_FILE = Path("node_modules", "abcjs", "dist", "abcjs-basic-min.js")


@dataclass(frozen=True)
class ReportFiles:
    """The files a report consists of."""

    markdown: Path
    html: Path
    images: tuple[Path, ...]


def collect_runs(study_dir: Path, spec: StudySpec) -> list[dict[str, Any]]:
    """Return the summaries of the scored runs: design order, then by name."""
    folder = Path(study_dir) / RUNS_FOLDER
    found = {}
    for run_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        summary = read_summary(run_dir)
        if summary is not None:
            found[run_dir.name] = summary | {"run_dir": str(run_dir)}
    order = [] if spec.searches else [design_name(v) for v in design_values(spec)]
    ordered = [found.pop(name) for name in order if name in found]
    return ordered + [found[name] for name in sorted(found)]


def write_report(study_dir: Path, spec: StudySpec) -> ReportFiles:
    """Write the plots, report.md, report.html and the HParams event files."""
    study_dir = Path(study_dir)
    out = study_dir / REPORT_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(study_dir, spec)
    images: list[Path] = []
    for factor in spec.factors:
        images.append(plot_curves(line_runs(runs, spec, factor), factor, out))
        images.append(plot_effects(runs, spec, factor, out))
    analysis = analyse(runs, spec)
    markdown = write_text_atomic(
        out / "report.md", render_markdown(spec, runs, analysis, images)
    )
    page = write_text_atomic(
        out / "report.html", render_html(spec, runs, analysis, images)
    )
    write_hparams(study_dir / TENSORBOARD_FOLDER, runs, spec)
    return ReportFiles(markdown, page, tuple(images))


def _figure(columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * columns if columns > 1 else 7, 3.6), dpi=100)
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def plot_curves(runs: list[dict], factor: Factor, out: Path) -> Path:
    """Draw validation bits/char against characters seen, one line per run."""
    figure, (axes,) = _figure()
    for run in sorted(runs, key=lambda r: _sort_key(r["values"][factor.name])):
        if run["curve"]:
            chars, bpc = zip(*run["curve"], strict=True)
            label = f"{factor.name}={format_value(run['values'][factor.name])}"
            axes.plot([c / 1e6 for c in chars], bpc, marker=".", label=label)
    axes.set_xlabel("training characters seen (millions)")
    axes.set_ylabel("validation bits/char")
    axes.set_title(f"validation curves: {factor.name}")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8)
    return _save(figure, out / f"curves-{factor.name}.png")


def plot_effects(runs: list[dict], spec: StudySpec, factor: Factor, out: Path) -> Path:
    """Draw each measure against the factor's value, one panel per measure."""
    chosen = line_runs(runs, spec, factor) if spec.mode == "ofat" else runs
    points = sorted(
        ((run["values"][factor.name], run) for run in chosen),
        key=lambda pair: _sort_key(pair[0]),
    )
    values = [value for value, _ in points]
    numeric = all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )
    labels = sorted({format_value(v) for v in values})
    figure, panels = _figure(len(MEASURES))
    for axes, (measure, title) in zip(panels, MEASURES.items(), strict=True):
        pairs = [(v, run[measure]) for v, run in points if run.get(measure) is not None]
        xs = [v if numeric else labels.index(format_value(v)) for v, _ in pairs]
        axes.plot(
            xs,
            [y for _, y in pairs],
            marker="o",
            linestyle="-" if (spec.mode == "ofat") else "none",
        )
        if numeric and values and min(values) > 0 and max(values) >= 4 * min(values):
            axes.set_xscale("log")
            axes.minorticks_off()
        if numeric and len(set(values)) <= 6:
            ticks = sorted(set(values))
            axes.set_xticks(ticks, [format_value(tick) for tick in ticks])
        elif not numeric:
            axes.set_xticks(range(len(labels)), labels)
        axes.set_xlabel(factor.name)
        axes.set_title(title, fontsize=9)
        axes.grid(alpha=0.3)
    return _save(figure, out / f"effects-{factor.name}.png")


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


TABLE_COLUMNS = (
    ("status", "status"),
    ("steps", "steps"),
    ("chars_seen", "chars seen (M)"),
    ("chars_per_s", "chars/s"),
    ("best_val_bpc", "best val bits/char"),
    ("best_step", "at step"),
    ("last_val_bpc", "last val bits/char"),
    ("valid_tune_share", "valid tunes"),
    ("ended_tune_share", "ended tunes"),
    ("train_seconds", "train time (s)"),
)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    formats = {
        "chars_seen": lambda v: f"{v / 1e6:.2f}",
        "chars_per_s": lambda v: f"{v:,.0f}",
        "best_val_bpc": lambda v: f"{v:.3f}",
        "last_val_bpc": lambda v: f"{v:.3f}",
        "valid_tune_share": lambda v: f"{v:.0%}",
        "ended_tune_share": lambda v: f"{v:.0%}",
        "train_seconds": lambda v: f"{v:.0f}",
    }
    return formats.get(key, str)(value)


def table_rows(runs: list[dict], spec: StudySpec) -> tuple[list[str], list[list[str]]]:
    """Return the header and the cells of the table of all runs."""
    header = ["#"] + [factor.name for factor in spec.factors]
    header += [title for _, title in TABLE_COLUMNS]
    rows = []
    for index, run in enumerate(runs, start=1):
        cells = [str(index)]
        cells += [format_value(run["values"].get(f.name, "")) for f in spec.factors]
        cells += [_cell(key, run.get(key)) for key, _ in TABLE_COLUMNS]
        rows.append(cells)
    return header, rows


def setup_lines(spec: StudySpec, runs: list[dict]) -> list[str]:
    """Return the study's settings as short lines of text."""
    base = ", ".join(f"{n}={format_value(v)}" for n, v in spec.base) or "none"
    factors = "; ".join(_factor_text(factor) for factor in spec.factors)
    total = sum(run.get("train_seconds") or 0 for run in runs)
    return [
        f"Mode: {spec.mode}; {len(runs)} run(s) scored.",
        f"Base: preset {spec.preset}, overrides: {base}.",
        f"Factors: {factors}.",
        f"Budget per run: {spec.budget.describe()}; {spec.evals} validations per run.",
        f"Checker: {spec.num_check_tunes} tunes sampled from each best checkpoint.",
        f"Training time of all runs: {total / 60:.1f} min (from characters/s).",
    ]


def _factor_text(factor: Factor) -> str:
    if factor.is_range:
        scale = ", log scale" if factor.log else ""
        return f"{factor.name} in [{factor.low:g}, {factor.high:g}]{scale}"
    return f"{factor.name} = " + ", ".join(format_value(v) for v in factor.values)


def render_markdown(
    spec: StudySpec, runs: list[dict], analysis: list[str], images: list[Path]
) -> str:
    """Return report.md: setup, analysis, plots, the table of runs, sample tunes."""
    lines = ["# Study report", ""]
    lines += [f"- {line}" for line in setup_lines(spec, runs)] + ["", "## Analysis", ""]
    for paragraph in analysis:
        lines += [paragraph, ""]
    lines += ["## Plots", ""]
    lines += [f"![{image.stem}]({image.name})" for image in images] + [""]
    header, rows = table_rows(runs, spec)
    lines += ["## Runs", "", _md_row(header), _md_row(["---"] * len(header))]
    lines += [_md_row(row) for row in rows] + ["", "## Sample tunes", ""]
    for index, run in enumerate(runs, start=1):
        lines += [f"### {index}. {run['name']}", ""]
        if run.get("sample_abc"):
            lines += ["```abc", run["sample_abc"], "```", "", _audio_note(run), ""]
        else:
            lines += ["No tune was sampled (the run has no best checkpoint).", ""]
    return "\n".join(lines)


def _audio_note(run: dict) -> str:
    if not run.get("sample_wav"):
        return f"Audio: not rendered ({run.get('sample_error', 'no WAV file')})."
    wav = f"{RUNS_FOLDER}/{run['name']}/{run['sample_wav']}"
    return f"Audio: {wav} in the study folder; report.html plays it."


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_STYLE = """
body { font-family: sans-serif; max-width: 64rem; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }
section { border-top: 1px solid #ccc; padding: 0.5rem 0 1rem; }
audio { width: 100%; }
"""


def render_html(
    spec: StudySpec, runs: list[dict], analysis: list[str], images: list[Path]
) -> str:
    """Return report.html with every plot, audio clip and script embedded."""
    parts = ["<h1>Study report</h1>", "<ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in setup_lines(spec, runs)]
    parts += ["</ul>", "<h2>Analysis</h2>"]
    parts += [f"<p>{_inline_markdown(paragraph)}</p>" for paragraph in analysis]
    parts.append("<h2>Plots</h2>")
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        parts.append(f'<p><img alt="{image.stem}" src="data:image/png;base64,{data}">')
    header, rows = table_rows(runs, spec)
    parts += ["<h2>Runs</h2>", "<table>", _html_row(header, "th")]
    parts += [_html_row(row, "td") for row in rows] + ["</table>"]
    parts.append("<h2>Sample tunes</h2>")
    parts += [_tune_section(index, run) for index, run in enumerate(runs, start=1)]
    script = _abcjs_script()
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Study report</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n{script}</body>\n</html>\n"
    )


def _inline_markdown(text: str) -> str:
    escaped = html.escape(text)
    pieces = escaped.split("**")
    return "".join(
        f"<strong>{piece}</strong>" if index % 2 else piece
        for index, piece in enumerate(pieces)
    )


def _html_row(cells: list[str], tag: str) -> str:
    inner = "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in cells)
    return f"<tr>{inner}</tr>"


def _tune_section(index: int, run: dict) -> str:
    lines = ["<section>", f"<h3>{index}. {html.escape(run['name'])}</h3>"]
    abc = run.get("sample_abc")
    if not abc:
        lines.append("<p>No tune was sampled (the run has no best checkpoint).</p>")
        return "\n".join(lines + ["</section>"])
    lines.append(f'<div class="sheet" id="sheet-{index}"></div>')
    lines.append(f'<pre class="abc">{html.escape(abc)}</pre>')
    wav = Path(run["run_dir"]) / run["sample_wav"] if run.get("sample_wav") else None
    if wav is not None and wav.is_file():
        data = base64.b64encode(clip_wav(wav, CLIP_SECONDS)).decode("ascii")
        lines.append(f'<audio controls src="data:audio/wav;base64,{data}"></audio>')
    else:
        reason = run.get("sample_error") or "the WAV file is missing"
        lines.append(f"<p>No audio: {html.escape(reason)}</p>")
    return "\n".join(lines + ["</section>"])


def clip_wav(path: Path, seconds: float) -> bytes:
    """Return the first `seconds` of a WAV file as the bytes of a new WAV file."""
    with wave.open(str(path), "rb") as source:
        params = source.getparams()
        frames = source.readframes(int(seconds * params.framerate))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as target:
        target.setparams(params)
        target.writeframes(frames)
    return buffer.getvalue()


def find_abcjs() -> Path | None:
    """Return abcjs's browser bundle: $ABCRNN_ABCJS, else node_modules of the checkout
    or of the current folder; None when it is missing."""
    configured = os.environ.get(ABCJS_ENV)
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (repo_root / ABCJS_FILE, Path.cwd() / ABCJS_FILE):
        if candidate.is_file():
            return candidate
    return None


def _abcjs_script() -> str:
    """Return the inlined abcjs bundle and the call that draws each tune, or ""."""
    path = find_abcjs()
    if path is None:
        return ""
    # "</script" would end the script element early. In JavaScript strings and
    # regular expressions "<\/script" means the same.
    source = re.sub(
        "</(script)", r"<\\/\1", path.read_text(encoding="utf-8"), flags=re.I
    )
    draw = (
        "document.querySelectorAll('div.sheet').forEach(function (div) {\n"
        "  var abc = div.nextElementSibling.textContent;\n"
        "  ABCJS.renderAbc(div, abc, {responsive: 'resize'});\n"
        "});\n"
    )
    return f"<script>\n{source}\n</script>\n<script>\n{draw}</script>\n"


def write_hparams(tb_dir: Path, runs: list[dict], spec: StudySpec) -> None:
    """Write one TensorBoard run per study run: its curve, factor values, results."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(tb_dir, ignore_errors=True)
    for run in runs:
        writer = SummaryWriter(str(Path(tb_dir) / run["name"]))
        for chars, bpc in run["curve"]:
            writer.add_scalar("validation/bits_per_char", bpc, chars)
        hparams = {f.name: run["values"].get(f.name) for f in spec.factors}
        hparams["steps"] = run["planned_steps"]
        metrics = {
            f"hparam/{key}": float(run[key])
            for key in (
                "best_val_bpc",
                "last_val_bpc",
                "chars_per_s",
                "valid_tune_share",
            )
            if run.get(key) is not None
        }
        writer.add_hparams(hparams, metrics, run_name=".")
        writer.close()
