"""Metric sinks of a run: log lines, metrics.csv, loss.png, TensorBoard, Comet.

A `Tracker` fans each call out to its sinks. Metric names are the metrics.csv
columns: train_loss, val_loss (nats per character), val_bpc (bits per character),
tokens_per_s (training characters per second), lr and valid_tune_share.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
import wave
from pathlib import Path
from typing import Any

from abcrnn.atomic import atomic_path
from abcrnn.errors import ConfigError

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "step",
    "train_loss",
    "val_loss",
    "val_bpc",
    "tokens_per_s",
    "lr",
    "valid_tune_share",
)


class Tracker:
    """Send metrics, texts, audio and settings to every sink of a run."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Record the numbers measured at `step`."""
        for sink in self.sinks:
            sink.log_metrics(step, metrics)

    def log_text(self, step: int, name: str, text: str) -> None:
        """Record a text, such as tunes sampled at `step`."""
        for sink in self.sinks:
            sink.log_text(step, name, text)

    def log_audio(self, step: int, name: str, wav_path: Path) -> None:
        """Record a WAV file rendered at `step`."""
        for sink in self.sinks:
            sink.log_audio(step, name, wav_path)

    def log_params(self, params: dict[str, Any]) -> None:
        """Record the run's settings (flat dict of plain values)."""
        for sink in self.sinks:
            sink.log_params(params)

    def close(self, final: dict[str, float]) -> None:
        """Record the final metrics and release the sinks."""
        for sink in self.sinks:
            sink.close(final)


class Sink:
    """A sink that ignores everything; subclasses override what they record."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_text(self, step: int, name: str, text: str) -> None:
        pass

    def log_audio(self, step: int, name: str, wav_path: Path) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def close(self, final: dict[str, float]) -> None:
        pass


class LogSink(Sink):
    """Write one log line per metrics record (logger `abcrnn.tracking`)."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        log.info(format_metrics(step, self.total_steps, metrics))


def format_metrics(step: int, total_steps: int, metrics: dict[str, float]) -> str:
    """Return a one-line summary such as `step 100/3000 | loss 1.234 | ...`."""
    parts = [f"step {step}/{total_steps}"]
    if "train_loss" in metrics:
        parts.append(f"loss {metrics['train_loss']:.4f}")
    if "val_loss" in metrics:
        parts.append(f"val {metrics['val_loss']:.4f} ({metrics['val_bpc']:.3f} bpc)")
    if "valid_tune_share" in metrics:
        parts.append(f"valid tunes {metrics['valid_tune_share']:.0%}")
    if "tokens_per_s" in metrics:
        parts.append(f"{metrics['tokens_per_s']:,.0f} char/s")
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.2e}")
    return " | ".join(parts)


class CsvSink(Sink):
    """Append rows to metrics.csv; on resume, drop rows after the resumed step.

    Rows after the resumed step can exist when a run stopped after logging but
    before its next checkpoint; those steps are trained again.
    """

    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = path
        rows = read_metrics(path) if resume_step and path.exists() else []
        kept = [row for row in rows if int(row["step"]) <= resume_step]
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        row = {name: _csv_value(metrics.get(name)) for name in CSV_COLUMNS}
        row["step"] = step
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, CSV_COLUMNS).writerow(row)


def _csv_value(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Return the rows of a metrics.csv as dicts of strings."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


class PlotSink(Sink):
    """Redraw loss.png from metrics.csv when a validation loss arrives, and at the end.

    A drawing takes about half a second, so after one drawing the next waits at
    least `min_seconds`; the drawing at the end is never skipped.
    """

    def __init__(self, csv_path: Path, png_path: Path, min_seconds: float = 5.0):
        self.csv_path = csv_path
        self.png_path = png_path
        self.min_seconds = min_seconds
        self.last_step = 0
        self.drawn_step = 0
        self.drawn_at = -math.inf

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.last_step = step
        waited = time.monotonic() - self.drawn_at
        if "val_loss" in metrics and waited >= self.min_seconds:
            self._draw()

    def close(self, final: dict[str, float]) -> None:
        if self.last_step != self.drawn_step:
            self._draw()

    def _draw(self) -> None:
        plot_losses(self.csv_path, self.png_path)
        self.drawn_step = self.last_step
        self.drawn_at = time.monotonic()


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Draw training and validation loss (nats per character) against step.

    When metrics.csv has valid_tune_share values, they go on a right-hand axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = read_metrics(csv_path)
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    for column, label in (("train_loss", "training"), ("val_loss", "validation")):
        points = [(int(row["step"]), float(row[column])) for row in rows if row[column]]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(
                steps, values, label=label, marker="." if len(points) < 30 else ""
            )
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per character)")
    axes.grid(alpha=0.3)
    has_share = _plot_valid_share(axes, rows)
    if rows:
        handles, labels = [], []
        for each in figure.axes:
            more_handles, more_labels = each.get_legend_handles_labels()
            handles += more_handles
            labels += more_labels
        axes.legend(handles, labels)
    # Fixed margins: tight_layout would measure every label and take several times
    # as long as the drawing itself.
    right = 0.89 if has_share else 0.97
    figure.subplots_adjust(left=0.11, right=right, bottom=0.13, top=0.96)
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, format="png")


