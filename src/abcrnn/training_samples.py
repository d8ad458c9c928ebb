"""A training callback that samples tunes, saves them and scores them with the checker.

The training loop does not import this module; `abcrnn train` passes the callback
in (as does `abcrnn demo`), so sampling and checking stay above the loop.
"""

from __future__ import annotations

import logging
from pathlib import Path

from abcrnn.atomic import write_text_atomic
from abcrnn.config import TrainConfig
from abcrnn.model import CharRNN
from abcrnn.sampling import SampleConfig, generate_tunes
from abcrnn.vocabulary import Vocabulary

log = logging.getLogger(__name__)


def sample_callback(run_dir: Path, config: TrainConfig):
    """Return a callback that writes run_dir/samples/step-N.abc when called.

    The callback returns {"samples": text} plus "valid_tune_share" (the share of
    sampled tunes that the ABC checker accepts) when the checker is installed.
    With config.sample_audio it also renders the tunes into samples/step-N/ and
    returns each WAV path. Sampling uses the step as its seed, so a resumed run
    samples the same tunes.
    """

    def callback(step: int, model: CharRNN, vocab: Vocabulary, metrics: dict):
        settings = SampleConfig(
            num_tunes=config.sample_tunes,
            temperature=config.sample_temperature,
            max_length=config.sample_max_length,
            seed=step,
        )
        tunes = generate_tunes(model, vocab, settings).tunes
        text = "\n\n".join(tunes) + "\n"
        folder = Path(run_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / f"step-{step}.abc", text)
        returned: dict[str, object] = {"samples": text}
        share = valid_share(tunes)
        if share is not None:
            returned["valid_tune_share"] = share
        if config.sample_audio:
            returned |= render_audio(tunes, folder / f"step-{step}")
        return returned

    return callback


def render_audio(tunes: list[str], out_dir: Path) -> dict[str, Path]:
    """Render tunes to WAV with abcrnn.render; return {"audio/tune-N": wav_path}.

    Tunes that do not render are left out, with a warning when rendering failed as
    a whole, so training goes on either way.
    """
    from abcrnn.errors import RenderError

    try:
        from abcrnn.render import render_tunes
    except ModuleNotFoundError as error:
        if error.name != "abcrnn.render":
            raise
        log.warning("sample audio skipped: abcrnn.render is not installed")
        return {}
    try:
        report = render_tunes(tunes, out_dir)
    except RenderError as error:
        log.warning("sample audio skipped: %s", error)
        return {}
    return {
        f"audio/tune-{tune.index}": tune.wav_path
        for tune in report.tunes
        if tune.wav_path is not None
    }


def valid_share(tunes: list[str]) -> float | None:
    """Return the share of tunes the ABC checker finds valid, or None without it."""
    try:
        from abcrnn.abc.checker import check_tune
    except ModuleNotFoundError as error:
        if error.name != "abcrnn.abc.checker":
            raise
        return None
    if not tunes:
        return 0.0
    return sum(check_tune(tune).valid for tune in tunes) / len(tunes)
