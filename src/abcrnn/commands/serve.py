"""`abcrnn serve`: start the local web page for composing and hearing tunes."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from abcrnn.errors import ConfigError

LOOPBACK_HOSTS = ("localhost",)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="start the local web page",
        description="Serve a web page that composes tunes with a trained run, "
        "shows them as sheet music, plays them and checks them. The JSON API is "
        "documented at /docs.",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        metavar="DIR",
        default=Path("runs"),
        help="folder whose subfolders are trained runs (default: %(default)s)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        default=Path("out", "web"),
        help="folder for generated ABC, MIDI and WAV files (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on. Anything but a loopback address lets other "
        "machines use the page (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="TCP port to listen on, 1-65535 (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=None,
        help="requests that may sample or render at the same time; the rest wait "
        "in a queue (default: one per CPU core)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start uvicorn with the app and block until it is stopped."""
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    try:
        import uvicorn

        from abcrnn.web.app import create_app
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"the web page needs {error.name}: install it with "
            "`pip install -e '.[web]'`"
        ) from error

    if not is_loopback(args.host):
        print(
            f"abcrnn serve: warning: listening on {args.host}, so other machines "
            "can use this page; it has no login"
        )
    app = create_app(
        args.runs_dir, args.output_dir, args.workers, allowed_hosts(args.host)
    )
    print(f"abcrnn serve: runs from {args.runs_dir}, files in {args.output_dir}")
    print(f"abcrnn serve: open http://{_url_host(args.host)}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def is_loopback(host: str) -> bool:
    """Return True when `host` names this machine only (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """Return the Host header values to accept when serving on `host`.

    A server on a loopback address accepts only its own names, so a web page whose
    domain was rebound to 127.0.0.1 cannot call it. Other hosts accept any.
    """
    if not is_loopback(host):
        return None
    return sorted({_url_host(host), "127.0.0.1", "localhost"})


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
