"""Shared set-up for the web tests: a tiny trained run and a live local server."""

from __future__ import annotations

import atexit
import functools
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Six short tunes with the usual header fields and repeated sections, so the tiny
# model's vocabulary contains every character of the default priming header.
TINY_CORPUS = """\
X:1
T:The Morning Jig
M:6/8
L:1/8
K:G
|:GAB cBA|BAG E2D|GAB cBA|BGE D3:|

X:2
T:The Long Reel
M:C|
L:1/8
K:D
|:DFAF DFAF|GBdB AFED|DFAF DFAF|GBAG FDD2:|

X:3
T:An Air
M:3/4
L:1/8
K:Am
|:A2 c2 e2|d2 c2 B2|A2 G2 E2|A6:|

X:4
T:The Mixed Hornpipe
M:2/4
L:1/8
K:Gmix
|:GF GA|Bc dB|cA FA|G2 G2:|

X:5
T:Slip Away
M:9/8
L:1/8
K:Em
|:E2F G2A B2c|d2B A2F E3:|

X:6
T:The Last Tune
M:6/8
L:1/8
K:D
|:dcB AFD|EFG FED|dcB AFD|EFE D3:|
"""

RUN_NAME = "tiny"


@functools.cache
def tiny_runs_dir() -> Path:
    """Train a tiny run once per test session; return the runs folder holding it.

    The run is `RUN_NAME`: 30 steps of a 32-unit LSTM on TINY_CORPUS, a few seconds
    on one CPU core. The folder is deleted when the interpreter exits.
    """
    from abcrnn.config import TrainConfig
    from abcrnn.training import train

    root = Path(tempfile.mkdtemp(prefix="abcrnn-web-runs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    corpus = root / "tiny.abc"
    corpus.write_text(TINY_CORPUS, encoding="utf-8")
    config = TrainConfig(
        corpus=(str(corpus),),
        valid_fraction=0.2,
        embedding_dim=16,
        hidden_size=32,
        steps=30,
        batch_size=4,
        seq_len=32,
        device="cpu",
        threads=1,
        eval_every=10,
        eval_batches=2,
        log_every=0,
        checkpoint_every=0,
        tensorboard=False,
    )
    runs_dir = root / "runs"
    train(config, runs_dir / RUN_NAME)
    return runs_dir


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(
    runs_dir: Path, output_dir: Path, workers: int | None = None
) -> Iterator[str]:
    """Run the app with uvicorn in a thread on 127.0.0.1; yield its base address."""
    import uvicorn

    from abcrnn.web.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(runs_dir, output_dir, workers),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
