"""The bf16 LSTM kernels against nn.LSTM in fp32, and sampling streams."""

import pytest
import torch
import torch.nn.functional as F

from abcrnn import bf16_lstm, cell_kernels
from abcrnn.devices import cpu_supports_bf16
from abcrnn.errors import ConfigError
from abcrnn.model import CharRNN, ModelConfig
from abcrnn.sampling import SampleConfig, generate_tunes
from abcrnn.vocabulary import Vocabulary

# bf16 keeps 8 bits of mantissa. Over a few dozen steps the kernels stay within a
# few tenths of a percent of fp32 (measured: at most 0.5 % on these sizes).
RELATIVE_TOLERANCE = 0.02


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.norm())


def make_model(**changes) -> CharRNN:
    torch.manual_seed(0)
    settings = {"vocab_size": 13, "embedding_dim": 8, "hidden_size": 32} | changes
    return CharRNN(ModelConfig(**settings))


@pytest.fixture
def any_hidden_size(monkeypatch):
    """Let CharRNN use the kernels at the small sizes these tests train."""
    monkeypatch.setattr(bf16_lstm, "MIN_TRAINING_HIDDEN", 1)


@pytest.fixture(params=["fused", "pytorch"])
def cell_arithmetic(request, monkeypatch):
    """Run the gate arithmetic in lstm_cell.c, then in PyTorch's ops."""
    if request.param == "pytorch":
        monkeypatch.setattr(cell_kernels, "kernels", lambda: None)
    elif cell_kernels.kernels() is None:
        pytest.skip("the fused LSTM step could not be built on this machine")
    return request.param


