"""Training and validation batches cut from one long tensor of character ids.

A window starting at i gives the input x = text[i : i + T] and the target
y = text[i + 1 : i + T + 1], so y[t] is the character that follows x[t]:

    text:  X : 1 \\n T : ...
    x:     X : 1 \\n T          (T characters)
    y:       : 1 \\n T :        (the same window shifted by one)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from abcrnn.errors import CorpusError


class RandomWindows:
    """Draw batches of windows at random start positions, as the lab does.

    Every start 0 .. len(data) - T - 1 is equally likely, and draws are independent
    (with replacement). The id tensor stays on its device and the start positions are
    drawn there, from a generator seeded with `seed`, so `state_dict` plus
    `load_state_dict` repeat the exact sequence of batches after a resume.
    """

    def __init__(self, data: torch.Tensor, seq_len: int, batch_size: int, seed: int):
        _require_length(data, seq_len, "training")
        self.seq_len = seq_len
        self.batch_size = batch_size
        # (N - T, T + 1) view: row i is the window text[i : i + T + 1].
        self.windows = data.unfold(0, seq_len + 1, 1)
        self.generator = torch.Generator(device=data.device)
        self.generator.manual_seed(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x, y), both long tensors of shape (batch_size, seq_len)."""
        starts = torch.randint(
            0,
            self.windows.size(0),
            (self.batch_size,),
            generator=self.generator,
            device=self.windows.device,
        )
        chunk = self.windows[starts]  # (B, T + 1)
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the generator state (a CPU byte tensor)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state saved by `state_dict`."""
        self.generator.set_state(state["generator"].cpu())


def validation_batches(
    data: torch.Tensor, seq_len: int, batch_size: int, max_batches: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield fixed (x, y) batches of contiguous, non-overlapping windows.

    The text is cut into windows starting at 0, T, 2T, ...; when there are more than
    `max_batches * batch_size` of them, that many are taken evenly spaced over the
    whole text, so the same windows come back on every call. A text shorter than
    T + 1 characters (but at least 2) gives one shorter window. Yields nothing for
    fewer than 2 characters.
    """
    if data.numel() < 2:
        return
    seq_len = min(seq_len, data.numel() - 1)
    count = (data.numel() - 1) // seq_len
    windows = data[: count * seq_len + 1].unfold(0, seq_len + 1, seq_len)  # (W, T+1)
    limit = max_batches * batch_size
    if count > limit:
        keep = torch.linspace(0, count - 1, limit, device=data.device).round().long()
        windows = windows[keep]
    for chunk in windows.split(batch_size):
        yield chunk[:, :-1], chunk[:, 1:]


def _require_length(data: torch.Tensor, seq_len: int, split: str) -> None:
    if data.numel() < seq_len + 1:
        raise CorpusError(
            f"the {split} text has {data.numel()} characters but one window of "
            f"--seq-len {seq_len} needs {seq_len + 1}; use a shorter --seq-len "
            f"(at most {max(data.numel() - 1, 1)}) or a larger corpus"
        )
