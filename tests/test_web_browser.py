"""End to end in headless Chromium (Debian's `chromium` package, driven by Playwright): pick a
picture, run it, compare, download — the way a person uses the page."""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from bot.adapters.web import WebAdapter
from bot.app import App
from bot.config import load_config
from bot.core.types import Accepted, Member
from engine.api import EngineJob, EngineOutput, ProgressCallback
from tests.fakes import FakeEngine, wait_until
from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (a pytest fixture)

CHROMIUM = Path(os.environ.get("RESTYLE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/web_screenshot.png")
PHONE_SCREENSHOT = Path("/tmp/web_screenshot_phone.png")
SPANISH_SCREENSHOT = Path("/tmp/web_screenshot_es.png")
SWEEP_PHONE_SCREENSHOT = Path("/tmp/web_screenshot_sweep_phone.png")
# RESTYLE_DOCS_SCREENSHOTS=docs: the screenshots README shows are written there too (docs/).
DOCS = Path(os.environ["RESTYLE_DOCS_SCREENSHOTS"]) if os.environ.get("RESTYLE_DOCS_SCREENSHOTS") else None

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]  # slow: headless Chromium


def landscape(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    """A small picture with shapes, so the compare view shows something a person can judge."""
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / h
        draw.line([(0, y), (w, y)], fill=(int(70 + 120 * t), int(130 + 80 * t), int(220 - 40 * t)))
    draw.ellipse([w * 0.65, h * 0.12, w * 0.85, h * 0.38], fill=(255, 214, 90))
    draw.polygon([(0, h * 0.75), (w * 0.3, h * 0.45), (w * 0.6, h * 0.8), (0, h)], fill=(46, 110, 70))
    draw.polygon([(w * 0.35, h), (w * 0.7, h * 0.5), (w, h * 0.7), (w, h)], fill=(30, 85, 60))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
async def running_bot(tmp_path, tiny_model_dir):
    """The whole bot as `python -m bot` runs it, on the tiny random-weight model (real diffusers,
    real from_pretrained through the app's default engine factory)."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[engine]\nmodel = "{tiny_model_dir}"\nlocal_files_only = true\ndevice = "cpu"\nsteps = 4\n'
        '[web]\nport = 0\ntier = "pro"\n'
    )
    config = load_config(config_path, env={})
    app = await App.create(config)
    await app.start()
    yield app
    await app.stop()


async def test_a_person_restyles_compares_and_downloads_in_chromium(running_bot, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    web = next(a for a in running_bot.adapters if isinstance(a, WebAdapter))
    picture = landscape(tmp_path / "landscape.png")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # (A refused request also logs "Failed to load resource"; that one is expected.)
            page.on(
                "console",
                lambda msg: errors.append(msg.text)
                if msg.type == "error" and "Failed to load resource" not in msg.text
                else None,
            )

            # Predicates are written as functions: a bare expression is eval()ed in the page,
            # which its Content-Security-Policy (rightly) forbids.
            await page.goto(web.url)
            await page.wait_for_selector("#account .badge")
            assert await page.input_value("#strength") == "0.5"

            # An empty prompt is refused with the chat's words, shown in the page.
            await page.set_input_files("#picture", str(picture))
            await page.click("#run")
            await page.wait_for_selector("#error:not([hidden])")
            assert "Please describe the new style" in await page.inner_text("#error")

            await page.fill("#prompt", "oil painting, thick brush strokes")
            await page.click("#tick-subtle")  # the labels set the slider
            assert await page.input_value("#strength") == "0.25"
            await page.focus("#strength")
            await page.keyboard.press("ArrowRight")  # and the keyboard moves it
            assert await page.input_value("#strength") == "0.3"
            await page.click("#run")

            await page.wait_for_selector("#compare-wrap:not([hidden])", timeout=30_000)
            assert await page.is_hidden("#error")
            await page.wait_for_function(
                "() => ['compare-before', 'compare-after'].every(id => document.getElementById(id).naturalWidth > 0)"
            )
            clip = "getComputedStyle(document.getElementById('compare-after')).clipPath"
            assert await page.evaluate(clip) == "inset(0px 0px 0px 50%)"
            assert "strength 0.3 (subtle)" in await page.inner_text("#result-info")

            # Drag the handle to the right: more of the original shows.
            box = await page.locator("#compare").bounding_box()
            assert box is not None
            y = box["y"] + box["height"] / 2
            await page.mouse.move(box["x"] + box["width"] * 0.5, y)
            await page.mouse.down()
            await page.mouse.move(box["x"] + box["width"] * 0.8, y, steps=5)
            await page.mouse.up()
            dragged = await page.evaluate(clip)
            percent = float(dragged.split()[-1].rstrip("%)"))
            assert 75 <= percent <= 85, dragged
            line_left = await page.evaluate("document.getElementById('compare-line').getBoundingClientRect().left")
            assert abs(line_left - (box["x"] + box["width"] * percent / 100)) < 3
            # Keyboard: the compare slider is a real range input.
            await page.focus("#compare-range")
            await page.keyboard.press("Home")
            assert await page.evaluate(clip) == "inset(0px 0px 0px 0%)"
            await page.keyboard.press("End")
            await page.keyboard.press("ArrowLeft")
            assert await page.evaluate(clip) == "inset(0px 0px 0px 99%)"

            async with page.expect_download() as download_info:
                await page.click("#dl-png")
            download = await download_info.value
            assert download.suggested_filename.endswith(".png")
            data = Path(await download.path()).read_bytes()
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
            width, height = Image.open(io.BytesIO(data)).size  # as prepared: sides multiples of 8
            assert abs(width / height - 320 / 240) < 0.05

            await page.focus("#compare-range")
            await page.keyboard.press("Home")
            for _ in range(40):
                await page.keyboard.press("ArrowRight")
            await page.locator("#prompt").blur()
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            if DOCS is not None:
                await page.screenshot(path=str(DOCS / "web-compare.png"), full_page=True)

            # Stronger runs the same picture again, and the new result replaces the old one.
            first_result = await page.get_attribute("#compare-after", "src")
            await page.click('[data-change="stronger"]')
            await page.wait_for_function(
                f"() => document.getElementById('compare-after').getAttribute('src') !== {first_result!r}"
                " && !document.getElementById('compare-wrap').hidden",
                timeout=30_000,
            )
            assert "strength 0.45 (clear)" in await page.inner_text("#result-info")  # 0.3 + STRENGTH_STEP

            # A phone's width: one column, nothing wider than the screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            # Laid out at the new width: the viewport has shrunk and two frames have been drawn.
            await page.wait_for_function("() => window.innerWidth === 390")
            await page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            await page.screenshot(path=str(PHONE_SCREENSHOT), full_page=True)
            assert not errors, errors
        finally:
            await browser.close()


# Every line the status overlay shows, kept in the page as it changes (a sweep on the tiny model
# can pass through a state faster than a test could look at it).
RECORD_STATUS_LINES = """
window.__statusLines = [];
document.addEventListener("DOMContentLoaded", () => {
  const line = document.getElementById("status-text");
  new MutationObserver(() => window.__statusLines.push(line.textContent)).observe(line, {childList: true, characterData: true, subtree: true});
});
"""


async def test_sweep_shows_three_strengths_and_keeps_one(running_bot, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    web = next(a for a in running_bot.adapters if isinstance(a, WebAdapter))
    picture = landscape(tmp_path / "landscape.png")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
            await context.add_init_script(RECORD_STATUS_LINES)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

            await page.goto(web.url)
            await page.wait_for_selector("#account .badge")
            await page.wait_for_function("() => !document.getElementById('sweep').disabled")  # the pro tier sweeps
            assert "Try 3 strengths (0.3 · 0.5 · 0.7)" in await page.inner_text("label[for=sweep]")
            await page.set_input_files("#picture", str(picture))
            await page.fill("#prompt", "watercolor, soft washes")
            await page.check("#sweep")
            assert await page.is_disabled("#strength")  # the sweep's strengths, not the slider's
            await page.click("#run")

            await page.wait_for_selector("#sweep-view:not([hidden])", timeout=45_000)
            await page.wait_for_function(
                "() => { const imgs = [...document.querySelectorAll('#sweep-grid img')];"
                " return imgs.length === 3 && imgs.every(img => img.complete && img.naturalWidth > 0); }"
            )
            assert await page.locator(".sweep-item .sweep-strength").all_inner_texts() == ["0.3", "0.5", "0.7"]
            assert await page.locator(".sweep-item .sweep-effect").all_inner_texts() == [
                "keeps the layout",
                "clear new style",
                "reworks heavily",
            ]
            assert await page.locator(".sweep-item .keep").all_inner_texts() == ["Keep 0.3", "Keep 0.5", "Keep 0.7"]
            lines = await page.evaluate("() => window.__statusLines")
            assert any(line.startswith("Trying 3 strengths") for line in lines), lines
            # Side by side on a wide screen: one row.
            tops = await page.evaluate(
                "() => [...document.querySelectorAll('.sweep-item')].map(e => Math.round(e.getBoundingClientRect().top))"
            )
            assert len(set(tops)) == 1, tops
            await page.locator("#prompt").blur()
            if DOCS is not None:
                await page.screenshot(path=str(DOCS / "web-sweep.png"), full_page=True)

            # Download all: one ZIP with a file per strength, from the link the API gave.
            async with page.expect_download() as download_info:
                await page.click("#sweep-zip")
            download = await download_info.value
            assert download.suggested_filename.endswith(".zip")
            with zipfile.ZipFile(await download.path()) as archive:
                assert archive.namelist() == ["restyle-0.3.png", "restyle-0.5.png", "restyle-0.7.png"]

            # On a phone the three stack.
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_function("() => window.innerWidth === 390")
            await page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            tops = await page.evaluate(
                "() => [...document.querySelectorAll('.sweep-item')].map(e => Math.round(e.getBoundingClientRect().top))"
            )
            assert tops == sorted(tops) and len(set(tops)) == 3, tops
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await page.screenshot(path=str(SWEEP_PHONE_SCREENSHOT), full_page=True)
            await page.set_viewport_size({"width": 1280, "height": 820})

            # Keep 0.5: it becomes the page's result, with the compare view and its buttons.
            await page.click(".sweep-item[data-strength='0.5'] .keep")
            await page.wait_for_selector("#compare-wrap:not([hidden])")
            assert await page.is_hidden("#sweep-view")
            assert "strength 0.5 (clear)" in await page.inner_text("#result-info")
            await page.wait_for_selector("#actions:not([hidden])")
            assert await page.is_enabled("#try-sweep") and await page.is_enabled('[data-change="stronger"]')
            kept = await page.get_attribute("#compare-after", "src")

            # Stronger goes on from the kept one.
            await page.click('[data-change="stronger"]')
            await page.wait_for_function(
                f"() => document.getElementById('compare-after').getAttribute('src') !== {kept!r}"
                " && !document.getElementById('compare-wrap').hidden",
                timeout=30_000,
            )
            assert "strength 0.65 (heavy)" in await page.inner_text("#result-info")

            # Try 3 strengths under that result sweeps it again, with its seed.
            seed = re.search(r"seed \d+", await page.inner_text("#result-info")).group(0)
            await page.click("#try-sweep")
            await page.wait_for_selector("#sweep-view:not([hidden])", timeout=45_000)
            assert await page.locator(".sweep-item .sweep-strength").all_inner_texts() == ["0.3", "0.5", "0.7"]
            assert seed in await page.inner_text("#sweep-info")
            assert await page.is_hidden("#error")
            assert not errors, errors
        finally:
            await browser.close()


class FailingAtStrengths(FakeEngine):
    """The stand-in engine, failing the jobs at the strengths in `fail_strengths` (one of a sweep)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_strengths: set[float] = set()

    def run(self, jobs: Sequence[EngineJob], on_progress: ProgressCallback | None = None) -> list[EngineOutput]:
        outputs = super().run(jobs, on_progress)
        failing = {job.job_id for job in jobs if job.strength in self.fail_strengths}
        return [
            EngineOutput(out.job_id, out.seed, out.steps, out.seconds, error="The picture engine failed on this job.")
            if out.job_id in failing
            else out
            for out in outputs
        ]


async def test_cancel_stops_a_running_sweep_and_a_tier_without_sweeps_greys_the_box(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[bot]\ndata_dir = "{tmp_path / "data"}"\n[web]\nport = 0\ntier = "pro"\n')
    engine = FailingAtStrengths()
    app = await App.create(load_config(config_path, env={}), engine_factory=lambda _: engine)
    await app.start()
    gate = engine.hold()
    try:
        await wait_until(lambda: app.health.engine_ready, what="the engine")
        web = next(a for a in app.adapters if isinstance(a, WebAdapter))
        picture = landscape(tmp_path / "landscape.png")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(viewport={"width": 1280, "height": 820})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on(
                    "console",
                    lambda msg: errors.append(msg.text)
                    if msg.type == "error" and "Failed to load resource" not in msg.text
                    else None,
                )
                await page.goto(web.url)
                await page.wait_for_function("() => !document.getElementById('sweep').disabled")
                await page.set_input_files("#picture", str(picture))
                await page.fill("#prompt", "mosaic tiles")
                await page.check("#sweep")
                await page.click("#run")
                # The engine holds the batch: the one progress line says what the sweep is at.
                await page.wait_for_function(
                    "() => document.getElementById('status-text').textContent.startsWith('Trying 3 strengths: 0 of 3 done')"
                )
                active = (await app.service.jobs.me(web.member)).active_jobs
                sweep_id = active[0].sweep_id
                assert sweep_id is not None and len(active) == 3
                # A reload finds the running sweep again and follows it as one.
                await page.reload()
                await page.wait_for_function(
                    "() => document.getElementById('status-text').textContent.startsWith('Trying 3 strengths: 0 of 3 done')"
                )
                await page.click("#cancel")
                await page.wait_for_selector("#status", state="hidden")
                gate.set()
                jobs = await app.service.jobs.sweep_jobs(sweep_id)
                assert [job.status for job in jobs] == ["cancelled"] * 3
                assert await page.is_hidden("#sweep-view") and await page.is_hidden("#error")

                # One strength fails: the others are shown and kept as usual, that one says so.
                engine.gate = None
                engine.fail_strengths = {0.7}
                await page.set_input_files("#picture", str(picture))  # (the reload forgot the picked file)
                await page.fill("#prompt", "mosaic tiles")
                await page.check("#sweep")
                await page.click("#run")
                await page.wait_for_selector("#sweep-view:not([hidden])")
                assert await page.locator(".sweep-item .keep").all_inner_texts() == ["Keep 0.3", "Keep 0.5"]
                failed = page.locator(".sweep-item[data-strength='0.7']")
                assert (await failed.get_attribute("data-status")) == "failed"
                assert "Failed: The picture engine failed" in await failed.inner_text()
                assert await failed.locator("img").count() == 0

                # A tier without sweeps: the box is greyed with the reason, and a sweep typed in
                # the prompt is refused in the service's own words.
                await app.service.jobs.set_tier(web.member, "free", None, reason="admin", changed_by="test")
                await page.reload()
                await page.wait_for_selector("#account .badge")
                await page.wait_for_function("() => document.getElementById('sweep').disabled")
                assert "free tier has no strength sweeps" in await page.inner_text("#sweep-help")
                await page.set_input_files("#picture", str(picture))
                await page.fill("#prompt", "mosaic tiles strength=sweep")
                await page.click("#run")
                await page.wait_for_selector("#error:not([hidden])")
                assert "cannot run strength sweeps" in await page.inner_text("#error")
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        gate.set()
        await app.stop()


async def test_a_spanish_browser_sees_the_page_in_spanish(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[bot]\ndata_dir = "{tmp_path / "data"}"\n[web]\nport = 0\ntier = "pro"\n')
    app = await App.create(load_config(config_path, env={}), engine_factory=lambda _: FakeEngine())
    await app.start()
    try:
        await wait_until(lambda: app.health.engine_ready, what="the engine")
        web = next(a for a in app.adapters if isinstance(a, WebAdapter))
        picture = landscape(tmp_path / "landscape.png")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                # The browser's language reaches the bot as its Accept-Language header.
                context = await browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 820})
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on(
                    "console",
                    lambda msg: errors.append(msg.text)
                    if msg.type == "error" and "Failed to load resource" not in msg.text
                    else None,
                )
                await page.goto(web.url)
                await page.wait_for_selector("#account .badge")
                await page.wait_for_function("() => document.documentElement.lang === 'es'")
                assert await page.inner_text("label[for=strength]") == "Intensidad"
                assert await page.inner_text("#run") == "Ejecutar"
                assert await page.inner_text("#sweep-label") == "Probar 3 intensidades (0.3 · 0.5 · 0.7)"
                assert await page.get_attribute("#prompt", "placeholder") == "noche lluviosa con letreros de neón"
                assert "hoy" in await page.inner_text("#account")
                assert await page.inner_text("#strength-out") == "0.50 · clara"

                # The page says what it builds in Spanish too; the bot's refusals come in Spanish.
                await page.click("#run")
                await page.wait_for_selector("#error:not([hidden])")
                assert await page.inner_text("#error") == "Elige o suelta una imagen primero."
                await page.set_input_files("#picture", str(picture))
                await page.click("#run")
                await page.wait_for_function("() => document.getElementById('error').textContent.startsWith('Describe')")
                await page.fill("#prompt", "acuarela")
                await page.check("#sweep")
                await page.click("#run")
                await page.wait_for_selector("#sweep-view:not([hidden])")
                assert await page.locator(".sweep-item .keep").all_inner_texts() == [
                    "Quedarme con 0.3",
                    "Quedarme con 0.5",
                    "Quedarme con 0.7",
                ]
                assert (await page.locator(".sweep-item .sweep-effect").all_inner_texts())[0] == "conserva la composición"
                assert await page.inner_text("#sweep-zip") == "Descargar todo (ZIP)"
                await page.click(".sweep-item[data-strength='0.5'] .keep")
                await page.wait_for_selector("#compare-wrap:not([hidden])")
                assert "(clara)" in await page.inner_text("#result-info")
                assert "pasos" in await page.inner_text("#result-info")
                assert await page.inner_text('[data-change="subtler"]') == "Más sutil"
                assert await page.inner_text("#try-sweep") == "Probar 3 intensidades"
                await page.screenshot(path=str(SPANISH_SCREENSHOT), full_page=True)
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        await app.stop()


async def test_a_chat_results_compare_link_opens_its_drag_to_compare_view_in_chromium(tmp_path):
    """What a Telegram or Discord member sees behind "Compare ↗": no token, that one result."""
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        '[web]\nport = 0\ntier = "pro"\naccess_token = "s3cret-token"\npublic_url = "https://restyle.example.org"\n'
    )
    app = await App.create(load_config(config_path, env={}), engine_factory=lambda _: FakeEngine())
    await app.start()
    try:
        await wait_until(lambda: app.health.engine_ready, what="the engine")
        web = next(a for a in app.adapters if isinstance(a, WebAdapter))
        member = Member("telegram", "1001", "Ana")
        picture = landscape(tmp_path / "landscape.png", (480, 320)).read_bytes()
        accepted = await app.service.jobs.submit(member, picture, "inverted colours strength=0.5", {})
        assert isinstance(accepted, Accepted), accepted
        await wait_until(lambda: _done(app, accepted.job_id), timeout=15, what="the result")
        links = app.service.compare_links
        assert links is not None and web.url is not None
        link = links.url(accepted.job_id, app.service.clock.now()).replace("https://restyle.example.org", web.url)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(viewport={"width": 1000, "height": 760})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
                await page.goto(link)
                await page.wait_for_function(
                    "() => ['compare-before', 'compare-after'].every(id => document.getElementById(id).naturalWidth > 0)"
                )
                clip = "getComputedStyle(document.getElementById('compare-after')).clipPath"
                assert await page.evaluate(clip) == "inset(0px 0px 0px 50%)"
                assert "inverted colours" in await page.inner_text("figcaption")
                await page.focus("#compare-range")
                await page.keyboard.press("Home")
                for _ in range(35):
                    await page.keyboard.press("ArrowRight")
                assert await page.evaluate(clip) == "inset(0px 0px 0px 35%)"
                # The picture keeps its own shape (compare.js reads it once loaded).
                ratio = await page.evaluate("getComputedStyle(document.getElementById('compare')).aspectRatio")
                assert ratio.replace(" ", "") in ("480/320", "3/2"), ratio
                if DOCS is not None:
                    await page.screenshot(path=str(DOCS / "compare-link.png"), full_page=True)
                assert not errors, errors
                # The token-guarded page itself is still closed to this browser.
                response = await page.goto(web.url + "/")
                assert response is not None and response.status == 401
            finally:
                await browser.close()
    finally:
        await app.stop()


async def _done(app: App, job_id: str) -> bool:
    job = await app.service.jobs.job(job_id)
    return job is not None and job.status == "done"
