"""The web page in a real browser: headless Chromium driven by Playwright.

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` pip package; the
test is skipped, saying which is missing, otherwise. Playwright's own browser
downloads are never used. A screenshot of the page is saved under
tests/artifacts/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[web])"
)
pytest.importorskip("uvicorn", reason="the web extra is not installed (.[web])")
if not CHROMIUM.is_file():
    pytest.skip(
        f"{CHROMIUM} is not installed (apt-get install chromium)",
        allow_module_level=True,
    )

from abcrnn.web.app import SWAGGER_UI_DIR, find_abcjs, find_node_file  # noqa: E402
from web_support import RUN_NAME, live_server, tiny_runs_dir  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory):
    output_dir = tmp_path_factory.mktemp("web-out")
    with live_server(tiny_runs_dir(), output_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url: str):
    # Requests to any other host are aborted and recorded: the page must work
    # offline, with every script served by abcrnn itself.
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.foreign_requests = []

    def guard(route):
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            page.foreign_requests.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(base_url)
    yield page
    assert page.foreign_requests == []
    page.close()


def generate_two(page) -> None:
    page.locator("#run").select_option(RUN_NAME)
    page.fill("#num_tunes", "2")
    page.fill("#max_length", "200")
    page.fill("#seed", "123")
    page.click("#generate")
    page.locator("article.tune").nth(1).wait_for()


@pytest.mark.skipif(find_abcjs() is None, reason="abcjs is missing: run npm install")
def test_page_generates_scores_audio_downloads(page):
    generate_two(page)

    # Two scores, each drawn by abcjs as an SVG element.
    tunes = page.locator("article.tune")
    assert tunes.count() == 2
    for index in range(2):
        assert tunes.nth(index).locator(".score svg").count() >= 1
    assert page.locator("#abcjs-missing").is_hidden()

    # The audio element's source is a real WAV file.
    first = tunes.nth(0)
    audio_src = first.locator("audio.player").evaluate("element => element.src")
    wav = page.request.get(audio_src)
    assert wav.status == 200
    assert wav.body()[:4] == b"RIFF"
    assert wav.body()[8:12] == b"WAVE"

    # The ABC download is exactly the text shown in the editor.
    shown = first.locator("textarea.abc").input_value()
    download = page.request.get(
        first.locator("a.download-abc").evaluate("element => element.href")
    )
    assert download.text() == shown
    assert shown.startswith("X:1\nM:6/8\nL:1/8\nK:G\n")

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "web-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot saved to {screenshot}")


@pytest.mark.skipif(find_abcjs() is None, reason="abcjs is missing: run npm install")
def test_page_edit_redraws_and_rerenders(page):
    generate_two(page)
    first = page.locator("article.tune").nth(0)
    old_wav = first.locator("audio.player").evaluate("element => element.src")

    # Replace the tune with a known one, whose score shows the new title.
    tune = "X:1\nT:Edited Jig\nM:6/8\nL:1/8\nK:G\nGAB cBA|BAG E2D|]\n"
    first.locator("textarea.abc").fill(tune)
    first.locator(".score svg").get_by_text("Edited Jig", exact=True).wait_for()
    assert first.locator(".edited").is_visible()

    first.locator("button.rerender").click()
    first.locator(".edited").wait_for(state="hidden")
    new_wav = first.locator("audio.player").evaluate("element => element.src")
    assert new_wav != old_wav
    href = first.locator("a.download-abc").evaluate("element => element.href")
    assert page.request.get(href).text() == tune

    first.locator("button.recheck").click()
    page.wait_for_function(
        "document.querySelector('article.tune .verdict').textContent === 'valid'"
    )


@pytest.mark.skipif(
    find_node_file(SWAGGER_UI_DIR / "swagger-ui-bundle.js") is None,
    reason="swagger-ui-dist is missing: run npm install",
)
def test_docs_page_renders_offline(page, base_url: str):
    page.goto(f"{base_url}/docs")

    page.locator(".swagger-ui .info .title").get_by_text("abcrnn").wait_for()
    assert page.locator(".opblock-summary-path").count() == 6


def test_page_shows_errors_as_sentences(page):
    page.locator("#run").select_option(RUN_NAME)
    page.fill("#title", "Café Reel")
    page.click("#generate")

    error = page.locator("#error")
    error.wait_for()
    text = error.inner_text()
    assert "never saw in training" in text
    assert "'é'" in text
    assert "Traceback" not in text


def test_page_without_abcjs_explains(browser, base_url: str):
    page = browser.new_page()
    page.route("**/static/abcjs.js", lambda route: route.fulfill(status=404))
    page.goto(base_url)

    notice = page.locator("#abcjs-missing")

    assert notice.is_visible()
    assert "npm install" in notice.inner_text()
    page.close()