def loss_and_grads(model: CharRNN, ids, targets, bf16: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, (h, c) = model(ids)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    # The final state takes part too, so its gradients are checked as well.
    loss = loss + h.float().square().mean() + c.float().square().mean()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return loss.item(), (h.detach(), c.detach()), grads


@pytest.mark.parametrize("num_layers", [1, 2])
def test_training_matches_fp32_lstm(num_layers, any_hidden_size, cell_arithmetic):
    model = make_model(num_layers=num_layers)
    ids = torch.randint(0, 13, (4, 20), generator=torch.Generator().manual_seed(1))
    targets = ids.roll(-1, dims=1)
    fp32_loss, fp32_state, fp32_grads = loss_and_grads(model, ids, targets, False)
    bf16_loss, bf16_state, bf16_grads = loss_and_grads(model, ids, targets, True)
    assert bf16_loss == pytest.approx(fp32_loss, rel=1e-3)
    for actual, expected in zip(bf16_state, fp32_state, strict=True):
        assert actual.dtype == torch.float32
        assert relative_error(actual, expected) < RELATIVE_TOLERANCE
    assert fp32_grads.keys() == bf16_grads.keys()
    for name, expected in fp32_grads.items():
        error = relative_error(bf16_grads[name], expected)
        assert error < RELATIVE_TOLERANCE, f"{name}: {error:.4f}"


def test_autocast_picks_the_kernels(monkeypatch):
    calls = []
    original = bf16_lstm.lstm_forward

    def spy(*args):
        calls.append(args[2].shape)
        return original(*args)

    monkeypatch.setattr(bf16_lstm, "lstm_forward", spy)
    built_kernels = cell_kernels.kernels
    model = make_model()
    ids = torch.zeros(2, 5, dtype=torch.long)
    model(ids)
    assert calls == []  # fp32: nn.LSTM
    monkeypatch.setattr(cell_kernels, "kernels", lambda: None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(ids)
    assert calls == []  # without the fused step, hidden 32 is below the minimum
    monkeypatch.setattr(bf16_lstm, "MIN_TRAINING_HIDDEN", 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(ids)
    assert calls == [(2, 5)]
    gru = make_model(cell="gru")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gru(ids)
    assert len(calls) == 1  # only LSTMs have these kernels
    monkeypatch.setattr(bf16_lstm, "MIN_TRAINING_HIDDEN", 1024)
    monkeypatch.setattr(cell_kernels, "kernels", built_kernels)
    if built_kernels() is not None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(ids[:1])
        assert calls == [(2, 5), (1, 5)]  # with the fused step, at every size


def test_state_carries_over_between_calls(any_hidden_size, cell_arithmetic):
    model = make_model().eval()
    ids = torch.randint(0, 13, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole, _ = model(ids)
        first, state = model(ids[:, :5])
        second, _ = model(ids[:, 5:], state)
    assert relative_error(torch.cat([first, second], dim=1), whole) < 1e-3


@pytest.mark.parametrize("num_layers", [1, 2])
def test_stepper_follows_the_model(num_layers, cell_arithmetic):
    model = make_model(num_layers=num_layers).eval()
    ids = torch.randint(0, 13, (5, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, _ = model(ids)  # fp32 nn.LSTM
        state = model.initial_state(5, "cpu")
        with bf16_lstm.matmul_threads() as use_all:
            step = bf16_lstm.Stepper(model, 5, use_all)
            for position in range(ids.size(1)):
                logits, state = step(ids[:, position], state)
                error = relative_error(logits, expected[:, position])
                assert error < RELATIVE_TOLERANCE, f"step {position}: {error:.4f}"


def test_bf16_linear_matches_matmul():
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(48, 16, generator=generator)
    x = torch.randn(3, 16, generator=generator).to(torch.bfloat16)
    expected = x.float() @ weight.to(torch.bfloat16).float().t()
    for packed_for in (1, 3, 64):
        linear = bf16_lstm.bf16_linear(weight, packed_for)
        assert relative_error(linear(x), expected) < 1e-2
    transposed = bf16_lstm.bf16_linear(weight.t(), 3)
    y = torch.randn(3, 48, generator=generator).to(torch.bfloat16)
    expected_transposed = y.float() @ weight.to(torch.bfloat16).float()
    assert relative_error(transposed(y), expected_transposed) < 1e-2


def test_thread_count_restored_after_an_error():
    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with bf16_lstm.matmul_threads() as use_all:
            use_all(False)
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == threads


VOCAB = Vocabulary.from_text("X:1\nT:ABCDEFGabcdefg|2/ ]K")


NEEDS_BF16 = pytest.mark.skipif(
    not cpu_supports_bf16(), reason="this CPU has neither AVX-512 BF16 nor AMX"
)


@pytest.mark.parametrize("bf16", [pytest.param("on", marks=NEEDS_BF16), "off"])
def test_stream_of_tunes_through_fewer_slots(bf16):
    model = make_model(vocab_size=len(VOCAB)).eval()
    config = SampleConfig(num_tunes=7, at_once=3, max_length=40, seed=5, bf16=bf16)
    result = generate_tunes(model, VOCAB, config)
    assert len(result) == 7
    assert all(tune.startswith("X:1") for tune in result)
    assert 0 <= result.unfinished <= 7
    again = generate_tunes(model, VOCAB, config)
    assert again.tunes == result.tunes


@NEEDS_BF16
@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_stream_under_bf16(cell):
    # These cells sample through the model under autocast, whose logits are bf16.
    model = make_model(vocab_size=len(VOCAB), cell=cell).eval()
    config = SampleConfig(num_tunes=4, at_once=1, max_length=40, bf16="on")
    result = generate_tunes(model, VOCAB, config)
    assert len(result) == 4


def test_greedy_stream_matches_one_batch():
    # With temperature 0 every tune is the same, however the slots are used.
    model = make_model(vocab_size=len(VOCAB)).eval()
    settings = {"num_tunes": 5, "temperature": 0, "max_length": 70, "bf16": "off"}
    together = generate_tunes(model, VOCAB, SampleConfig(**settings))
    streamed = generate_tunes(model, VOCAB, SampleConfig(at_once=2, **settings))
    assert streamed.tunes == together.tunes
    assert len(set(together.tunes)) == 1


def test_sample_config_rejects_bad_stream_settings():
    with pytest.raises(ConfigError, match="at_once must be >= 0"):
        SampleConfig(at_once=-1)
    with pytest.raises(ConfigError, match="bf16 must be one of auto, on, off"):
        SampleConfig(bf16="yes")
