"""The web page's own words in the member's language: GET /api/texts (bot/adapters/web/page_texts.py)
in the browser's language, and every text index.html and app.js name is in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from bot.adapters.web.page import STATIC_DIR
from bot.adapters.web.page_texts import PAGE_PLURALS, PAGE_TEXTS
from bot.i18n import LOCALES, translator
from tests.harness.web import Site, open_site

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def site(tmp_path):
    s = await open_site(tmp_path)
    yield s
    await s.http.close()
    await s.app.stop()


async def texts(site: Site, accept_language: str | None) -> tuple[int, Any, dict]:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    async with site.http.get(f"{site.url}/api/texts", headers=headers) as response:
        return response.status, response.headers.copy(), await response.json()


def catalogue(lang: str) -> dict[str, str]:
    with open(Path(LOCALES) / lang / "LC_MESSAGES" / "restyle.po", "rb") as po:
        return {m.id: m.string for m in read_po(po, locale=lang) if isinstance(m.id, str) and not m.context}


async def test_a_spanish_browser_gets_every_page_text_in_spanish_and_others_get_english(site):
    status, headers, answer = await texts(site, "es-ES,es;q=0.9,en;q=0.5")
    assert status == 200 and answer["lang"] == "es"
    assert "Accept-Language" in headers["Vary"]
    spanish = catalogue("es")
    served = answer["texts"]
    for key, msgid in PAGE_TEXTS.items():
        assert spanish.get(msgid), f"{key}: {msgid!r} has no Spanish translation"
        assert served[key] == spanish[msgid], key
    assert served["strength_label"] == "Intensidad" and served["run"] == "Ejecutar"
    assert served["word_clear"] == translator("es").pgettext("strength", "clear") != "clear"
    assert served["result_facts"]["one"].endswith("{count} paso")
    assert served["result_facts"]["other"].endswith("{count} pasos")

    for no_spanish in (None, "de-DE,fr;q=0.8"):
        status, _, answer = await texts(site, no_spanish)
        assert status == 200 and answer["lang"] == "en"
        assert {key: answer["texts"][key] for key in PAGE_TEXTS} == dict(PAGE_TEXTS)
        assert answer["texts"]["word_heavy"] == "heavy"
        assert answer["texts"]["result_facts"] == {
            "one": PAGE_PLURALS["result_facts"].singular,
            "other": PAGE_PLURALS["result_facts"].plural,
        }


async def test_russian_counts_get_their_three_forms_by_plural_category(site):
    _, _, answer = await texts(site, "ru")
    forms = answer["texts"]["result_facts"]
    assert set(forms) == {"one", "few", "many", "other"}
    assert forms["one"].endswith("{count} шаг") and forms["few"].endswith("{count} шага")
    assert forms["many"].endswith("{count} шагов")
    assert answer["texts"]["cancel"] == translator("ru").gettext("Cancel") != "Cancel"


async def test_the_table_is_cached_per_language_and_revalidated(site):
    _, spanish, _ = await texts(site, "es")
    _, english, _ = await texts(site, "en")
    assert spanish["ETag"] != english["ETag"]
    assert "no-cache" in spanish["Cache-Control"]
    async with site.http.get(
        f"{site.url}/api/texts", headers={"Accept-Language": "es", "If-None-Match": spanish["ETag"]}
    ) as response:
        assert response.status == 304
    async with site.http.get(
        f"{site.url}/api/texts", headers={"Accept-Language": "en", "If-None-Match": spanish["ETag"]}
    ) as response:
        assert response.status == 200  # another language's copy is not this one


async def test_every_text_the_page_names_is_in_the_table(site):
    _, _, answer = await texts(site, None)
    served = set(answer["texts"])
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    script = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    named = set(re.findall(r'data-t(?:-[a-z-]+)?="(\w+)"', html))
    named |= set(re.findall(r'\btn?\("(\w+)"', script))
    for prefix in re.findall(r"\bt\(`(\w+)_\$\{", script):  # t(`word_${level}`)
        named |= {f"{prefix}_{level}" for level in ("subtle", "clear", "heavy")}
    assert len(named) > 60
    assert named <= served, sorted(named - served)
    # Nothing in the table goes unused (a text no one shows would still be translated).
    unused = served - named - {"word_subtle", "word_clear", "word_heavy"}
    assert not unused, sorted(unused)


async def test_a_failed_job_s_error_and_strength_word_come_in_the_browser_s_language(tmp_path):
    site = await open_site(tmp_path, headers={"Accept-Language": "es"})
    try:
        site.engine.fail_prompts.add("doomed")
        status, body = await site.submit("doomed", strength="0.5")
        assert status == 202, body
        assert body["job"]["strength_word"] == "clara"
        failed = await site.wait(body["job"]["id"], ("failed",))
        english = "The picture engine failed on this job; try again."
        assert failed["error"] == translator("es").gettext(english) != english
    finally:
        await site.http.close()
        await site.app.stop()


async def test_the_api_s_own_errors_come_in_the_browser_s_language(tmp_path):
    site = await open_site(tmp_path, extra="max_upload_mb = 0.1", headers={"Accept-Language": "es"})
    es = translator("es")
    try:
        status, body = await site.get_json("/api/jobs/abc123")
        assert status == 404
        assert body["error"] == es.gettext("That picture is not kept any more; pick it again and press Run.")
        assert body["error"].startswith("Esa imagen ya no se conserva")
        status, body = await site.get_json("/api/sweeps/abc123")
        assert status == 404 and body["error"].startswith("Ese barrido ya no se conserva")
        status, body = await site.get_json("/api/nothing-here")
        assert status == 404 and body["error"] == "Aquí no hay nada."
        async with site.http.post(f"{site.url}/api/jobs", json={"prompt": "x"}) as response:
            assert response.status == 400
            assert (await response.json())["error"].startswith("Envía la imagen como multipart/form-data")
        status, body = await site.submit("acuarela", picture=b"\x89PNG" + b"0" * 200_000)
        assert status == 413
        assert body["error"].startswith("Esa imagen ocupa") and "como mucho 0.1 MB" in body["error"]
    finally:
        await site.http.close()
        await site.app.stop()
