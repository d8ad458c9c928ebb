"""The web app's JSON API, called in-process through FastAPI's TestClient."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (.[web])")
pytest.importorskip("httpx", reason="the web extra is not installed (.[web])")

from fastapi.testclient import TestClient  # noqa: E402

from abcrnn.web.app import (  # noqa: E402
    SWAGGER_UI_DIR,
    create_app,
    describe_validation_errors,
    find_node_file,
)
from abcrnn.web.compose import build_prime, describe_chars  # noqa: E402
from abcrnn.web.outputs import OutputStore  # noqa: E402
from abcrnn.web.runs import ModelCache, list_runs  # noqa: E402
from abcrnn.web.schemas import HeaderFields  # noqa: E402
from web_support import RUN_NAME, live_server, tiny_runs_dir  # noqa: E402

# A well-formed jig: two full 6/8 bars.
GOOD_TUNE = "X:1\nT:Good Jig\nM:6/8\nL:1/8\nK:G\nGAB cBA|BAG E2D|]\n"
# The second bar is half a bar long, so the checker flags bar 2.
SHORT_BAR_TUNE = "X:1\nT:Short\nM:3/4\nL:1/8\nK:G\nABCDEF|ABC|DEFGAB|]\n"


@pytest.fixture(scope="module")
def runs_dir() -> Path:
    return tiny_runs_dir()


@pytest.fixture
def client(runs_dir: Path, tmp_path: Path) -> TestClient:
    return TestClient(create_app(runs_dir, tmp_path / "out"))


def generate(client: TestClient, **changes) -> dict:
    body = {
        "run": RUN_NAME,
        "num_tunes": 2,
        "sampling": {"seed": 123, "max_length": 200},
    }
    body.update(changes)
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_runs_lists_trained_runs_only(runs_dir: Path, tmp_path: Path):
    # A copy of the tiny run, a folder with no checkpoint and a stray file.
    shutil.copytree(runs_dir / RUN_NAME, tmp_path / "runs" / "copy")
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("not a run", encoding="utf-8")
    client = TestClient(create_app(tmp_path / "runs", tmp_path / "out"))

    runs = client.get("/api/runs").json()

    assert [run["name"] for run in runs] == ["copy"]
    assert runs[0]["checkpoint"] == "checkpoints/best.pt"


def test_run_detail_describes_vocabulary(client: TestClient):
    detail = client.get(f"/api/runs/{RUN_NAME}").json()

    assert detail["step"] == 30
    assert detail["vocab_size"] == len(detail["chars"])
    assert detail["chars"] == "".join(sorted(detail["chars"]))
    for char in "X:1\nT6/8LKG|":
        assert char in detail["chars"]


def test_generate_two_tunes(client: TestClient):
    result = generate(client)

    assert result["run"] == RUN_NAME
    assert result["step"] == 30
    assert result["prime"] == "X:1\nM:6/8\nL:1/8\nK:G\n"
    assert result["num_tunes"] == 2
    assert result["sampling"]["seed"] == 123
    assert [tune["index"] for tune in result["tunes"]] == [1, 2]
    for tune in result["tunes"]:
        assert tune["abc"].startswith(result["prime"])
        assert isinstance(tune["check"]["valid"], bool)
        download = client.get(tune["files"]["abc"])
        assert download.status_code == 200
        assert download.text == tune["abc"]


def test_generate_same_seed_same_tunes(client: TestClient):
    first = generate(client)
    second = generate(client)
    other = generate(client, sampling={"seed": 124, "max_length": 200})

    texts = [tune["abc"] for tune in first["tunes"]]
    assert [tune["abc"] for tune in second["tunes"]] == texts
    assert [tune["abc"] for tune in other["tunes"]] != texts
    assert first["id"] != second["id"]


def test_generate_without_seed_reports_one(client: TestClient):
    result = generate(client, num_tunes=1, sampling={"max_length": 50})

    assert 0 <= result["sampling"]["seed"] <= 2**32 - 1


def test_generate_free_prime_replaces_header(client: TestClient):
    prime = "X:1\nT:The Long Reel\nM:C|\nL:1/8\nK:D\n|:DF"

    result = generate(client, num_tunes=1, prime=prime)

    assert result["prime"] == prime
    assert result["tunes"][0]["abc"].startswith(prime)


def test_generate_unknown_characters_named(client: TestClient):
    body = {"run": RUN_NAME, "header": {"title": "Café Reel"}}

    response = client.post("/api/generate", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'é'" in detail
    assert "'f'" in detail
    assert "Traceback" not in detail


def test_check_valid_tune(client: TestClient):
    report = client.post("/api/check", json={"abc": GOOD_TUNE}).json()

    assert report == {"valid": True, "title": "Good Jig", "diagnostics": []}


def test_check_points_at_short_bar(client: TestClient):
    report = client.post("/api/check", json={"abc": SHORT_BAR_TUNE}).json()

    assert report["valid"] is False
    errors = [item for item in report["diagnostics"] if item["severity"] == "error"]
    assert [item["bar"] for item in errors] == [2]
    assert errors[0]["line"] == 6
    assert errors[0]["code"] == "bar-length"


def test_render_writes_wav_and_midi(client: TestClient):
    result = client.post("/api/render", json={"abc": GOOD_TUNE}).json()
    files = result["files"]

    assert files["error"] is None
    wav = client.get(files["wav"])
    assert wav.status_code == 200
    assert wav.headers["content-type"] == "audio/wav"
    assert wav.content[:4] == b"RIFF"
    assert wav.content[8:12] == b"WAVE"
    assert int.from_bytes(wav.content[4:8], "little") == len(wav.content) - 8
    assert client.get(files["mid"]).content[:4] == b"MThd"
    assert client.get(files["abc"]).text == GOOD_TUNE


def test_render_failure_is_reported(client: TestClient):
    # No K: line and no notes: abc2midi writes no MIDI, so there is no audio.
    result = client.post("/api/render", json={"abc": "X:1\nT:Empty\n"}).json()

    assert result["files"]["wav"] is None
    assert result["files"]["error"]


BAD_GENERATE = [
    ({"num_tunes": 0}, "num_tunes"),
    ({"num_tunes": 17}, "num_tunes"),
    ({"sampling": {"max_length": 5001}}, "sampling.max_length"),
    ({"sampling": {"max_length": 0}}, "sampling.max_length"),
    ({"sampling": {"temperature": -0.1}}, "sampling.temperature"),
    ({"sampling": {"temperature": 5.5}}, "sampling.temperature"),
    ({"sampling": {"top_p": 0}}, "sampling.top_p"),
    ({"sampling": {"top_p": 1.5}}, "sampling.top_p"),
    ({"sampling": {"top_k": -1}}, "sampling.top_k"),
    ({"sampling": {"top_k": 1000}}, "top_k"),
    ({"sampling": {"seed": -1}}, "sampling.seed"),
    ({"sampling": {"seed": 2**32}}, "sampling.seed"),
    ({"sampling": {"speed": 1}}, "sampling.speed"),
    ({"header": {"meter": "6/8x"}}, "header.meter"),
    ({"header": {"key": "H"}}, "header.key"),
    ({"header": {"mode": "blues"}}, "header.mode"),
    ({"header": {"title": "two\nlines"}}, "header.title"),
    ({"prime": ""}, "prime"),
    ({"prime": "X" * 100_001}, "prime"),
    ({"run": "../tiny"}, "run"),
    ({"run": "/etc"}, "run"),
    ({"run": ".."}, "run"),
]


@pytest.mark.parametrize(("change", "field"), BAD_GENERATE)
def test_generate_bad_input_422(client: TestClient, change: dict, field: str):
    body = {"run": RUN_NAME, **change}

    response = client.post("/api/generate", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert field in detail
    assert "Traceback" not in detail


def test_generate_unknown_run_404(client: TestClient):
    response = client.post("/api/generate", json={"run": "nope"})

    assert response.status_code == 404
    assert "'nope' was not found" in response.json()["detail"]


def test_bad_json_body_422(client: TestClient):
    response = client.post(
        "/api/check", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    "body",
    [{}, {"abc": ""}, {"abc": "X" * 100_001}, {"abc": 5}, {"abc": "X:1", "x": 1}],
)
def test_check_bad_input_422(client: TestClient, body: dict):
    assert client.post("/api/check", json=body).status_code == 422
    assert client.post("/api/render", json=body).status_code == 422


def test_oversized_body_413(client: TestClient):
    body = b'{"abc": "' + b"A" * 1_100_000 + b'"}'

    response = client.post(
        "/api/check", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413


@pytest.mark.parametrize(
    "path",
    [
        "/api/files/../../etc/passwd",
        "/api/files/%2e%2e/%2e%2e%2fetc%2fpasswd",
        "/api/files/0123456789abcdef0123456789abcdef/..%2F..%2Fpasswd.abc",
        "/api/files/0123456789abcdef0123456789abcdef/%2Fetc%2Fpasswd",
        "/api/files//etc/passwd",
        "/api/files/0123456789abcdef0123456789abcdef/passwd",
        "/api/runs/..%2F..%2Fetc",
        "/api/runs/%2Fetc",
    ],
)
def test_path_traversal_refused(client: TestClient, path: str):
    response = client.get(path)

    assert 400 <= response.status_code < 500
    assert "root:" not in response.text


def test_symlink_out_of_runs_refused(runs_dir: Path, tmp_path: Path):
    # A run folder inside the runs folder that links to a run outside it.
    inside = tmp_path / "runs"
    inside.mkdir()
    os.symlink(runs_dir / RUN_NAME, inside / "escape")
    client = TestClient(create_app(inside, tmp_path / "out"))

    response = client.post("/api/generate", json={"run": "escape"})

    assert client.get("/api/runs").json() == []
    assert response.status_code == 404
    assert "outside the runs folder" in response.json()["detail"]


def test_symlinked_checkpoint_out_of_runs_ignored(runs_dir: Path, tmp_path: Path):
    checkpoints = tmp_path / "runs" / "sneaky" / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.symlink(runs_dir / RUN_NAME / "checkpoints" / "best.pt", checkpoints / "best.pt")

    assert list_runs(tmp_path / "runs") == []


def test_file_outside_output_folder_refused(client: TestClient, tmp_path: Path):
    folder = tmp_path / "out" / ("a" * 32)
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.abc"
    secret.write_text("X:1\n", encoding="utf-8")
    os.symlink(secret, folder / "tune-01.abc")

    response = client.get(f"/api/files/{'a' * 32}/tune-01.abc")

    assert response.status_code == 404


def test_generation_does_not_block_light_requests(runs_dir: Path, tmp_path: Path):
    # One worker and three long generate requests, so the third waits for the other
    # two. While they run or wait, listing runs and checking a tune still get a
    # response.
    import httpx

    finished: dict[str, float] = {}
    long_body = {
        "run": RUN_NAME,
        "num_tunes": 8,
        "sampling": {"seed": 1, "max_length": 3000},
    }

    with live_server(runs_dir, tmp_path / "out", workers=1) as url:

        def generate_long(name: str) -> None:
            httpx.post(f"{url}/api/generate", json=long_body, timeout=300)
            finished[name] = time.monotonic()

        threads = [
            threading.Thread(target=generate_long, args=(name,))
            for name in ("first", "second", "third")
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        runs = httpx.get(f"{url}/api/runs", timeout=300)
        check = httpx.post(f"{url}/api/check", json={"abc": GOOD_TUNE}, timeout=300)
        light_done = time.monotonic()
        for thread in threads:
            thread.join()

    assert runs.status_code == 200
    assert check.json()["valid"] is True
    assert light_done < finished["third"]


def test_model_cache_loads_once(runs_dir: Path):
    cache = ModelCache(runs_dir)
    results = []

    def load():
        results.append(cache.get(RUN_NAME))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4
    assert all(result is results[0] for result in results)


def test_build_prime_from_fields():
    header = HeaderFields(
        title="Tune", meter="6/8", unit_length="1/8", key="G", mode="mixolydian"
    )

    assert build_prime(header) == "X:1\nT:Tune\nM:6/8\nL:1/8\nK:Gmix\n"


def test_build_prime_skips_empty_fields():
    header = HeaderFields(meter="", unit_length="1/16", key="A", mode="minor")

    assert build_prime(header) == "X:1\nL:1/16\nK:Am\n"
    assert build_prime(HeaderFields(key="")) == "X:1\nM:6/8\nL:1/8\n"


def test_describe_chars_names_invisible_ones():
    assert describe_chars([" ", "\t", "é", "\x07"]) == "space, tab, 'é', U+0007"


def test_validation_errors_as_sentences():
    errors = [
        {"loc": ("body", "num_tunes"), "msg": "Input should be less than 17",
         "input": 20, "type": "less_than_equal"},
        {"loc": ("body", "run"), "msg": "Field required", "type": "missing"},
    ]  # fmt: skip

    assert describe_validation_errors(errors) == (
        "Invalid value for num_tunes: Input should be less than 17 (got 20). "
        "Invalid value for run: Field required."
    )


def test_output_store_keeps_newest(tmp_path: Path):
    store = OutputStore(tmp_path, max_folders=3)
    ids = [store.new_folder()[0] for _ in range(3)]
    os.utime(tmp_path / ids[1], (1, 1))  # make the middle one the oldest

    newest, _ = store.new_folder()

    kept = sorted(path.name for path in tmp_path.iterdir())
    assert kept == sorted([ids[0], ids[2], newest])


def test_page_and_static_files(client: TestClient):
    page = client.get("/")

    assert page.status_code == 200
    assert "Generate" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "abcrnn"


@pytest.mark.skipif(
    find_node_file(SWAGGER_UI_DIR / "swagger-ui-bundle.js") is None,
    reason="swagger-ui-dist is missing: run npm install",
)
def test_docs_page_served_locally(client: TestClient):
    docs = client.get("/docs")

    assert docs.status_code == 200
    assert "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "https://" not in docs.text
    bundle = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/swagger-ui/swagger-ui.css").status_code == 200
    assert client.get("/static/swagger-ui/package.json").status_code == 404
    assert client.get("/redoc").status_code == 404


def test_abcjs_from_environment(client: TestClient, tmp_path: Path, monkeypatch):
    bundle = tmp_path / "abcjs.js"
    bundle.write_text("window.ABCJS = {};", encoding="utf-8")
    monkeypatch.setenv("ABCRNN_ABCJS", str(bundle))

    response = client.get("/static/abcjs.js")

    assert response.status_code == 200
    assert response.text == "window.ABCJS = {};"


def test_abcjs_missing_explains_fix(client: TestClient, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ABCRNN_ABCJS", str(tmp_path / "missing.js"))

    response = client.get("/static/abcjs.js")

    assert response.status_code == 404
    assert "npm install" in response.text
