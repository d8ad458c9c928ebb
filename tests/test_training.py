"""The training loop: learning, resume, signals, divergence and settings."""

import json
import os
import signal

import pytest
import torch

from abcrnn import cell_kernels, devices
from abcrnn.checkpoint import load_checkpoint
from abcrnn.config import TrainConfig
from abcrnn.errors import ConfigError, CorpusError, TrainingError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.run_setup import build_optimizer, lr_factor
from abcrnn.tracking import read_metrics
from abcrnn.training import evaluate, train
from ml_support import TUNES, tiny_config, write_corpus


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


def send_at(target_step, signum=signal.SIGINT):
    """Return a callback that sends `signum` to this process at one step."""

    def callback(step, model, vocab, metrics):
        if step == target_step:
            os.kill(os.getpid(), signum)

    return callback


def test_validation_loss_falls(corpus, tmp_path):
    config = tiny_config(corpus, steps=40, eval_every=10, log_every=10)
    result = train(config, tmp_path / "run")
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    val_losses = [float(row["val_loss"]) for row in rows]
    assert [row["step"] for row in rows] == ["10", "20", "30", "40"]
    assert val_losses[-1] < val_losses[0] - 0.3
    assert result.status == "finished"
    assert result.step == 40
    assert result.best_val_loss == pytest.approx(min(val_losses), rel=1e-5)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_resume_equals_uninterrupted(corpus, tmp_path):
    # Two layers with dropout, so the resumed run also needs the random states.
    config = tiny_config(
        corpus, num_layers=2, dropout=0.2, sample_every=3, lr_schedule="cosine"
    )
    reference = train(config, tmp_path / "ref", callbacks=[lambda *args: None])
    stopped = train(config, tmp_path / "run", callbacks=[send_at(3)])
    assert stopped.status == "interrupted"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3

    resumed = train(config, tmp_path / "run", resume=True)
    assert resumed.status == "finished"
    assert resumed.step == 6
    expected = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    actual = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    for name, tensor in expected["model"].items():
        assert torch.equal(actual["model"][name], tensor), name
    assert resumed.best_val_loss == reference.best_val_loss
    steps = [row["step"] for row in read_metrics(tmp_path / "run" / "metrics.csv")]
    assert steps == ["1", "2", "3", "4", "5", "6"]


def test_sigterm_stops_after_current_step(corpus, tmp_path):
    config = tiny_config(corpus, steps=20, sample_every=1, checkpoint_every=0)
    result = train(config, tmp_path / "run", callbacks=[send_at(2, signal.SIGTERM)])
    assert result.status == "interrupted"
    assert result.step == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_finished_run_has_nothing_to_do(corpus, tmp_path):
    config = tiny_config(corpus)
    train(config, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = (last.read_bytes(), last.stat().st_mtime_ns)
    result = train(config, tmp_path / "run", resume=True)
    assert result.status == "nothing to do"
    assert result.step == 6
    assert (last.read_bytes(), last.stat().st_mtime_ns) == before


def test_resume_with_other_model_shape(corpus, tmp_path):
    train(tiny_config(corpus, steps=3), tmp_path / "run")
    wider = tiny_config(corpus, steps=6, hidden_size=16)
    with pytest.raises(Exception, match="hidden_size is 32 in the checkpoint but 16"):
        train(wider, tmp_path / "run", resume=True)


def poison_weights(target_step):
    def callback(step, model, vocab, metrics):
        if step == target_step:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    return callback


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path):
    config = tiny_config(corpus, steps=10, sample_every=3, checkpoint_every=2)
    with pytest.raises(TrainingError) as error:
        train(config, tmp_path / "run", callbacks=[poison_weights(3)])
    assert "training loss became nan by step 4" in str(error.value)
    assert "Lower --lr or set --grad-clip" in str(error.value)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["step"] == 2
    assert torch.isfinite(saved["model"]["head.weight"]).all()


