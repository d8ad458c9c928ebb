"""`abcrnn demo` on a tiny corpus: every file of the whole job is written."""

from __future__ import annotations

from abcrnn.cli import main
from ml_support import TUNES


def test_demo_writes_run_and_tunes(tmp_path, capsys):
    # Eight tunes repeated so the corpus is longer than the default preset's
    # window of 160 characters in both splits; 2 steps train nothing useful, so
    # the test checks the files and the summary, not the music.
    corpus = tmp_path / "tiny.abc"
    corpus.write_text((TUNES.strip() + "\n\n") * 6)
    run_dir = tmp_path / "run"

    status = main(
        ["demo", "--corpus", str(corpus), "--steps", "2", "--num-tunes", "2"]
        + ["--run-dir", str(run_dir)]
    )
    output = capsys.readouterr().out

    assert status in (0, 1)  # 1 when no tune of the untrained model converts
    assert (run_dir / "loss.png").is_file()
    assert (run_dir / "metrics.csv").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "tunes" / "index.html").is_file()
    assert "training finished at step 2" in output
    assert "bits/char" in output


def test_demo_second_run_reuses_model(tmp_path, capsys):
    corpus = tmp_path / "tiny.abc"
    corpus.write_text((TUNES.strip() + "\n\n") * 6)
    args = ["demo", "--corpus", str(corpus), "--steps", "2", "--num-tunes", "1"]
    args += ["--run-dir", str(tmp_path / "run")]
    main(args)
    capsys.readouterr()

    main(args)
    output = capsys.readouterr().out

    assert "resuming" in output
    assert "training already finished at step 2" in output