def _plot_valid_share(axes, rows: list[dict[str, str]]) -> bool:
    """Draw valid_tune_share on a right-hand axis from 0 to 1; False if absent."""
    points = [
        (int(row["step"]), float(row["valid_tune_share"]))
        for row in rows
        if row.get("valid_tune_share")
    ]
    if not points:
        return False
    steps, values = zip(*points, strict=True)
    share_axes = axes.twinx()
    share_axes.plot(
        steps, values, "g--", marker="o", markersize=3, label="valid tunes (share)"
    )
    share_axes.set_ylim(0, 1)
    share_axes.set_ylabel("share of sampled tunes that pass the checker")
    return True


class TensorBoardSink(Sink):
    """Write TensorBoard event files under run_dir/tb."""

    TAGS = {
        "train_loss": "loss/train",
        "val_loss": "loss/validation",
        "val_bpc": "bits_per_char/validation",
        "tokens_per_s": "speed/chars_per_s",
        "lr": "lr",
        "valid_tune_share": "tunes/valid_share",
    }

    def __init__(self, folder: Path, resume_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides events a stopped run wrote after its last checkpoint.
        self.writer = SummaryWriter(str(folder), purge_step=resume_step + 1)
        self.params: dict[str, Any] = {}

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(self.TAGS.get(name, name), value, step)

    def log_text(self, step: int, name: str, text: str) -> None:
        # Four leading spaces make TensorBoard's Markdown show the ABC verbatim.
        block = "\n".join("    " + line for line in text.splitlines())
        self.writer.add_text(name, block, step)

    def log_audio(self, step: int, name: str, wav_path: Path) -> None:
        import torch

        samples, rate = read_wav(wav_path)
        self.writer.add_audio(name, torch.tensor(samples)[None], step, rate)

    def log_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def close(self, final: dict[str, float]) -> None:
        hparams = {key: _hparam_value(value) for key, value in self.params.items()}
        metrics = {f"hparam/{key}": value for key, value in final.items()}
        if metrics:
            self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.close()


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def read_wav(path: Path) -> tuple[list[float], int]:
    """Return (mono samples in [-1, 1], sample rate in Hz) of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as file:
        channels, width = file.getnchannels(), file.getsampwidth()
        rate, frames = file.getframerate(), file.readframes(file.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit WAV; only 16-bit PCM is read")
    values = memoryview(frames).cast("h")
    samples = [
        sum(values[i : i + channels]) / (channels * 32768.0)
        for i in range(0, len(values), channels)
    ]
    return samples, rate


class CometSink(Sink):
    """Send the run to Comet; offline to run_dir/comet when COMET_API_KEY is unset."""

    def __init__(self, folder: Path, project_name: str = "abcrnn") -> None:
        try:
            import comet_ml
        except ImportError as error:
            raise ConfigError(
                "--tracker comet needs the comet_ml package: pip install comet_ml "
                "(or pip install 'abcrnn[comet]'), or use --tracker none"
            ) from error
        if os.environ.get("COMET_API_KEY"):
            self.experiment = comet_ml.Experiment(project_name=project_name)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.experiment = comet_ml.OfflineExperiment(
                project_name=project_name, offline_directory=str(folder)
            )
            log.info("COMET_API_KEY is not set; Comet writes an archive to %s", folder)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.experiment.log_metrics(metrics, step=step)

    def log_text(self, step: int, name: str, text: str) -> None:
        self.experiment.log_text(text, step=step, metadata={"name": name})

    def log_audio(self, step: int, name: str, wav_path: Path) -> None:
        self.experiment.log_asset(str(wav_path), step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        self.experiment.log_parameters(params)

    def close(self, final: dict[str, float]) -> None:
        self.experiment.end()


def open_tracker(
    run_dir: Path,
    total_steps: int,
    resume_step: int = 0,
    tensorboard: bool = True,
    tracker: str = "none",
) -> Tracker:
    """Create the sinks of a run folder: log lines, CSV, plot, and the optional ones."""
    csv_path = run_dir / "metrics.csv"
    sinks: list[Sink] = [
        LogSink(total_steps),
        CsvSink(csv_path, resume_step),
        PlotSink(csv_path, run_dir / "loss.png"),
    ]
    if tensorboard:
        sinks.append(TensorBoardSink(run_dir / "tb", resume_step))
    if tracker == "comet":
        sinks.append(CometSink(run_dir / "comet"))
    return Tracker(sinks)


def bits_per_char(loss: float) -> float:
    """Convert a loss in nats per character to bits per character."""
    return loss / math.log(2)
