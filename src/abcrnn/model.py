"""The character-level recurrent network: Embedding -> LSTM/GRU/RNN -> Linear."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from abcrnn import bf16_lstm, cell_kernels
from abcrnn.errors import ConfigError

CELLS = ("lstm", "gru", "rnn")

# An LSTM state is the pair (h, c); a GRU or plain RNN state is h alone. Each tensor
# has shape (num_layers, B, hidden_size).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a CharRNN; the checkpoint stores it so sampling rebuilds the network."""

    vocab_size: int
    embedding_dim: int = 128
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0
    cell: str = "lstm"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.cell not in CELLS:
            raise ConfigError(
                f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (for checkpoints and config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from `to_dict` output."""
        return cls(**data)


class CharRNN(nn.Module):
    """Predict the next character at every position of a batch of id sequences.

    Dropout (probability `config.dropout`) acts between stacked recurrent layers and
    on the last layer's output, so it also regularises a one-layer network.

    Under CPU bfloat16 autocast an LSTM runs `bf16_lstm`'s kernels where they are
    faster than nn.LSTM's (see `bf16_lstm.faster_for_training`); the parameters
    are nn.LSTM's either way.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.cell]
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = rnn_class(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(
        self, x: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run ids `x` (B, T) from `state` (zeros if None); return logits (B, T, V).

        The returned state is the one after the last position, ready to continue.
        """
        if state is None:
            state = self.initial_state(x.size(0), x.device)
        if self._bf16_kernels(x):
            # Time-major (T, B, H); the logits are transposed back, being smaller.
            output, state = bf16_lstm.lstm_forward(self.embedding, self.rnn, x, state)
            return self._logits(output).transpose(0, 1), state
        output, state = self.rnn(self.embedding(x), state)  # (B, T, H)
        return self._logits(output), state

    def _logits(self, output: torch.Tensor) -> torch.Tensor:
        return self.head(dropout(output, self.dropout.p, self.training))

    def _bf16_kernels(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and bf16_lstm.usable(self.rnn)
            and bf16_lstm.faster_for_training(self.config.hidden_size)
        )

    def initial_state(self, batch_size: int, device: torch.device | str) -> State:
        """Return a zero state: tensors of shape (num_layers, batch_size, hidden)."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        dtype = self.head.weight.dtype
        h = torch.zeros(shape, device=device, dtype=dtype)
        if self.config.cell == "lstm":
            return h, torch.zeros_like(h)
        return h


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each value with probability p and scale the rest by 1 / (1 - p).

    Same as F.dropout in distribution. On the CPU the mask is drawn by lstm_cell.c
    from a seed where abcrnn.cell_kernels could build it, else from torch.rand.
    Both beat the bernoulli_ behind F.dropout: on 32 x 160 x 512 fp32 values on a
    2-core AMD EPYC they took about 2 ms and 8 ms, against 22 ms.
    """
    if not training or p in (0.0, 1.0) or x.device.type != "cpu":
        return F.dropout(x, p, training)
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    kernels = cell_kernels.kernels()
    if kernels is not None and x.dtype == torch.float32:
        return _SeededDropout.apply(x, p, kernels)
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * keep * (1.0 / (1.0 - p))


class _SeededDropout(torch.autograd.Function):
    """Dropout whose mask lstm_cell.c recomputes from a seed instead of storing."""

    @staticmethod
    def forward(ctx, x, p, kernels):  # type: ignore[override]
        # The seed comes from torch's generator, so torch.manual_seed and the
        # generator state saved in checkpoints fix the masks as they do F.dropout's.
        ctx.seed = int(torch.randint(0, 2**62, ()))
        ctx.p, ctx.kernels = p, kernels
        return kernels.dropout(x.contiguous(), p, ctx.seed)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        grad = grad.float().contiguous()
        return ctx.kernels.dropout(grad, ctx.p, ctx.seed), None, None
