"""Score one finished study run: metrics, checked sample tunes, one tune as audio.

`score_run` reads the run folder that `train` wrote and returns the run's summary,
which the study stores as run_dir/summary.json. The summary is what marks a run
as done: a run folder with one is never trained again.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from abcrnn.atomic import write_text_atomic
from abcrnn.config import TrainConfig
from abcrnn.errors import AbcrnnError
from abcrnn.tracking import bits_per_char, read_metrics

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
CHECK_TUNES_FILE = "check-tunes.abc"
SAMPLE_FOLDER = "sample"
# The sample tune's audio stays small enough to embed in report.html.
SAMPLE_RATE_HZ = 11025
SAMPLE_BARS = 8  # a strain of a reel or jig
# A validation bits/char this far above the run's best counts as overfitting.
OVERFIT_BITS = 0.01


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """Return run_dir/summary.json, or None when the run has not been scored."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write run_dir/summary.json atomically."""
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    return write_text_atomic(Path(run_dir) / SUMMARY_FILE, text)


def score_run(
    run_dir: Path,
    config: TrainConfig,
    values: dict[str, Any],
    status: str,
    num_check_tunes: int,
    error: str = "",
    pruned_at: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """Return the summary of a trained run (status "finished", "pruned", "diverged").

    `pruned_at` is the (step, validation bits/char) at which a pruned run
    stopped, which metrics.csv lacks. Tunes are sampled from the best checkpoint
    with the run's sampling settings and seed 0, so a run always gives the same
    tunes.
    """
    run_dir = Path(run_dir)
    summary: dict[str, Any] = {
        "name": run_dir.name,
        "values": values,
        "status": status,
        "error": error,
        "train_config": config.to_dict(),
    }
    rows = read_metrics(run_dir / "metrics.csv")
    summary |= summarise_metrics(rows, config, pruned_at)
    if (run_dir / "checkpoints" / "best.pt").is_file():
        tunes, unfinished = sample_tunes(run_dir, config, num_check_tunes)
        summary |= check_tunes(tunes, unfinished)
        write_text_atomic(run_dir / CHECK_TUNES_FILE, "\n\n".join(tunes) + "\n")
        summary |= render_sample(pick_sample(tunes), run_dir / SAMPLE_FOLDER)
    return summary


def summarise_metrics(
    rows: list[dict[str, str]],
    config: TrainConfig,
    last_point: tuple[int, float] | None = None,
) -> dict:
    """Return speed, best and last validation, and overfitting from metrics.csv rows.

    chars_per_s is the median of the logged training speeds (validation excluded);
    train_seconds is the training time those speeds imply. `last_point` is a
    (step, validation bits/char) measured after the last row.
    """
    chars_per_step = config.batch_size * config.seq_len
    speeds, seconds, previous = [], 0.0, 0
    for row in rows:
        step = int(row["step"])
        if row["tokens_per_s"]:
            speed = float(row["tokens_per_s"])
            speeds.append(speed)
            seconds += (step - previous) * chars_per_step / max(speed, 1e-9)
            previous = step
    curve = [(int(r["step"]), float(r["val_bpc"])) for r in rows if r["val_bpc"]]
    last_step = int(rows[-1]["step"]) if rows else 0
    if last_point is not None:
        curve.append(last_point)
        last_step = max(last_step, last_point[0])
    result: dict[str, Any] = {
        "steps": last_step,
        "planned_steps": config.steps,
        "chars_seen": last_step * chars_per_step,
        "chars_per_s": statistics.median(speeds) if speeds else None,
        "train_seconds": seconds,
        "curve": [[step * chars_per_step, bpc] for step, bpc in curve],
    }
    train_losses = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    result["last_train_bpc"] = bits_per_char(train_losses[-1]) if train_losses else None
    if not curve:
        return result | {"best_val_bpc": None, "best_step": None, "last_val_bpc": None}
    best_step, best = min(curve, key=lambda point: point[1])
    last = curve[-1][1]
    return result | {
        "best_val_bpc": best,
        "best_step": best_step,
        "last_val_bpc": last,
        "overfits": last - best > OVERFIT_BITS,
    }


def sample_tunes(
    run_dir: Path, config: TrainConfig, num_tunes: int
) -> tuple[list[str], int]:
    """Sample tunes from the run's best checkpoint; return them and how many are cut.

    Unfinished tunes reached sample_max_length before the blank line that ends a
    tune, and are kept as far as they got.
    """
    from abcrnn.checkpoint import load_for_sampling
    from abcrnn.sampling import SampleConfig, generate_tunes

    model, vocabulary, _ = load_for_sampling(run_dir)
    settings = SampleConfig(
        num_tunes=num_tunes,
        temperature=config.sample_temperature,
        max_length=config.sample_max_length,
        seed=0,
    )
    result = generate_tunes(model, vocabulary, settings)
    return list(result.tunes), result.unfinished


def check_tunes(tunes: list[str], unfinished: int = 0) -> dict[str, Any]:
    """Return the shares of tunes that the checker accepts and that ended."""
    from abcrnn.abc.checker import check_tune

    count = len(tunes)
    valid = sum(check_tune(tune).valid for tune in tunes)
    return {
        "check_tunes": count,
        "valid_tunes": valid,
        "valid_tune_share": valid / count if count else None,
        "ended_tune_share": (count - unfinished) / count if count else None,
    }


def pick_sample(tunes: list[str]) -> str:
    """Return the tune to play: the shortest valid tune of at least SAMPLE_BARS bars.

    Bars are counted as "|" characters, so a double bar counts twice. Without
    such a tune, the shortest valid tune is taken, else the first tune.
    """
    from abcrnn.abc.checker import check_tune

    valid = [tune for tune in tunes if check_tune(tune).valid]
    long_enough = [tune for tune in valid if tune.count("|") >= SAMPLE_BARS]
    if long_enough or valid:
        return min(long_enough or valid, key=len)
    return tunes[0]


def render_sample(tune: str, out_dir: Path) -> dict[str, Any]:
    """Render one tune to out_dir/sample-01.{abc,mid,wav}; return its paths or why not.

    Paths are relative to the run folder (the parent of `out_dir`).
    """
    from abcrnn.render import render_tunes

    result: dict[str, Any] = {"sample_abc": tune, "sample_wav": None}
    try:
        report = render_tunes(
            [tune], out_dir, stem="sample", sample_rate=SAMPLE_RATE_HZ
        )
    except AbcrnnError as error:
        log.warning("the sample tune of %s was not rendered: %s", out_dir.parent, error)
        return result | {"sample_error": str(error)}
    rendered = report.tunes[0]
    if not rendered.ok or rendered.wav_path is None:
        return result | {"sample_error": rendered.reason}
    relative = rendered.wav_path.relative_to(out_dir.parent).as_posix()
    return result | {"sample_wav": relative, "sample_seconds": rendered.seconds}
