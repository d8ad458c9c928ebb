"""LSTM kernels for CPUs with bfloat16 matmuls (AVX-512 BF16 or AMX).

Under bf16 autocast, PyTorch's CPU LSTM runs oneDNN's bf16 RNN kernels, which lose
to fp32 at small batches. This module runs the recurrence step by step instead:
each step's matmul goes through a oneDNN linear whose bf16 weight is packed once
per call, and the gate arithmetic and cell state stay in fp32.

Measured on a 2-core AMD EPYC (Zen 4) with the lab's model size (LSTM 1024, batch 8),
one step's recurrent matmul takes 0.24 ms packed, 0.42 ms with torch.mm on the same
bf16 tensors and 1.9 ms in fp32. On the same machine torch.tanh on an 8 x 1024
tensor takes 80 us against 5 us for torch.sigmoid, so tanh is computed here as
2 * sigmoid(2x) - 1.

The gate arithmetic between two matmuls runs in one fused pass of lstm_cell.c
where abcrnn.cell_kernels could build it (0.045 ms for a batch of 32 x 512 units
forward, 0.013 ms backward, against about 0.11 ms for PyTorch's ops on one
thread), else in PyTorch's ops.

The first layer's input projection is folded into a table (vocabulary x 4 * hidden).
An embedding followed by a linear map is itself a linear map of the character, so
a lookup in the table replaces a (batch * time) x embedding x 4 * hidden matmul, in
training and in sampling.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from abcrnn import cell_kernels

LOW = torch.bfloat16
# Without the fused steps of abcrnn.cell_kernels, CharRNN uses these kernels under
# autocast only from this hidden size up. Training chars/s on a 2-core AMD EPYC
# (Zen 4), these kernels with PyTorch's element-wise ops / oneDNN's bf16 LSTM:
#   batch                              8                16               32
#   hidden 1024, emb 256, seq 100:     5,500 / 2,500    5,700 / 3,900    6,600 / 5,700
#   hidden 512, emb 64, seq 160:       11,300 / 12,400  13,700 / 16,600  15,000 / 18,800
# With the fused steps they won at every size measured (malloc keeping freed
# memory, see abcrnn.devices), fused / oneDNN:
#   hidden 1024, emb 256, seq 100, batch 8:    7,800 / 2,950
#   hidden 512, emb 64, seq 160, batch 32:     31,000 / 28,700
#   hidden 256, emb 64, seq 160, batch 32:     61,000 / 52,000
#   hidden 128, emb 32, seq 160, batch 32:     94,000 / 76,000
# Sampling uses them at every size.
MIN_TRAINING_HIDDEN = 1024
Linear = Callable[[torch.Tensor], torch.Tensor]


@functools.cache
def packed_linear_available() -> bool:
    """Return True when this PyTorch build has oneDNN's packed bf16 linear."""
    try:
        weight = torch.ones(8, 4, dtype=LOW)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 2)
        out = torch.ops.mkldnn._linear_pointwise(
            torch.ones(2, 4, dtype=LOW), packed, None, "none", [], ""
        )
    except (AttributeError, RuntimeError):
        return False
    return bool((out == 4).all())


def bf16_linear(weight: torch.Tensor, batch_size: int) -> Linear:
    """Return x -> x @ weight.T for bf16 x of shape (B, in), giving bf16 (B, out).

    The weight is cast to bf16 and, where oneDNN allows it, packed for batches of
    about `batch_size` rows (other batch sizes still work). A transposed view is
    packed without a contiguous copy.
    """
    weight = weight.detach().to(LOW)
    if packed_linear_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch_size)
        linear = torch.ops.mkldnn._linear_pointwise
        return lambda x: linear(x, packed, None, "none", [], "")
    transposed = weight.t()
    return lambda x: torch.mm(x, transposed)


@contextlib.contextmanager
def matmul_threads() -> Iterator[Callable[[bool], None]]:
    """Yield a switch between all intra-op threads (True) and one thread (False).

    Element-wise ops on a step's small tensors run faster on one thread: waking
    the other threads costs more than the work. Measured on 2 cores with
    OMP_WAIT_POLICY=PASSIVE: 50 us for x.mul_(1.0) on 64 x 1024 floats with two
    threads, 6 us on one, switching included. The thread count in force when the
    context was entered is restored on exit.
    NOTE: the count is process-wide, so other threads running PyTorch ops at the
    same time see it switch too.
    """
    threads = torch.get_num_threads()

    def use_all(enabled: bool) -> None:
        torch.set_num_threads(threads if enabled else 1)

    try:
        yield use_all
    finally:
        torch.set_num_threads(threads)


