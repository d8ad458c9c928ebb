"""The FastAPI app behind `abcrnn serve`: one static page and a JSON API.

Blocking work (loading models, sampling, converters) runs in worker threads, so one
slow request does not hold up the others. The app reads only inside `runs_dir` and
writes only inside `output_dir`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from abcrnn import __version__
from abcrnn.errors import AbcrnnError, CheckpointError, RenderError
from abcrnn.web import compose
from abcrnn.web.outputs import MEDIA_TYPES, OutputStore
from abcrnn.web.runs import ModelCache, RunEntry, RunNotFoundError, list_runs
from abcrnn.web.schemas import (
    FILE_NAME_PATTERN,
    OUTPUT_ID_PATTERN,
    RUN_NAME_PATTERN,
    CheckReport,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    RenderResponse,
    RunDetail,
    RunInfo,
    TextRequest,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
ABCJS_ENV = "ABCRNN_ABCJS"
ABCJS_FILE = Path("node_modules", "abcjs", "dist", "abcjs-basic-min.js")
SWAGGER_UI_DIR = Path("node_modules", "swagger-ui-dist")
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}
# Bodies larger than this are rejected before parsing. A JSON body with the largest
# allowed text (100,000 characters, each escaped as up to six bytes) still fits.
MAX_BODY_BYTES = 1_000_000

ERRORS = {
    400: {"model": ErrorResponse, "description": "The request cannot be carried out."},
    404: {"model": ErrorResponse, "description": "No such run or file."},
    422: {"model": ErrorResponse, "description": "A value is invalid or out of range."},
}


def find_node_file(relative: Path) -> Path | None:
    """Return the path of `relative` (node_modules/...) if installed, else None.

    The source checkout is looked at first, then the current folder.
    """
    repo_root = Path(__file__).resolve().parents[3]
    for candidate in (repo_root / relative, Path.cwd() / relative):
        if candidate.is_file():
            return candidate
    return None


def find_abcjs() -> Path | None:
    """Return the path of abcjs's browser bundle, or None when it is missing.

    $ABCRNN_ABCJS, when set, is the only place looked at. Otherwise the bundle is
    looked for in node_modules (see `find_node_file`).
    """
    configured = os.environ.get(ABCJS_ENV)
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    return find_node_file(ABCJS_FILE)


def create_app(
    runs_dir: Path,
    output_dir: Path,
    workers: int | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """Build the app that serves models from `runs_dir` and files from `output_dir`.

    At most `workers` requests (default: one per CPU core) load models, sample or
    render at a time, and the others wait in a queue. Light requests (listing runs,
    checking a tune, downloads) use separate threads, so they are served while
    that queue is full. With `allowed_hosts`, requests whose Host header names
    another host get status 400, which stops DNS-rebinding pages from reaching a
    server on 127.0.0.1.
    """
    # The stock /docs and /redoc pages load their scripts from a CDN, so /docs is
    # served below from the npm package instead and works offline.
    app = FastAPI(
        title="abcrnn",
        version=__version__,
        description="Compose folk tunes in ABC notation with a trained abcrnn run, "
        "then check them and render MIDI and WAV files.",
        docs_url=None,
        redoc_url=None,
    )
    cache = ModelCache(Path(runs_dir))
    store = OutputStore(Path(output_dir))
    heavy = anyio.CapacityLimiter(workers or os.cpu_count() or 1)
    _add_error_handlers(app)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    _add_page_routes(app)
    _add_api_routes(app, cache, store, heavy)
    return app


def _add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    # Declared before the static mount so that it takes precedence over it.
    @app.get("/static/abcjs.js", include_in_schema=False)
    def abcjs() -> Response:
        path = find_abcjs()
        if path is None:
            message = "abcjs is not installed: run `npm install` in the repository."
            return Response(message, status_code=404, media_type="text/plain")
        return FileResponse(path, media_type="text/javascript")

    @app.get("/static/swagger-ui/{name}", include_in_schema=False)
    def swagger_ui_file(name: str) -> Response:
        path = (
            find_node_file(SWAGGER_UI_DIR / name) if name in SWAGGER_UI_FILES else None
        )
        if path is None:
            message = "swagger-ui-dist is not installed: run `npm install`."
            return Response(message, status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=SWAGGER_UI_FILES[name])

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        if find_node_file(SWAGGER_UI_DIR / "swagger-ui-bundle.js") is None:
            return HTMLResponse(DOCS_MISSING, status_code=503)
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="abcrnn API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


DOCS_MISSING = """<!doctype html><html lang="en"><title>abcrnn API</title>
<p>The interactive API page needs the swagger-ui-dist package: run
<code>npm install</code> in the repository and reload. The API description itself
is at <a href="/openapi.json">/openapi.json</a>.</p></html>
"""


def _add_api_routes(
    app: FastAPI, cache: ModelCache, store: OutputStore, heavy: anyio.CapacityLimiter
) -> None:
    async def in_heavy_thread(function, *args):
        return await anyio.to_thread.run_sync(function, *args, limiter=heavy)

    @app.get("/api/runs", response_model=list[RunInfo])
    async def get_runs() -> list[RunInfo]:
        """List the trained runs in the runs folder, newest first."""
        entries = await run_in_threadpool(list_runs, cache.runs_dir)
        return [_run_info(entry) for entry in entries]

    @app.get("/api/runs/{name}", response_model=RunDetail, responses=ERRORS)
    async def get_run(
        name: Annotated[str, PathParam(pattern=RUN_NAME_PATTERN)],
    ) -> RunDetail:
        """Load one run's model and describe its vocabulary."""
        loaded = await in_heavy_thread(cache.get, name)
        return RunDetail(
            **_run_info(loaded.entry).model_dump(),
            vocab_size=len(loaded.vocab),
            chars="".join(loaded.vocab.chars),
            step=loaded.step,
        )

    @app.post("/api/generate", response_model=GenerateResponse, responses=ERRORS)
    async def post_generate(request: GenerateRequest) -> GenerateResponse:
        """Compose tunes with a run's model, then check and render each one."""
        loaded = await in_heavy_thread(cache.get, request.run)
        return await in_heavy_thread(compose.generate, request, loaded, store)

    @app.post("/api/check", response_model=CheckReport, responses=ERRORS)
    async def post_check(request: TextRequest) -> CheckReport:
        """Check one tune: is it well formed, and do its bars add up?"""
        return await run_in_threadpool(compose.check, request.abc)

    @app.post("/api/render", response_model=RenderResponse, responses=ERRORS)
    async def post_render(request: TextRequest) -> RenderResponse:
        """Render one tune to ABC, MIDI and WAV files."""
        return await in_heavy_thread(compose.render, request.abc, store)

    @app.get(
        "/api/files/{file_id}/{name}",
        response_class=FileResponse,
        responses={**ERRORS, 200: {"description": "The file's bytes."}},
    )
    async def get_file(
        file_id: Annotated[str, PathParam(pattern=OUTPUT_ID_PATTERN)],
        name: Annotated[str, PathParam(pattern=FILE_NAME_PATTERN)],
    ) -> Response:
        """Download a generated ABC, MIDI or WAV file."""
        path = store.find(file_id, name)
        if path is None:
            return _error(404, f"file {name!r} of output {file_id!r} was not found")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], filename=name)


