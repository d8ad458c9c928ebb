"""The fused LSTM step in C against PyTorch's own arithmetic, and its build."""

import logging
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from abcrnn import bf16_lstm, cell_kernels

BF16 = torch.bfloat16


@pytest.fixture
def fused():
    kernels = cell_kernels.kernels()
    if kernels is None:
        pytest.skip("the fused LSTM step could not be built on this machine")
    return kernels


def random_step(batch: int, hidden: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    xproj = torch.randn(batch, 4 * hidden, generator=generator) * 2
    product = (torch.randn(batch, 4 * hidden, generator=generator)).to(BF16)
    c_prev = torch.randn(batch, hidden, generator=generator)
    return xproj, product, c_prev


def run_forward(fused, xproj, product, c_prev, with_saved=True):
    batch, hidden = c_prev.shape
    c_next = torch.empty(batch, hidden)
    h = torch.empty(batch, hidden)
    h_low = torch.empty(batch, hidden, dtype=BF16)
    saved = torch.empty(batch, 6 * hidden) if with_saved else None
    fused.forward(xproj, product, c_prev, c_next, h, h_low, saved)
    return c_next, h, h_low, saved


@pytest.mark.parametrize("batch, hidden", [(1, 1), (3, 17), (8, 64)])
def test_forward_step_matches_pytorch(fused, batch, hidden):
    xproj, product, c_prev = random_step(batch, hidden, seed=hidden)
    c_next, h, h_low, saved = run_forward(fused, xproj, product, c_prev)

    gates = xproj + product.float()
    i, f, g, o = gates.split(hidden, dim=1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c_prev + i * g
    tanh_c = c.tanh()
    torch.testing.assert_close(c_next, c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, o * tanh_c, rtol=1e-5, atol=1e-6)
    assert torch.equal(h_low, h.to(BF16))
    expected = torch.cat(
        [
            g * i * (1 - i),
            c_prev * f * (1 - f),
            i * (1 - g * g),
            tanh_c * o * (1 - o),
            o * (1 - tanh_c * tanh_c),
            f,
        ],
        dim=1,
    )
    torch.testing.assert_close(saved, expected, rtol=1e-4, atol=1e-6)


def test_forward_step_without_saved_factors(fused):
    xproj, product, c_prev = random_step(4, 32, seed=5)
    with_saved = run_forward(fused, xproj, product, c_prev)
    without = run_forward(fused, xproj, product, c_prev, with_saved=False)
    # The two loops are compiled apart, so fused multiply-adds may differ.
    for a, b in zip(with_saved[:3], without[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert without[3] is None


def test_forward_step_matches_the_pytorch_fallback(fused):
    """lstm_cell.c and bf16_lstm.cell_step compute the same cell."""
    xproj, product, c_prev = random_step(5, 40, seed=6)
    c_next, h, _, _ = run_forward(fused, xproj, product, c_prev)
    acts = torch.empty(5, 160)
    fallback_c = torch.empty(5, 40)
    tanh_c = torch.empty(5, 40)
    fallback_h = bf16_lstm.cell_step(
        xproj + product.float(), c_prev, acts, fallback_c, tanh_c
    )
    torch.testing.assert_close(c_next, fallback_c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, fallback_h, rtol=1e-5, atol=1e-6)


def test_sigmoid_is_accurate_over_the_whole_range(fused):
    """The forget gate's activation comes back as the last block of `saved`."""
    values = torch.cat(
        [
            torch.linspace(-30, 30, 6001),
            torch.tensor([-1e4, -88.5, -87.0, 87.0, 88.5, 1e4]),
            torch.tensor([-math.inf, math.inf]),
        ]
    )
    hidden = values.numel()
    xproj = torch.zeros(1, 4 * hidden)
    xproj[0, hidden : 2 * hidden] = values
    product = torch.zeros(1, 4 * hidden, dtype=BF16)
    *_, saved = run_forward(fused, xproj, product, torch.zeros(1, hidden))
    forget = saved[0, 5 * hidden :]
    torch.testing.assert_close(forget, values.sigmoid(), rtol=2e-6, atol=2e-7)


def test_nan_propagates_to_that_unit_alone(fused):
    xproj, product, c_prev = random_step(2, 8, seed=7)
    xproj[1, 3] = math.nan  # input gate of unit 3 in row 1
    c_next, h, h_low, _ = run_forward(fused, xproj, product, c_prev)
    assert math.isnan(c_next[1, 3])
    assert math.isnan(h[1, 3])
    assert torch.isnan(h_low[1, 3].float())
    assert torch.isnan(h).sum() == 1
    assert torch.isnan(c_next).sum() == 1


def backward(fused, dh_product, dh_direct, saved, dc):
    batch, hidden = dc.shape
    grad = torch.empty(batch, 4 * hidden)
    grad_low = torch.empty(batch, 4 * hidden, dtype=BF16)
    fused.backward(dh_product, dh_direct, saved, dc, grad, grad_low)
    return grad, grad_low


@pytest.mark.parametrize("with_product", [True, False])
def test_backward_step_applies_the_chain_rule(fused, with_product):
    batch, hidden = 3, 24
    generator = torch.Generator().manual_seed(8)
    saved = torch.rand(batch, 6 * hidden, generator=generator)
    direct = torch.randn(batch, hidden, generator=generator)
    product = torch.randn(batch, hidden, generator=generator).to(BF16)
    dc_in = torch.randn(batch, hidden, generator=generator)
    dc = dc_in.clone()
    grad, grad_low = backward(
        fused, product if with_product else None, direct, saved, dc
    )

    dh = direct + (product.float() if with_product else 0.0)
    ig, fc, gi, tanh_do, o_dtanh, f = saved.split(hidden, dim=1)
    dc_total = dc_in + dh * o_dtanh
    expected = torch.cat([dc_total * ig, dc_total * fc, dc_total * gi, dh * tanh_do], 1)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dc, dc_total * f, rtol=1e-6, atol=1e-7)
    assert torch.equal(grad_low, grad.to(BF16))


def test_bf16_rounding_matches_pytorch(fused):
    """Ties go to even, overflow to infinity, NaN stays NaN, as in .to(bfloat16)."""
    one_ulp = 2.0**-7  # bf16 spacing at 1.0
    values = torch.tensor(
        [
            1.0 + one_ulp / 2,  # tie, rounds down to even
            1.0 + 3 * one_ulp / 2,  # tie, rounds up to even
            1.0 + one_ulp / 2 + 2.0**-20,
            -2.5e-40,  # subnormal
            3.4e38,  # rounds up past bf16's largest finite value
            -math.inf,
            math.nan,
            0.0,
            123.456,
        ]
    )
    hidden = values.numel()
    saved = torch.zeros(1, 6 * hidden)
    saved[0, :hidden] = 1.0  # input-gate gradient = dc
    saved[0, 4 * hidden : 5 * hidden] = 1.0  # dc = dh
    grad, grad_low = backward(
        fused, None, values.unsqueeze(0), saved, torch.zeros(1, hidden)
    )
    expected = values.to(BF16)
    actual = grad_low[0, :hidden]
    assert torch.equal(actual.isnan(), expected.isnan())
    finite = ~expected.isnan()
    assert torch.equal(
        actual[finite].view(torch.int16), expected[finite].view(torch.int16)
    )


def test_switch_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv(cell_kernels.SWITCH, "off")
    cell_kernels.kernels.cache_clear()
    try:
        assert cell_kernels.kernels() is None
    finally:
        monkeypatch.delenv(cell_kernels.SWITCH)
        cell_kernels.kernels.cache_clear()


def test_broken_compiler_falls_back(monkeypatch, tmp_path, caplog):
    compiler = tmp_path / "broken-cc"
    compiler.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "broken-cc 1.0" && exit 0\n'
        'echo "lstm_cell.c: error: out of luck" >&2\nexit 1\n'
    )
    compiler.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(compiler))
    cell_kernels.kernels.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="abcrnn.cell_kernels"):
            assert cell_kernels.kernels() is None
    finally:
        cell_kernels.kernels.cache_clear()
    assert "could not build or load the fused LSTM step" in caplog.text
    assert "exit status 1" in caplog.text
    assert "error: out of luck" in caplog.text
    assert list((tmp_path / "abcrnn").iterdir()) == []  # no partial build left


