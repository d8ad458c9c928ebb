"""`abcrnn serve`: its flags, and a real server started from the command line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from abcrnn.cli import build_parser, main
from abcrnn.commands.serve import allowed_hosts, is_loopback

pytest.importorskip("fastapi", reason="the web extra is not installed (.[web])")
pytest.importorskip("uvicorn", reason="the web extra is not installed (.[web])")
httpx = pytest.importorskip("httpx", reason="the web extra is not installed (.[web])")

from fastapi.testclient import TestClient  # noqa: E402

from abcrnn.web.app import create_app  # noqa: E402
from web_support import free_port  # noqa: E402


def test_serve_defaults_bind_loopback():
    args = build_parser().parse_args(["serve"])

    assert args.host == "127.0.0.1"
    assert args.port == 8000
    assert args.runs_dir == Path("runs")
    assert args.output_dir == Path("out", "web")
    assert args.workers is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, expected: bool):
    assert is_loopback(host) is expected


def test_allowed_hosts_on_loopback():
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost"]
    assert allowed_hosts("::1") == ["127.0.0.1", "[::1]", "localhost"]
    assert allowed_hosts("0.0.0.0") is None


def test_foreign_host_header_rejected(tmp_path: Path):
    app = create_app(tmp_path / "runs", tmp_path / "out", None, ["127.0.0.1"])
    client = TestClient(app, base_url="http://127.0.0.1")

    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs", headers={"host": "evil.example"}).status_code == 400


@pytest.mark.parametrize(
    "flags", [["--port", "0"], ["--port", "70000"], ["--workers", "0"]]
)
def test_serve_rejects_bad_numbers(flags: list[str], capsys):
    assert main(["serve", *flags]) == 2
    assert "must be" in capsys.readouterr().err


def test_serve_answers_on_loopback(tmp_path: Path):
    port = free_port()
    command = [sys.executable, "-m", "abcrnn", "serve", "--port", str(port)]
    command += ["--runs-dir", str(tmp_path / "runs")]
    command += ["--output-dir", str(tmp_path / "out")]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        runs = None
        deadline = time.monotonic() + 60
        while runs is None and time.monotonic() < deadline:
            try:
                runs = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
        assert runs is not None, "abcrnn serve did not answer within 60 s"
        assert runs.status_code == 200
        assert runs.json() == []
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)

    assert f"open http://127.0.0.1:{port}/" in output
