"""The data both contenders see: one tune list, one split, one validation score.

Both sides train on the same training tunes and are scored by `validation_loss` on
the same validation text, so their losses compare directly. The split is abcrnn's
`split_corpus` with the seed that `abcrnn train` uses, so that abcrnn's own reader,
given `corpus_file`, ends up with exactly these training and validation tunes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lab_reference
import torch
from torch.nn import functional as F

from abcrnn.corpus import CorpusOptions, join_tunes, load_corpus, split_corpus
from abcrnn.run_setup import SPLIT_SEED

# abcrnn's reader with every cleaning step off: tunes keep their text.
UNCLEANED = CorpusOptions(normalise=False, deduplicate=False)

# Logits (B, T, V) for ids (B, T), from a zero state.
LogitsFunction = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Workload:
    """Training and validation tunes, and the files and texts made from them."""

    source: str
    train_tunes: list[str]
    valid_tunes: list[str]
    corpus_file: Path

    @property
    def lab_train_text(self) -> str:
        """Return the training text the way the lab joins songs (no trailing gap)."""
        return "\n\n".join(self.train_tunes)

    @property
    def valid_text(self) -> str:
        """Return the validation text, each tune followed by a blank line."""
        return join_tunes(self.valid_tunes)

    @property
    def chars(self) -> tuple[str, ...]:
        """Return the sorted characters of all tunes (the vocabulary of both sides)."""
        return tuple(sorted(set(self.lab_train_text + self.valid_text)))

    def summary(self) -> dict[str, object]:
        """Return counts and a fingerprint that identify this split."""
        digest = hashlib.sha256(
            f"{self.lab_train_text}\0{self.valid_text}".encode()
        ).hexdigest()
        return {
            "source": self.source,
            "train_tunes": len(self.train_tunes),
            "valid_tunes": len(self.valid_tunes),
            "train_chars": len(self.lab_train_text),
            "valid_chars": len(self.valid_text),
            "vocab_size": len(self.chars),
            "split_seed": SPLIT_SEED,
            "sha256": digest,
        }


def tunes_from_lab_file(path: Path, work_dir: Path) -> list[str]:
    """Return the tunes of an ABC file as the lab extracts them, read by abcrnn.

    The lab's overlapping regular expression yields a few stray copies and pieces
    (a second copy at each triple newline, a tune cut in two at a blank line inside
    it). abcrnn's reader, with its cleaning off, joins the pieces to whole tunes
    that start at their X: line and drops blank lines inside tunes. Its output is
    the tune list that it finds again in `corpus_file`, so both sides share one
    split.
    """
    songs_file = work_dir / "lab_songs.abc"
    songs_file.write_text("\n\n".join(lab_reference.load_songs(path)), encoding="utf-8")
    return load_corpus([str(songs_file)], UNCLEANED).tunes


def tunes_from_collection(source: str) -> list[str]:
    """Return the tunes abcrnn loads from `source` with its default cleaning."""
    return load_corpus([source]).tunes


def build_workload(
    source: str, tunes: list[str], valid_fraction: float, work_dir: Path
) -> Workload:
    """Split `tunes` and write them, in order, to work_dir/corpus.abc for abcrnn."""
    train, valid = split_corpus(tunes, valid_fraction, SPLIT_SEED)
    corpus_file = work_dir / "corpus.abc"
    corpus_file.write_text(join_tunes(tunes), encoding="utf-8")
    return Workload(source, train, valid, corpus_file)


def encode(text: str, chars: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """Return the ids (N,) of `text` under the sorted vocabulary `chars`."""
    index = {char: i for i, char in enumerate(chars)}
    return torch.tensor([index[char] for char in text], dtype=torch.long, device=device)


def validation_loss(
    logits_of: LogitsFunction, ids: torch.Tensor, seq_len: int, batch_size: int = 32
) -> float:
    """Return the mean cross-entropy (nats per character) of a model over `ids`.

    The text is cut into consecutive windows of `seq_len` targets, each scored from
    a zero state in fp32; a final shorter window scores the rest. Every character
    after the first is a target exactly once.
    """
    full_count = (ids.numel() - 1) // seq_len
    windows = ids[: full_count * seq_len + 1].unfold(0, seq_len + 1, seq_len)
    chunks = list(windows.split(batch_size))  # each (B, T + 1)
    tail = ids[full_count * seq_len :]
    if tail.numel() >= 2:
        chunks.append(tail[None])

    total = 0.0
    count = 0
    with torch.inference_mode():
        for chunk in chunks:
            logits = logits_of(chunk[:, :-1]).float()  # (B, T, V)
            targets = chunk[:, 1:]
            loss = F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), reduction="sum"
            )
            total += loss.item()
            count += targets.numel()
    return total / max(count, 1)