def test_nan_weights_are_never_saved(corpus, tmp_path):
    config = tiny_config(corpus, steps=10, sample_every=2, checkpoint_every=2)
    with pytest.raises(TrainingError, match="weight head.weight contains NaN"):
        train(config, tmp_path / "run", callbacks=[poison_weights(2)])
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_learning_rate_schedule_reaches_optimizer(corpus, tmp_path):
    config = tiny_config(
        corpus, lr=0.01, min_lr=0.001, lr_schedule="cosine", warmup_steps=2
    )
    train(config, tmp_path / "run")
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    logged = [float(row["lr"]) for row in rows]
    assert logged == pytest.approx([0.005, 0.01, 0.01, 0.00775, 0.00325, 0.001])
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    group = saved["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == 0.01
    assert group["lr"] == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("schedule", "index", "factor"),
    [
        ("constant", 5, 1.0),
        ("linear", 0, 1.0),
        ("linear", 5, 0.5),
        ("linear", 10, 0.0),
        ("cosine", 5, 0.5),
        ("cosine", 10, 0.0),
    ],
)
def test_lr_factor(schedule, index, factor):
    config = TrainConfig(steps=11, lr=0.01, lr_schedule=schedule)
    assert lr_factor(index, config) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("adagrad", torch.optim.Adagrad),
        ("rmsprop", torch.optim.RMSprop),
        ("sgd", torch.optim.SGD),
    ],
)
def test_optimizer_settings_take_effect(name, kind):
    model = CharRNN(ModelConfig(vocab_size=5, embedding_dim=2, hidden_size=3))
    config = TrainConfig(optimizer=name, lr=0.02, weight_decay=0.001)
    optimizer = build_optimizer(model, config)
    assert type(optimizer) is kind
    assert optimizer.param_groups[0]["lr"] == 0.02
    assert optimizer.param_groups[0]["weight_decay"] == 0.001


def test_grad_clip_takes_effect(corpus, tmp_path, monkeypatch):
    norms = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    train(tiny_config(corpus, grad_clip=0.5, steps=3), tmp_path / "clipped")
    assert norms == [0.5, 0.5, 0.5]
    train(tiny_config(corpus, grad_clip=0.0, steps=3), tmp_path / "free")
    assert norms == [0.5, 0.5, 0.5]


def test_run_folder_contents(corpus, tmp_path):
    config = tiny_config(corpus, tensorboard=True, num_layers=2, dropout=0.1)
    train(config, tmp_path / "run")
    run_dir = tmp_path / "run"
    info = json.loads((run_dir / "config.json").read_text())
    assert info["train_config"] == config.to_dict()
    assert info["model_config"]["num_layers"] == 2
    assert info["model_config"]["dropout"] == 0.1
    assert info["versions"]["torch"] == torch.__version__
    fused = info["bf16"] and cell_kernels.kernels() is not None
    assert info["fused_lstm_step"] is fused
    assert len(info["corpus"]["sha256"]) == 64
    assert info["corpus"]["train_tunes"] == 7
    assert info["corpus"]["valid_tunes"] == 1
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,train_loss,val_loss,val_bpc,tokens_per_s,lr,valid_tune_share"
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))


def test_callback_numbers_become_metrics(corpus, tmp_path):
    def callback(step, model, vocab, metrics):
        assert not model.training
        assert "val_loss" in metrics
        return {"valid_tune_share": 0.25, "samples": "X:1"}

    config = tiny_config(corpus, sample_every=3)
    train(config, tmp_path / "run", callbacks=[callback])
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [row["valid_tune_share"] for row in rows] == ["", "", "0.25"] * 2


def test_one_tune_trains_without_validation(tmp_path):
    corpus = write_corpus(tmp_path, TUNES.split("\n\n")[0] + "\n")
    result = train(tiny_config(corpus, seq_len=8), tmp_path / "run")
    assert result.status == "finished"
    assert result.best_val_loss is None
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_corpus_shorter_than_window(corpus, tmp_path):
    with pytest.raises(CorpusError, match="use a shorter --seq-len"):
        train(tiny_config(corpus, seq_len=5000), tmp_path / "run")


def test_evaluate_uniform_model_scores_log_vocab():
    model = CharRNN(ModelConfig(vocab_size=7, embedding_dim=2, hidden_size=3))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    batch = (torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))
    loss = evaluate(model, [batch], torch.device("cpu"))
    assert loss == pytest.approx(torch.log(torch.tensor(7.0)).item())


def test_cpu_bf16_flags(tmp_path):
    with_bf16 = tmp_path / "cpuinfo_bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    without = tmp_path / "cpuinfo_plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert devices.cpu_supports_bf16(with_bf16)
    assert not devices.cpu_supports_bf16(without)
    assert not devices.cpu_supports_bf16(tmp_path / "missing")


def test_bf16_modes(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    assert devices.resolve_bf16("auto", cpu) is False
    assert devices.resolve_bf16("off", cpu) is False
    with pytest.raises(ConfigError, match="--bf16 on needs"):
        devices.resolve_bf16("on", cpu)
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)
    assert devices.resolve_bf16("auto", cpu) is True
    assert devices.resolve_bf16("off", cpu) is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda():
    with pytest.raises(ConfigError, match="--device cuda was requested"):
        devices.resolve_device("cuda")
