"""Shared set-up for the model, training and sampling tests: tiny corpus, config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from abcrnn.config import TrainConfig

# Eight short tunes with the usual header fields. Seven train and one (X:4, with the
# 0.125 validation share) is held out, so validation has some text to score.
TUNES = """\
X:1
T:Morning
M:6/8
L:1/8
K:G
|:GAB cBA|BAG E2D|GAB cBA|BGE D3:|

X:2
T:Long Reel
M:4/4
L:1/8
K:D
|:DFAF DFAF|GBdB AFED|DFAF DFAF|GBAG FDD2:|

X:3
T:Air
M:3/4
L:1/8
K:Am
|:A2 c2 e2|d2 c2 B2|A2 G2 E2|A6:|

X:4
T:Hornpipe
M:2/4
L:1/8
K:G
|:GF GA|Bc dB|cA FA|G2 G2:|

X:5
T:Slip
M:9/8
L:1/8
K:Em
|:E2F G2A B2c|d2B A2F E3:|

X:6
T:Last
M:6/8
L:1/8
K:D
|:dcB AFD|EFG FED|dcB AFD|EFE D3:|

X:7
T:Polka
M:2/4
L:1/8
K:A
|:AB cd|ec AB|cB AF|E2 E2:|

X:8
T:Slide
M:12/8
L:1/8
K:D
|:A3 d2e f2e d2B|A3 B2A F2E D3:|
"""


def write_corpus(folder: Path, text: str = TUNES) -> Path:
    """Write `text` to folder/tunes.abc and return the path."""
    path = folder / "tunes.abc"
    path.write_text(text, encoding="utf-8")
    return path


def tiny_config(corpus: Path, **changes) -> TrainConfig:
    """Return a config that trains a 32-unit LSTM on `corpus` in well under a second."""
    config = TrainConfig(
        corpus=(str(corpus),),
        valid_fraction=0.125,
        embedding_dim=8,
        hidden_size=32,
        num_layers=1,
        dropout=0.0,
        lr=1e-2,
        lr_schedule="constant",
        steps=6,
        batch_size=4,
        seq_len=24,
        device="cpu",
        bf16="off",
        threads=1,
        eval_every=3,
        eval_batches=2,
        sample_every=0,
        log_every=1,
        checkpoint_every=3,
        tensorboard=False,
    )
    return dataclasses.replace(config, **changes)
