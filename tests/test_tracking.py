"""Metric sinks: metrics.csv on resume, log lines, and Comet through a fake module."""

import sys
import types

import pytest

from abcrnn.errors import ConfigError
from abcrnn.tracking import (
    CometSink,
    CsvSink,
    TensorBoardSink,
    format_metrics,
    read_metrics,
    read_wav,
)


def test_csv_appends_and_drops_rows_after_resume_step(tmp_path):
    path = tmp_path / "metrics.csv"
    sink = CsvSink(path)
    for step in (1, 2, 3):
        sink.log_metrics(step, {"train_loss": 1.0 / step, "lr": 0.01})
    # The run was saved at step 2, so row 3 is trained again after the resume.
    resumed = CsvSink(path, resume_step=2)
    resumed.log_metrics(3, {"train_loss": 0.5, "val_loss": 0.75, "val_bpc": 1.08})
    rows = read_metrics(path)
    assert [row["step"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["train_loss"] == "0.5"
    assert rows[2]["val_loss"] == "0.75"
    assert rows[0]["val_loss"] == ""


def test_format_metrics_line():
    line = format_metrics(
        100,
        3000,
        {
            "train_loss": 1.23456,
            "val_loss": 1.5,
            "val_bpc": 2.164,
            "tokens_per_s": 4000.4,
            "lr": 0.005,
        },
    )
    assert line == (
        "step 100/3000 | loss 1.2346 | val 1.5000 (2.164 bpc) | 4,000 char/s "
        "| lr 5.00e-03"
    )


class FakeExperiment:
    def __init__(self, **options):
        self.options = options
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.fixture
def fake_comet(monkeypatch):
    module = types.ModuleType("comet_ml")
    module.Experiment = lambda **options: FakeExperiment(kind="online", **options)
    module.OfflineExperiment = lambda **options: FakeExperiment(
        kind="offline", **options
    )
    monkeypatch.setitem(sys.modules, "comet_ml", module)
    return module


def test_comet_offline_without_api_key(fake_comet, tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    sink = CometSink(tmp_path / "comet")
    assert sink.experiment.options == {
        "kind": "offline",
        "project_name": "abcrnn",
        "offline_directory": str(tmp_path / "comet"),
    }
    sink.log_params({"lr": 0.01})
    sink.log_metrics(5, {"train_loss": 1.5})
    sink.log_text(5, "samples", "X:1")
    sink.close({})
    assert sink.experiment.calls == [
        ("log_parameters", ({"lr": 0.01},), {}),
        ("log_metrics", ({"train_loss": 1.5},), {"step": 5}),
        ("log_text", ("X:1",), {"step": 5, "metadata": {"name": "samples"}}),
        ("end", (), {}),
    ]


def test_comet_online_with_api_key(fake_comet, tmp_path, monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", "test-key")
    sink = CometSink(tmp_path / "comet")
    assert sink.experiment.options == {"kind": "online", "project_name": "abcrnn"}


def test_comet_missing_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "comet_ml", None)
    with pytest.raises(ConfigError, match="pip install comet_ml"):
        CometSink(tmp_path / "comet")


def write_wav(path, frames, channels=1, rate=8000):
    import struct
    import wave

    with wave.open(str(path), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(struct.pack(f"<{len(frames)}h", *frames))


def test_read_wav_mixes_channels_to_mono(tmp_path):
    path = tmp_path / "tone.wav"
    # Two stereo frames: (16384, 0) and (-32768, -32768).
    write_wav(path, [16384, 0, -32768, -32768], channels=2, rate=22050)
    samples, rate = read_wav(path)
    assert rate == 22050
    assert samples == [0.25, -1.0]


def test_tensorboard_records_scalars_text_and_audio(tmp_path):
    path = tmp_path / "tune.wav"
    write_wav(path, [0, 1000, -1000, 0] * 100)
    sink = TensorBoardSink(tmp_path / "tb")
    sink.log_params({"lr": 0.01, "corpus": ("a.abc", "b.abc")})
    sink.log_metrics(1, {"train_loss": 2.0, "val_loss": 2.5})
    sink.log_text(1, "samples", "X:1\nK:G\nGABc|")
    sink.log_audio(1, "tune-01", path)
    sink.close({"best_val_loss": 2.5})
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events
    assert sum(event.stat().st_size for event in events) > 800