def _run_info(entry: RunEntry) -> RunInfo:
    return RunInfo(
        name=entry.name,
        checkpoint=str(entry.checkpoint.relative_to(entry.run_dir.resolve())),
        modified=entry.modified,
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _error(
                413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}"
            )
        # Errors that no handler below catches reach this point. Log the
        # traceback, and send the page a sentence in its place.
        try:
            return await call_next(request)
        except Exception as error:
            logger.exception("%s %s failed", request.method, request.url.path)
            return _error(
                500,
                "The server failed while handling this request "
                f"({type(error).__name__}). The server's log has the details.",
            )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        return _error(422, describe_validation_errors(error.errors()))

    @app.exception_handler(AbcrnnError)
    async def abcrnn_error(request: Request, error: AbcrnnError):
        status = _status_for(error)
        level = logging.ERROR if status >= 500 else logging.INFO
        logger.log(level, "%s %s failed: %s", request.method, request.url.path, error)
        return _error(status, str(error))


def _status_for(error: AbcrnnError) -> int:
    if isinstance(error, RunNotFoundError):
        return 404
    if isinstance(error, CheckpointError):
        return 500
    if isinstance(error, RenderError):
        return 503
    if isinstance(error, ValueError):
        return 422
    return 400


# Hints, by field, shown when a value does not match the field's pattern.
PATTERN_HINTS = {
    "run": "use the name of a folder inside the runs folder "
    "(letters, digits, '.', '_' and '-')",
    "name": "use the name of a folder inside the runs folder",
    "header.title": "the title must fit on one line",
    "header.meter": "use a meter such as 6/8, 2/4, 3/4, C or C|, or leave it empty",
    "header.unit_length": "use 1/1, 1/2, 1/4, 1/8, 1/16, 1/32 or 1/64, or leave it "
    "empty",
    "header.key": "use a tonic from A to G with an optional # or b, or leave it empty",
}


def describe_validation_errors(errors: list[dict]) -> str:
    """Turn pydantic's error list into plain sentences naming each bad field."""
    sentences = []
    for item in errors:
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        field = ".".join(location[1:] if location[:1] == ["path"] else location)
        field = field or "request body"
        message = str(item.get("msg", "is invalid")).rstrip(".")
        if item.get("type") == "string_pattern_mismatch" and field in PATTERN_HINTS:
            message = PATTERN_HINTS[field]
        shown = repr(item.get("input"))
        if len(shown) > 60:
            shown = shown[:57] + "..."
        got = "" if item.get("type") == "missing" else f" (got {shown})"
        sentences.append(f"Invalid value for {field}: {message}{got}.")
    return " ".join(sentences) or "The request is invalid."