def _tanh(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Write tanh(x) into `out` as 2 * sigmoid(2x) - 1 (see the module notes)."""
    torch.sigmoid(x * 2, out=out)
    return out.mul_(2).sub_(1)


def cell_step(
    gates: torch.Tensor,
    c: torch.Tensor,
    acts: torch.Tensor,
    c_next: torch.Tensor,
    tanh_c: torch.Tensor,
) -> torch.Tensor:
    """Update one LSTM cell in fp32, writing into preallocated tensors.

    gates (B, 4H) are the pre-activations in PyTorch's order i, f, g, o; they are
    overwritten. `acts` receives sigmoid(i, f, o) and tanh(g), `c_next` the new
    cell state and `tanh_c` its tanh. Returns the new hidden state h (B, H).
    """
    hidden = c.size(-1)
    g_slice = slice(2 * hidden, 3 * hidden)
    gates[:, g_slice] *= 2
    torch.sigmoid(gates, out=acts)
    acts[:, g_slice].mul_(2).sub_(1)
    i, f, g, o = acts.split(hidden, dim=1)
    torch.mul(f, c, out=c_next)
    c_next.addcmul_(i, g)
    _tanh(c_next, tanh_c)
    return o * tanh_c


class _Recurrence(torch.autograd.Function):
    """One LSTM layer's recurrence given its input projection, with a bf16 matmul.

    Time-major, so that each step's rows are contiguous. Inputs: xproj (T, B, 4H)
    fp32 (input projection plus both biases), w_hh (4H, H), h0 and c0 (B, H).
    Outputs: hidden states (T, B, H) fp32, and the last h and c.
    The gate arithmetic runs in `fused` (lstm_cell.c's steps from
    abcrnn.cell_kernels), or in PyTorch's element-wise ops when it is None. With
    `fused`, xproj may instead be a table (V, 4H) with `ids` (T, B). The steps then
    read its rows and add their gradients to the table's gradient, so the
    (T, B, 4H) projection and its gradient are never made.
    """

    @staticmethod
    def forward(ctx, xproj, w_hh, h0, c0, fused, ids):  # type: ignore[override]
        ctx.w_low = w_hh.detach().to(LOW)
        ctx.fused, ctx.ids, ctx.xproj_shape = fused, ids, xproj.shape
        if fused is not None:
            run = functools.partial(_forward_fused, fused, ids=ids)
        else:
            run = _forward_ops
        hiddens, c_last, saved = run(ctx.w_low, xproj, h0, c0)
        ctx.save_for_backward(*saved)
        return hiddens, hiddens[-1].clone(), c_last

    @staticmethod
    def backward(ctx, grad_hiddens, grad_h_last, grad_c_last):  # type: ignore[override]
        grad_hiddens = grad_hiddens.float()
        run = _backward_fused if ctx.fused is not None else _backward_ops
        grad_gates, grad_gates_low, dh, dc = run(
            ctx, grad_hiddens, grad_h_last, grad_c_last
        )
        hiddens_low = ctx.saved_tensors[-1]
        hidden = hiddens_low.size(-1)
        grad_w_hh = torch.mm(
            grad_gates_low.view(-1, 4 * hidden).t(),
            hiddens_low[:-1].reshape(-1, hidden),
        ).float()
        return grad_gates, grad_w_hh, dh, dc, None, None


def _forward_fused(fused, w_low, xproj, h0, c0, ids):
    """Run the forward pass through lstm_cell.c; return hiddens (T, B, H), the last
    c and the tensors the backward pass needs."""
    steps, batch = ids.shape if ids is not None else xproj.shape[:2]
    hidden = w_low.size(1)
    recurrent = bf16_linear(w_low, batch)
    xproj = xproj.float().contiguous()
    x_rows, id_rows = _step_rows(xproj, ids)

    factors = xproj.new_empty(steps, batch, 6 * hidden)
    hiddens = xproj.new_empty(steps, batch, hidden)
    hiddens_low = xproj.new_empty(steps + 1, batch, hidden, dtype=LOW)
    hiddens_low[0] = h0
    cells = xproj.new_empty(2, batch, hidden)  # c(t) and c(t + 1), alternately
    cells[0] = c0
    cell_rows, h_rows = _rows(cells), _rows(hiddens)
    low_rows, factor_rows = _rows(hiddens_low), _rows(factors)

    with matmul_threads() as use_all:
        use_all(True)
        for t in range(steps):
            product = recurrent(hiddens_low[t])
            fused.forward(
                x_rows(t),
                product,
                cell_rows(t % 2),
                cell_rows((t + 1) % 2),
                h_rows(t),
                low_rows(t + 1),
                factor_rows(t),
                shape=(batch, hidden),
                ids=id_rows(t),
            )
    return hiddens, cells[steps % 2].clone(), (factors, hiddens_low)


def _rows(tensor: torch.Tensor) -> Callable[[int], int]:
    """Return t -> the address of tensor[t], for a tensor contiguous in dims 1 on.

    Indexing a tensor costs 1.5-5 us in Python (measured in a profile), so the
    step loops pass lstm_cell.c addresses instead.
    """
    base, stride = tensor.data_ptr(), tensor.stride(0) * tensor.element_size()
    return lambda t: base + t * stride


def _step_rows(per_step: torch.Tensor, ids: torch.Tensor | None):
    """Return (t -> address of step t's rows, t -> address of its ids or None).

    Without ids, `per_step` has a block of rows for each step. With ids, it is a
    table that every step indexes by its ids, so its address stays the same.
    """
    if ids is None:
        return _rows(per_step), lambda t: None
    table = per_step.data_ptr()
    return (lambda t: table), _rows(ids)


def _backward_fused(ctx, grad_hiddens, grad_h_last, grad_c_last):
    """Run the backward pass through lstm_cell.c; return the gate gradients (of the
    table, given ids), their bf16 copy (T, B, 4H), dh0 and dc0."""
    factors, hiddens_low = ctx.saved_tensors
    steps, batch, six_hidden = factors.shape
    hidden = six_hidden // 6
    fused = ctx.fused
    recurrent_back = bf16_linear(ctx.w_low.t(), batch)

    # A private contiguous copy, because the last step's gradient is added in place.
    direct = torch.empty(steps, batch, hidden)
    direct.copy_(grad_hiddens)
    if grad_h_last is not None:
        direct[-1] += grad_h_last
    dc = torch.zeros(batch, hidden)
    if grad_c_last is not None:
        dc += grad_c_last

    grad_gates_low = factors.new_empty(steps, batch, 4 * hidden, dtype=LOW)
    if ctx.ids is None:
        grad_gates = factors.new_empty(steps, batch, 4 * hidden)
    else:
        grad_gates = factors.new_zeros(ctx.xproj_shape)  # the table's gradient
    grad_rows, id_rows = _step_rows(grad_gates, ctx.ids)
    direct_rows, factor_rows = _rows(direct), _rows(factors)
    low_rows = _rows(grad_gates_low)

    product = None
    with matmul_threads() as use_all:
        use_all(True)
        for t in range(steps - 1, -1, -1):
            fused.backward(
                product,
                direct_rows(t),
                factor_rows(t),
                dc,
                grad_rows(t),
                low_rows(t),
                ids=id_rows(t),
            )
            product = recurrent_back(grad_gates_low[t])
    return grad_gates, grad_gates_low, product.float(), dc


def _forward_ops(w_low, xproj, h0, c0):
    """Forward pass in PyTorch ops; returns hiddens (T, B, H), last c, saved."""
    steps, batch, four_hidden = xproj.shape
    hidden = four_hidden // 4
    recurrent = bf16_linear(w_low, batch)
    xproj = xproj.float()
    acts = xproj.new_empty(steps, batch, four_hidden)
    cells = xproj.new_empty(steps + 1, batch, hidden)
    tanh_cells = xproj.new_empty(steps, batch, hidden)
    hiddens = xproj.new_empty(steps, batch, hidden)
    hiddens_low = xproj.new_empty(steps + 1, batch, hidden, dtype=LOW)
    cells[0] = c0
    hiddens_low[0] = h0
    with matmul_threads() as use_all:
        for t in range(steps):
            use_all(True)
            product = recurrent(hiddens_low[t])
            use_all(False)
            gates = torch.add(xproj[t], product)
            h = cell_step(gates, cells[t], acts[t], cells[t + 1], tanh_cells[t])
            hiddens[t] = h
            hiddens_low[t + 1] = h
    return hiddens, cells[-1].clone(), (acts, cells, tanh_cells, hiddens_low)


def _backward_ops(ctx, grad_hiddens, grad_h_last, grad_c_last):
    """Backward pass in PyTorch ops; returns the gate gradients, dh0 and dc0."""
    acts, cells, tanh_cells, _ = ctx.saved_tensors
    steps, batch, four_hidden = acts.shape
    hidden = four_hidden // 4
    # dh_prev = dgates @ w_hh, i.e. a linear map with weight w_hh.T.
    recurrent_back = bf16_linear(ctx.w_low.t(), batch)
    i, f, g, o = acts.split(hidden, dim=2)
    # Factors of the chain rule that do not depend on the incoming gradient,
    # computed for all steps at once.
    o_dtanh = o * (1 - tanh_cells * tanh_cells)  # dc += dh * o_dtanh
    tanh_do = tanh_cells * o * (1 - o)  # d(o pre-activation) = dh * tanh_do
    # What dc multiplies into the gradients of the i, f and g pre-activations.
    ifg = acts.new_empty(steps, batch, 3, hidden)
    torch.mul(g, i * (1 - i), out=ifg[:, :, 0])
    torch.mul(cells[:-1], f * (1 - f), out=ifg[:, :, 1])
    torch.mul(i, 1 - g * g, out=ifg[:, :, 2])

    grad_gates = acts.new_empty(steps, batch, four_hidden)
    grad_gates_low = acts.new_empty(steps, batch, four_hidden, dtype=LOW)
    dh = grad_hiddens[-1].clone()
    if grad_h_last is not None:
        dh += grad_h_last
    dc = acts.new_zeros(batch, hidden)
    if grad_c_last is not None:
        dc += grad_c_last
    with matmul_threads() as use_all:
        for t in range(steps - 1, -1, -1):
            use_all(False)
            dc.addcmul_(dh, o_dtanh[t])
            step_grad = grad_gates[t]
            torch.mul(dh, tanh_do[t], out=step_grad[:, 3 * hidden :])
            torch.mul(
                ifg[t],
                dc.unsqueeze(1),
                out=step_grad[:, : 3 * hidden].view(batch, 3, hidden),
            )
            dc.mul_(f[t])
            grad_gates_low[t] = step_grad
            use_all(True)
            product = recurrent_back(grad_gates_low[t])
            use_all(False)
            dh = product.float()
            if t > 0:
                dh += grad_hiddens[t - 1]
    return grad_gates, grad_gates_low, dh, dc


def input_table(embedding: nn.Embedding, lstm: nn.LSTM) -> torch.Tensor:
    """Return the first layer's input projection of every character (V, 4H), fp32.

    Row v is W_ih @ embedding[v] + b_ih + b_hh. Gradients flow to all four tensors.
    """
    weight = lstm.weight_ih_l0.float()
    return F.linear(embedding.weight.float(), weight) + _layer_bias(lstm, 0)


def lstm_forward(
    embedding: nn.Embedding,
    lstm: nn.LSTM,
    ids: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run ids (B, T) through embedding and a batch-first LSTM with bf16 matmuls.

    Same result as `lstm(embedding(ids), state)` up to bf16 rounding, dropout
    between layers included, but time-major: returns the last layer's outputs
    (T, B, H) fp32 and the new state (h, c), each (num_layers, B, H).
    """
    h0, c0 = state
    last_h, last_c = [], []
    fused = cell_kernels.kernels()
    with torch.autocast("cpu", enabled=False):
        output = None  # the layer below's outputs (T, B, H)
        for layer in range(lstm.num_layers):
            table_ids = None
            if output is None:
                xproj = input_table(embedding, lstm)
                if fused is not None:
                    table_ids = _checked_ids(ids, xproj.size(0))
                else:
                    xproj = F.embedding(ids.t(), xproj)
            else:
                xproj = _layer_input(lstm, layer, output)
            w_hh = getattr(lstm, f"weight_hh_l{layer}")
            output, h, c = _Recurrence.apply(
                xproj, w_hh, h0[layer].float(), c0[layer].float(), fused, table_ids
            )
            last_h.append(h)
            last_c.append(c)
    return output, (torch.stack(last_h), torch.stack(last_c))


def _checked_ids(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Return a private time-major int64 copy (T, B) of ids (B, T).

    lstm_cell.c reads and writes table rows by id without checking, so this
    raises, as nn.Embedding and nn.LSTM do, for ids that are not integers, not
    (B, T) with T >= 1, or outside [0, vocab_size). The copy keeps the backward
    pass safe from later in-place changes to the caller's tensor.
    """
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"character ids must be integers, got {ids.dtype}")
    if ids.dim() != 2 or ids.size(1) == 0:
        raise ValueError(
            "character ids must have shape (batch, length) with length >= 1, "
            f"got {tuple(ids.shape)}"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise IndexError(
            f"character ids must lie in [0, {vocab_size}), got "
            f"{int(ids.min())}..{int(ids.max())}"
        )
    return ids.t().to(torch.int64, copy=True).contiguous()


def _layer_input(lstm: nn.LSTM, layer: int, below: torch.Tensor) -> torch.Tensor:
    """Return the input projection (T, B, 4H) of `layer` > 0 from the layer below."""
    inputs = F.dropout(below, lstm.dropout, lstm.training)
    weight = getattr(lstm, f"weight_ih_l{layer}")
    return F.linear(inputs.to(LOW), weight.to(LOW)).float() + _layer_bias(lstm, layer)


def _layer_bias(lstm: nn.LSTM, layer: int) -> torch.Tensor | float:
    """Return the sum of `layer`'s two biases in fp32, or 0 for an LSTM without."""
    if not lstm.bias:
        return 0.0
    total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
    return total.float()


def faster_for_training(hidden_size: int) -> bool:
    """Return True where these kernels train faster than oneDNN's bf16 LSTM."""
    return cell_kernels.kernels() is not None or hidden_size >= MIN_TRAINING_HIDDEN


def usable(lstm: nn.Module) -> bool:
    """Return True when `lstm` is a plain batch-first nn.LSTM these kernels can run."""
    return (
        isinstance(lstm, nn.LSTM)
        and lstm.batch_first
        and not lstm.bidirectional
        and lstm.proj_size == 0
    )


class Stepper:
    """A CharRNN with an LSTM, advanced one character per call with bf16 matmuls.

    Weights are cast and packed once, when the stepper is made; build a new one
    after changing the model. Meant for sampling: no gradients, no dropout.
    `use_all` is a switch from `matmul_threads`: calls run matmuls on all threads
    and everything else on one, and return with one thread in force, so that the
    caller's own small ops between steps run on one thread too.
    """

    def __init__(
        self, model: nn.Module, batch_size: int, use_all: Callable[[bool], None]
    ) -> None:
        self.use_all = use_all
        lstm = model.rnn
        self.hidden = lstm.hidden_size
        self.layers = lstm.num_layers
        with torch.no_grad():
            self.table = input_table(model.embedding, lstm)
            self.recurrent = [
                bf16_linear(getattr(lstm, f"weight_hh_l{layer}"), batch_size)
                for layer in range(self.layers)
            ]
            self.inputs = [
                bf16_linear(getattr(lstm, f"weight_ih_l{layer}"), batch_size)
                for layer in range(1, self.layers)
            ]
            self.biases = [_layer_bias(lstm, layer) for layer in range(1, self.layers)]
        self.head_weight = model.head.weight.detach().float()
        self.head_bias = model.head.bias.detach().float()

    def __call__(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Feed ids (B,) from state (h, c); return logits (B, V) and the new state.

        The new state is fp32 whatever the dtype of `state`.
        """
        h_all, c_all = (part.float().contiguous() for part in state)
        new_h, new_c = torch.empty_like(h_all), torch.empty_like(c_all)
        batch = ids.size(0)
        expected = (self.layers, batch, self.hidden)
        if h_all.shape != expected or c_all.shape != expected:
            raise ValueError(
                f"state must have shape {expected} for {batch} ids, got "
                f"{tuple(h_all.shape)} and {tuple(c_all.shape)}"
            )
        fused = cell_kernels.kernels()
        acts = h_all.new_empty(batch, 4 * self.hidden)
        tanh_c = h_all.new_empty(batch, self.hidden)
        h_low = h_all.new_empty(batch, self.hidden, dtype=LOW)  # bf16 copy of h
        use_all = self.use_all
        with torch.autocast("cpu", enabled=False):
            for layer in range(self.layers):
                use_all(False)
                if layer == 0:
                    gates = F.embedding(ids, self.table)
                else:
                    use_all(True)
                    product = self.inputs[layer - 1](h_low)
                    use_all(False)
                    gates = product.float() + self.biases[layer - 1]
                previous = h_all[layer].to(LOW)
                use_all(True)
                product = self.recurrent[layer](previous)
                use_all(False)
                if fused is not None:
                    fused.forward(
                        gates,
                        product,
                        c_all[layer],
                        new_c[layer],
                        new_h[layer],
                        h_low,
                        None,
                    )
                else:
                    gates += product
                    h = cell_step(gates, c_all[layer], acts, new_c[layer], tanh_c)
                    new_h[layer] = h
                    h_low.copy_(h)
            logits = torch.addmm(self.head_bias, new_h[-1], self.head_weight.t())
        return logits, (new_h, new_c)
