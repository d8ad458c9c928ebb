"""One rank of the stop-and-resume check in test_distributed.py, run by torchrun.

    torchrun --nproc-per-node 2 ... distributed_worker.py RUN_DIR STOP_STEP STEPS OUT

It resumes RUN_DIR, sends SIGTERM to rank 0 alone after STOP_STEP, then resumes
again through the command line (`abcrnn train --resume`) up to STEPS. Each rank
writes OUT/rank-N.json with the status and step where the first call stopped and
the exit status of the second.

The worker joins the process group itself, once, and both training calls use it:
a second init_process_group in the same process can hang while the Gloo ranks
connect.
"""

import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from torch import distributed as dist

from abcrnn import cli
from abcrnn.checkpoint import load_checkpoint
from abcrnn.config import TrainConfig
from abcrnn.training import train


def main(run_dir: Path, stop_step: int, steps: int, out: Path) -> None:
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_config"]
    config = TrainConfig.from_dict(saved)
    config = dataclasses.replace(config, steps=steps, sample_every=1)

    # Callbacks run on rank 0 only, so only rank 0 receives the signal.
    def stop_at(step, model, vocabulary, metrics):
        if step == stop_step:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = train(config, run_dir, resume=True, callbacks=[stop_at])
    status = cli.main(
        ["train", "--resume", str(run_dir), "--sample-every", "0", "--no-progress"]
    )
    record = {"status": stopped.status, "step": stopped.step, "exit_status": status}
    rank = os.environ["RANK"]
    (out / f"rank-{rank}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    dist.init_process_group("gloo")
    try:
        main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    finally:
        dist.destroy_process_group()
