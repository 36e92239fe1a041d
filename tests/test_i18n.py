"""The catalogue: every text the sources mark is in the template and translated in every language
(same placeholders, every plural form); the member's language is picked from what each platform
sends, and English is what a member reads where a translation is missing."""

from __future__ import annotations

import gettext
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot import i18n
from bot.commands import CommandError, parse_restyle
from bot.i18n import Plural, Text, language, translator
from tests.harness.language import english_left

ROOT = Path(__file__).resolve().parent.parent


def _catalogue(path: Path, lang: str | None = None):
    with open(path, "rb") as po:
        return read_po(po, locale=lang)


def _keys(catalog) -> set[tuple[str | None, object]]:
    return {(m.context, m.id) for m in catalog if m.id}


def _fields(text: str) -> set[tuple[str, str, str | None]]:
    """The placeholders of a format string: name, format spec and conversion ({name!r}, {n:,})."""
    return {(name, spec or "", conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None}


def test_the_committed_template_is_what_the_sources_mark():
    """A text added (or changed) in the code without `python -m bot.i18n extract` fails here."""
    extracted = _keys(i18n.extract_template(ROOT))
    committed = _keys(_catalogue(i18n.TEMPLATE))
    assert extracted - committed == set(), "run `python -m bot.i18n extract` and translate the new texts"
    assert committed - extracted == set(), "run `python -m bot.i18n extract`: the template has texts no source uses"


@pytest.mark.parametrize("lang", [lang for lang in i18n.LANGUAGES if lang != i18n.ENGLISH])
def test_every_text_is_translated_with_the_same_placeholders_and_every_plural_form(lang):
    template = _catalogue(i18n.TEMPLATE)
    catalog = _catalogue(i18n.LOCALES / lang / "LC_MESSAGES" / "restyle.po", lang)
    problems = []
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, message.context)
        if found is None:
            problems.append(f"missing: {message.id!r}")
            continue
        if found.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        if isinstance(message.id, tuple) and len(strings) != catalog.num_plurals:
            problems.append(f"{len(strings)} of {catalog.num_plurals} plural forms: {message.id!r}")
        if not all(strings):
            problems.append(f"untranslated: {message.id!r}")
        wanted = set().union(*(_fields(i) for i in ids))
        for translated in strings:
            if translated and _fields(translated) != wanted:
                problems.append(f"placeholders {_fields(translated)} != {wanted}: {message.id!r}")
    assert problems == []


def test_russian_has_its_three_plural_forms_and_spanish_two():
    ru = translator("ru")
    assert _catalogue(i18n.LOCALES / "ru" / "LC_MESSAGES" / "restyle.po", "ru").num_plurals == 3
    assert _catalogue(i18n.LOCALES / "es" / "LC_MESSAGES" / "restyle.po", "es").num_plurals == 2
    quota = "You have used your {count} restyle of the {tier} tier today. The count starts again at midnight UTC."
    quotas = "You have used all {count} restyles of the {tier} tier today. The count starts again at midnight UTC."
    said = {n: ru.ngettext(quota, quotas, n).format(count=n, tier="free") for n in (1, 3, 5, 21, 22, 25)}
    assert "1 обработку" in said[1] and "21 обработку" in said[21]
    assert "3 обработки" in said[3] and "22 обработки" in said[22]
    assert "5 обработок" in said[5] and "25 обработок" in said[25]
    es = translator("es")
    assert "los 5 reestilizados" in es.ngettext(quota, quotas, 5).format(count=5, tier="free")
    assert "tu 1 reestilizado" in es.ngettext(quota, quotas, 1).format(count=1, tier="free")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("es", "es"),
        ("es-ES", "es"),
        ("es-419", "es"),
        ("es_MX", "es"),
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("en-GB", "en"),
        ("en-US", "en"),
        ("pt-BR", "en"),
        ("zh-CN", "en"),
        ("de-DE,de;q=0.9,es;q=0.8,en;q=0.7", "es"),  # the best match a browser asks for
        ("en-US,en;q=0.9,ru;q=0.8", "en"),
        ("fr;q=0.9, ru;q=0.5, es;q=0.4", "ru"),
        ("es;q=0, ru", "ru"),  # q=0: "not this one"
        ("*", "en"),
        ("garbage;;;q=x", "en"),
    ],
)
def test_the_language_is_picked_from_a_platform_code_or_an_accept_language_header(code, expected):
    assert language(code) == expected


