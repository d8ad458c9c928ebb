"""The lab's music-generation pipeline, rewritten as a baseline to time abcrnn against.

The course lab (a Colab notebook, after MIT 6.S191 Lab 1 part 2) trains a one-layer
character LSTM on Irish folk tunes and samples from it one character at a time. This
module repeats the work that its code does, step for step, so that the benchmark
harness times the lab's approach and not a tidied version of it:

- tunes come from a regular expression over the file, with overlapping matches, and
  the training text is ``"\\n\\n".join(songs)``;
- ``get_batch`` picks random windows with numpy and builds a tensor from a list of
  numpy arrays on every step, and the loop converts that batch again;
- ``LSTMModel`` is Embedding (256) -> LSTM (1024, batch_first) -> Linear, trained in
  fp32 with Adam (lr 5e-3) and cross-entropy on batches of 8 windows of 100 characters,
  for 3000 steps, reading ``loss.item()`` after every step;
- ``generate_text`` feeds one character at a time with batch size 1, carries the state,
  applies softmax and ``torch.multinomial`` to each step's logits, and calls
  ``.item()`` for each character. Like the lab, it runs without ``torch.no_grad()``.

The lab's Comet logging, live loss plot and checkpoint saves every 100 steps are left
out: they are notebook bookkeeping, not part of training, and would only slow the
baseline down. This module does not import abcrnn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

# A song is the text between blank lines (or the start of the file) and the next blank
# line. The lab's helper matches with overlapping=True, so that the search resumes one
# character after each match start; ``extract_songs`` does the same with ``re``.
SONG_PATTERN = re.compile(r"(^|\n\n)(.*?)\n\n", re.DOTALL)


@dataclass(frozen=True)
class LabSettings:
    """The lab's hyperparameters (its ``params`` dict); lengths are in characters."""

    num_training_iterations: int = 3000
    batch_size: int = 8
    seq_length: int = 100
    learning_rate: float = 5e-3
    embedding_dim: int = 256
    hidden_size: int = 1024


def extract_songs(text: str) -> list[str]:
    """Return every song the lab's overlapping regular expression finds in `text`.

    As in the lab, a song not followed by a blank line is missed, such as the last
    one in a file that ends with a single newline. Each triple newline yields an
    extra copy of the next song, which starts with a newline.
    """
    songs = []
    position = 0
    while (match := SONG_PATTERN.search(text, position)) is not None:
        songs.append(match.group(2))
        position = match.start() + 1
    return songs


def load_songs(path: str | Path) -> list[str]:
    """Read an ABC file and return its songs as the lab extracts them."""
    return extract_songs(Path(path).read_text(encoding="utf-8"))


def build_vocabulary(text: str) -> tuple[dict[str, int], np.ndarray]:
    """Return ``(char2idx, idx2char)`` for the sorted set of characters in `text`."""
    vocab = sorted(set(text))
    char2idx = {char: index for index, char in enumerate(vocab)}
    return char2idx, np.array(vocab)


def vectorize_string(text: str, char2idx: dict[str, int]) -> np.ndarray:
    """Return the ids of `text` as a numpy int array, one per character."""
    return np.array([char2idx[char] for char in text])


def get_batch(
    vectorized_songs: np.ndarray, seq_length: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return random input windows and the same windows shifted by one, (B, T) each."""
    n = vectorized_songs.shape[0] - 1
    starts = np.random.choice(n - seq_length, batch_size)
    input_batch = [vectorized_songs[i : i + seq_length] for i in starts]
    output_batch = [vectorized_songs[i + 1 : i + seq_length + 1] for i in starts]

    # The lab builds each tensor from a Python list of numpy arrays on every step,
    # the slow path that PyTorch warns about once per process.
    x_batch = torch.tensor(input_batch, dtype=torch.long)
    y_batch = torch.tensor(output_batch, dtype=torch.long)
    return x_batch, y_batch


class LSTMModel(nn.Module):
    """Embedding -> one LSTM layer (batch_first) -> Linear over the vocabulary."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, vocab_size)

    def init_hidden(
        self, batch_size: int, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return zero ``(h, c)``, each of shape (1, batch_size, hidden_size)."""
        return (
            torch.zeros(1, batch_size, self.hidden_size).to(device),
            torch.zeros(1, batch_size, self.hidden_size).to(device),
        )

    def forward(self, x, state=None, return_state=False):
        """Map ids (B, T) to logits (B, T, V), and the new state if `return_state`."""
        x = self.embedding(x)
        if state is None:
            state = self.init_hidden(x.size(0), x.device)
        out, state = self.lstm(x, state)
        out = self.fc(out)
        return out if not return_state else (out, state)


def compute_loss(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Return the mean cross-entropy in nats of logits (B, T, V) for labels (B, T)."""
    batched_logits = logits.view(-1, logits.size(-1))
    batched_labels = labels.view(-1)
    return nn.functional.cross_entropy(batched_logits, batched_labels)


class LabTrainer:
    """The lab's model, optimizer and training step, driven one step at a time.

    The harness owns the loop so that it can time steps and validate between them.
    """

    def __init__(
        self,
        vocab_size: int,
        settings: LabSettings = LabSettings(),
        device: torch.device | str = "cpu",
    ) -> None:
        self.settings = settings
        self.device = torch.device(device)
        self.model = LSTMModel(
            vocab_size, settings.embedding_dim, settings.hidden_size
        ).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=settings.learning_rate
        )
        self.history: list[float] = []

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run one forward, backward and Adam update on ids x, y (B, T); return loss."""
        self.model.train()
        self.optimizer.zero_grad()
        y_hat = self.model(x)
        loss = compute_loss(y, y_hat)
        loss.backward()
        self.optimizer.step()
        return loss

    def run_iteration(self, vectorized_songs: np.ndarray) -> float:
        """Draw a batch, train on it and record the loss, as one lab loop iteration.

        Returns the loss in nats per character. The ``.item()`` call waits for the
        device, as the lab's loop does when it logs and plots every step.
        """
        x_batch, y_batch = get_batch(
            vectorized_songs, self.settings.seq_length, self.settings.batch_size
        )
        # The lab converts the batch a second time; clone() is the same copy without
        # the warning that torch.tensor(tensor) prints.
        x_batch = x_batch.clone().to(self.device)
        y_batch = y_batch.clone().to(self.device)
        loss = self.train_step(x_batch, y_batch).item()
        self.history.append(loss)
        return loss


def generate_text(
    model: nn.Module,
    start_string: str,
    char2idx: dict[str, int],
    idx2char: np.ndarray,
    generation_length: int = 1000,
    device: torch.device | str = "cpu",
) -> str:
    """Sample `generation_length` characters after `start_string`, one at a time.

    `model` must take ``(x, state, return_state=True)`` like ``LSTMModel``. The prime
    is fed whole, so it must be one character long (the lab uses "X"): a longer prime
    makes the next input a batch of several rows, as it does in the lab.
    """
    input_idx = [char2idx[s] for s in start_string]
    input_idx = torch.tensor([input_idx], dtype=torch.long).to(device)
    state = model.init_hidden(input_idx.size(0), device)
    text_generated = []

    # NOTE: no torch.no_grad() here, as in the lab, so autograd records every step.
    for _ in range(generation_length):
        predictions, state = model(input_idx, state, return_state=True)
        predictions = predictions.squeeze(0)
        input_idx = torch.multinomial(torch.softmax(predictions, dim=-1), num_samples=1)
        text_generated.append(idx2char[input_idx.item()])
    return start_string + "".join(text_generated)