def fake_compiler(folder, body: str):
    """Write a shell script that prints a version for --version, else runs `body`."""
    script = folder / "fake-cc"
    script.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "fake-cc 1.0" && exit 0\n' + body
    )
    script.chmod(0o755)
    return script


def build_in(monkeypatch, cache, compiler=None):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if compiler is not None:
        monkeypatch.setenv("CC", compiler)
    cell_kernels.kernels.cache_clear()
    try:
        return cell_kernels.kernels()
    finally:
        cell_kernels.kernels.cache_clear()


def test_silent_compiler_leaves_no_build(monkeypatch, tmp_path):
    silent = fake_compiler(tmp_path, "exit 0\n")
    assert build_in(monkeypatch, tmp_path, str(silent)) is None
    assert list((tmp_path / "abcrnn").iterdir()) == []


def build_in_child(cache) -> subprocess.CompletedProcess:
    """Build or load the kernels in a fresh process, as a new run would."""
    code = "from abcrnn import cell_kernels; print(cell_kernels.kernels() is not None)"
    environment = os.environ | {"XDG_CACHE_HOME": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_damaged_build_is_rebuilt(fused, tmp_path):
    """Loading a truncated library would kill the process with SIGBUS."""
    assert build_in_child(tmp_path).stdout.strip() == "True"
    (built,) = (tmp_path / "abcrnn").glob("lstm_cell-*.so")
    whole = built.read_bytes()
    built.write_bytes(whole[:4096])
    run = build_in_child(tmp_path)
    assert (run.returncode, run.stdout.strip()) == (0, "True"), run.stderr
    assert built.read_bytes() == whole
    built.with_suffix(".sha256").unlink()  # a build without its digest
    run = build_in_child(tmp_path)
    assert (run.returncode, run.stdout.strip()) == (0, "True"), run.stderr
    assert built.with_suffix(".sha256").is_file()


def test_cc_may_hold_a_command_with_flags(fused, monkeypatch, tmp_path):
    wrapper = fake_compiler(tmp_path, 'shift; exec cc "$@"\n')
    assert build_in(monkeypatch, tmp_path / "cache", f"{wrapper} -std=c11") is not None


def test_unusable_cache_builds_in_temp_folder(fused, monkeypatch, tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would go")
    before = set(Path(tempfile.gettempdir()).glob("abcrnn-kernels-*"))
    assert build_in(monkeypatch, blocked) is not None
    assert set(Path(tempfile.gettempdir()).glob("abcrnn-kernels-*")) == before


def test_build_is_cached_and_reused(fused, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cell_kernels.kernels.cache_clear()
    try:
        assert cell_kernels.kernels() is not None
        (built,) = (tmp_path / "abcrnn").glob("lstm_cell-*.so")
        first = built.stat().st_mtime_ns
        cell_kernels.kernels.cache_clear()
        assert cell_kernels.kernels() is not None
        assert built.stat().st_mtime_ns == first
    finally:
        cell_kernels.kernels.cache_clear()


def test_table_rows_by_id_match_gathered_rows(fused):
    """Reading a table by ids, and adding gradients back to it, equals gathering
    the rows first and scattering the gradients after (repeated ids included)."""
    batch, hidden, vocab = 5, 12, 4
    generator = torch.Generator().manual_seed(9)
    table = torch.randn(vocab, 4 * hidden, generator=generator)
    ids = torch.tensor([2, 0, 2, 3, 2])
    _, product, c_prev = random_step(batch, hidden, seed=10)
    by_id = torch.empty(batch, 6 * hidden), torch.empty(batch, hidden)
    gathered = torch.empty(batch, 6 * hidden), torch.empty(batch, hidden)
    low = torch.empty(batch, hidden, dtype=BF16)
    for saved, h, x, row_ids in (
        (*by_id, table, ids),
        (*gathered, table[ids].contiguous(), None),
    ):
        c_next = torch.empty(batch, hidden)
        fused.forward(x, product, c_prev, c_next, h, low, saved, ids=row_ids)
    assert torch.equal(by_id[0], gathered[0])
    assert torch.equal(by_id[1], gathered[1])

    direct = torch.randn(batch, hidden, generator=generator)
    table_grad = torch.zeros(vocab, 4 * hidden)
    row_grad = torch.empty(batch, 4 * hidden)
    low_grad = torch.empty(batch, 4 * hidden, dtype=BF16)
    fused.backward(
        None, direct, by_id[0], torch.zeros(batch, hidden), table_grad, low_grad, ids
    )
    fused.backward(
        None, direct, by_id[0], torch.zeros(batch, hidden), row_grad, low_grad
    )
    expected = torch.zeros(vocab, 4 * hidden).index_add_(0, ids, row_grad)
    torch.testing.assert_close(table_grad, expected, rtol=1e-6, atol=1e-7)


def test_ids_changed_after_forward_pass(fused, monkeypatch):
    """The kernels keep a copy of the ids, so the backward pass ignores changes."""
    monkeypatch.setattr(bf16_lstm, "MIN_TRAINING_HIDDEN", 1)
    from abcrnn.model import CharRNN, ModelConfig

    model = CharRNN(ModelConfig(vocab_size=9, embedding_dim=4, hidden_size=8))
    ids = torch.tensor([[1, 2, 3, 4]])  # batch 1: ids.t() is a view of the input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(ids)
    ids.fill_(10**11)
    logits.float().sum().backward()
    used = model.embedding.weight.grad.abs().sum(dim=1) > 0
    assert used.tolist() == [False, True, True, True, True, False, False, False, False]


@pytest.mark.parametrize(
    ("ids", "error", "message"),
    [
        (torch.tensor([[2.7, 3.0]]), TypeError, "must be integers, got torch.float32"),
        (torch.tensor([[True, False]]), TypeError, "must be integers"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, r"got \(1, 0\)"),
        (torch.tensor([1, 2]), ValueError, r"shape \(batch, length\)"),
    ],
)
def test_ids_of_the_wrong_kind_raise(fused, monkeypatch, ids, error, message):
    monkeypatch.setattr(bf16_lstm, "MIN_TRAINING_HIDDEN", 1)
    embedding = torch.nn.Embedding(5, 4)
    lstm = torch.nn.LSTM(4, 8, batch_first=True)
    state = (torch.zeros(1, 1, 8), torch.zeros(1, 1, 8))
    with pytest.raises(error, match=message):
        bf16_lstm.lstm_forward(embedding, lstm, ids, state)


def test_stepper_rejects_a_state_for_another_batch(fused):
    from abcrnn.model import CharRNN, ModelConfig

    model = CharRNN(ModelConfig(vocab_size=10, embedding_dim=4, hidden_size=16))
    with torch.no_grad(), bf16_lstm.matmul_threads() as use_all:
        step = bf16_lstm.Stepper(model, 2, use_all)
        state = model.initial_state(64, "cpu")
        with pytest.raises(ValueError, match=r"state must have shape \(1, 2, 16\)"):
            step(torch.tensor([1, 2]), state)


@pytest.mark.parametrize("p", [-0.1, 1.5, math.nan])
def test_dropout_rejects_a_probability_outside_0_1(p):
    from abcrnn.model import dropout

    with pytest.raises(ValueError, match="dropout probability must be in"):
        dropout(torch.ones(4, 4), p, training=True)


def test_dropout_of_1_gives_zeros():
    from abcrnn.model import dropout

    assert torch.equal(dropout(torch.ones(4, 4), 1.0, training=True), torch.zeros(4, 4))


def test_ids_outside_the_vocabulary_raise(fused, monkeypatch):
    monkeypatch.setattr(bf16_lstm, "MIN_TRAINING_HIDDEN", 1)
    from abcrnn.model import CharRNN, ModelConfig

    model = CharRNN(ModelConfig(vocab_size=5, embedding_dim=4, hidden_size=8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.tensor([[0, 4, 1]]))
        with pytest.raises(IndexError, match=r"must lie in \[0, 5\), got 0..5"):
            model(torch.tensor([[0, 5, 1]]))
        with pytest.raises(IndexError, match=r"got -1..1"):
            model(torch.tensor([[-1, 1]]))
