"""The sampling callback of `abcrnn train`: sample files, seeds and sample audio."""

import types
from pathlib import Path

import torch

from abcrnn import render, training_samples
from abcrnn.config import TrainConfig
from abcrnn.errors import RenderError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.training_samples import sample_callback
from abcrnn.vocabulary import Vocabulary

VOCAB = Vocabulary.from_text("X:1\nT:AB\nM:4/4\nL:1/8\nK:G\nGABc|]")


def tiny_model():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(VOCAB), embedding_dim=4, hidden_size=8)
    return CharRNN(config).eval()


def test_callback_writes_samples(tmp_path):
    config = TrainConfig(sample_tunes=3, sample_max_length=40)
    callback = sample_callback(tmp_path, config)
    returned = callback(500, tiny_model(), VOCAB, {})
    text = (tmp_path / "samples" / "step-500.abc").read_text()
    assert returned["samples"] == text
    assert text.count("X:1") == 3
    assert 0.0 <= returned["valid_tune_share"] <= 1.0
    # The step is the seed, so the same step samples the same tunes.
    assert callback(500, tiny_model(), VOCAB, {})["samples"] == text


def test_sample_audio_returns_wav_paths(tmp_path, monkeypatch):
    def fake_render(tunes, out_dir):
        out_dir.mkdir(parents=True)
        entries = []
        for index, _ in enumerate(tunes, start=1):
            wav = out_dir / f"tune-{index:02d}.wav" if index == 1 else None
            entries.append(types.SimpleNamespace(index=index, wav_path=wav))
        return types.SimpleNamespace(tunes=entries)

    monkeypatch.setattr(render, "render_tunes", fake_render)
    config = TrainConfig(sample_tunes=2, sample_max_length=20, sample_audio=True)
    returned = sample_callback(tmp_path, config)(10, tiny_model(), VOCAB, {})
    assert returned["audio/tune-1"] == tmp_path / "samples" / "step-10" / "tune-01.wav"
    assert isinstance(returned["audio/tune-1"], Path)
    assert "audio/tune-2" not in returned


def test_render_failure_keeps_training(tmp_path, monkeypatch, caplog):
    def failing_render(tunes, out_dir):
        raise RenderError("abc2midi is not installed")

    monkeypatch.setattr(render, "render_tunes", failing_render)
    assert training_samples.render_audio(["X:1"], tmp_path) == {}
    assert "sample audio skipped: abc2midi is not installed" in caplog.text