def test_an_unknown_language_reads_english():
    text = "That job is gone; send the picture again with /restyle."
    assert translator("pt-BR").gettext(text) == text
    assert translator(None).gettext(text) == text
    assert translator("es").gettext(text) != text


def test_a_missing_or_empty_translation_reads_english(tmp_path, monkeypatch):
    po = tmp_path / "es" / "LC_MESSAGES" / "restyle.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n'
        '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
        'msgid "Hello"\nmsgstr "Hola"\n\n'
        'msgid "Empty"\nmsgstr ""\n\n'
        'msgid "{count} job"\nmsgid_plural "{count} jobs"\nmsgstr[0] "{count} trabajo"\nmsgstr[1] ""\n\n'
        '#, fuzzy\nmsgid "Unsure"\nmsgstr "Dudoso"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    i18n._translator_for.cache_clear()
    try:
        es = translator("es")
        assert es.gettext("Hello") == "Hola"
        assert es.gettext("Empty") == "Empty"
        assert es.gettext("Unsure") == "Unsure"
        assert es.gettext("Not in the catalogue") == "Not in the catalogue"
        # A plural entry with a form missing is not used at all: English, not a half translation.
        assert es.ngettext("{count} job", "{count} jobs", 1) == "{count} job"
        assert es.ngettext("{count} job", "{count} jobs", 3) == "{count} jobs"
    finally:
        i18n._translator_for.cache_clear()


def test_a_catalogue_is_read_once():
    assert translator("es-ES") is translator("es")
    assert isinstance(translator("ru"), gettext.GNUTranslations)


def test_a_text_and_a_plural_are_said_in_the_language_asked():
    gone = Text("That job is gone; send the picture again with /restyle.")
    assert str(gone) == "That job is gone; send the picture again with /restyle."
    assert gone.render(translator("es")) == "Ese trabajo ya no existe; envía la imagen otra vez con /restyle."
    nested = Text("{key} must be png, jpeg or webp, like format=png — got {value}.", {"key": "format", "value": Text("nothing")})
    assert nested.render(translator("ru")) == "format должен быть png, jpeg или webp, например format=png, а получено ничего."
    many = Plural("{count} job", "{count} jobs", 3)
    assert str(many) == "3 jobs"


def test_a_grammar_error_is_said_in_the_members_language():
    with pytest.raises(CommandError) as caught:
        parse_restyle("/restyle watercolor strength=2")
    assert str(caught.value) == "strength must be a number from 0.05 to 1.0, like strength=0.5 — got '2'."
    assert caught.value.render(translator("es")) == (
        "strength tiene que ser un número de 0.05 a 1.0, como strength=0.5, y recibí '2'."
    )
    assert caught.value.render(translator("ru")).startswith("strength должен быть числом от 0.05 до 1.0")


def test_the_english_left_check_finds_a_sentence_left_untranslated_and_passes_names_and_commands():
    english = "You are on the free tier.\n\npro: priority in the queue, 200 restyles a day\nHave a code? Send /upgrade CODE."
    spanish = "Estás en el plan free.\n\npro: prioridad en la cola, 200 reestilizados al día\n¿Tienes un código? Envía /upgrade CÓDIGO."
    assert english_left(english, spanish) == []
    half = spanish.replace("prioridad en la cola", "priority in the queue")
    assert english_left(english, half) == ["priority in the queue"]
    assert english_left("Plans: /upgrade, strength=sweep, Max", "Planes: /upgrade, strength=sweep, Max") == []
