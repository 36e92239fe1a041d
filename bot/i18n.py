"""The member's language: one gettext catalogue (English msgids in the code, Spanish and Russian in
bot/locales/), chosen from what the platform says of the member, with English for everything else.

Texts are written in English where they are used, as `tr.gettext("Queued: #{position} in line")`
(named placeholders, filled with `.format()` after translating; `ngettext` for counts, `pgettext`
where one English word means two things), or as a `Text` where the words are chosen before the
member's language is known (a grammar error, a refusal built deep in the core).

`python -m bot.i18n extract` rewrites bot/locales/restyle.pot from the sources and merges it into
each language's .po file: run it after adding or changing a text, then translate the new entries
(tests/test_i18n.py fails while one is missing).

Babel is imported only to read and write catalogues, so the stdlib-only rooms (bot/commands.py)
can use `Text` and `N_` without it.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

ENGLISH = "en"
LANGUAGES = ("en", "es", "ru")  # English is the msgids themselves: it has no catalogue
DOMAIN = "restyle"
LOCALES = Path(__file__).resolve().parent / "locales"
TEMPLATE = LOCALES / f"{DOMAIN}.pot"
CATALOGUE_DATE = datetime(2026, 12, 2, tzinfo=UTC)
SOURCES = ("bot", "engine")  # read by the extractor, relative to the repository root
# The calls the extractor reads texts from (Babel's keyword spec: which arguments are the texts).
KEYWORDS: dict[str, Any] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "npgettext": ((1, "c"), 2, 3),
    "N_": None,
    "Text": None,
    "Plural": (1, 2),
}

# GNU gettext's rules (CLDR's, which Babel would write, give Spanish a third form for millions).
PLURAL_FORMS = {
    "es": "nplurals=2; plural=(n != 1);",
    "ru": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);",
}

Translator = gettext.NullTranslations
_TAG = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*")


def N_(text: str) -> str:  # noqa: N802  (gettext's own name for "mark for extraction, translate later")
    """A text marked for the extractor, translated later where the member's language is known."""
    return text


@dataclass(frozen=True)
class Text:
    """An English text (a msgid) and its named values, said in the member's language once it is
    known: `text.render(translator(lang))`. A value that is itself a Text is rendered too."""

    template: str
    params: Mapping[str, object] = field(default_factory=dict)

    def render(self, tr: Translator | None = None) -> str:
        say: Callable[[str], str] = tr.gettext if tr is not None else (lambda s: s)
        # Without values a text is taken as it is (a brace in it is not a placeholder).
        return say(self.template).format(**_rendered(self.params, tr)) if self.params else say(self.template)

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class Plural:
    """A Text whose words depend on a count (`count` is also a placeholder): Russian has three forms."""

    singular: str
    plural: str
    count: int
    params: Mapping[str, object] = field(default_factory=dict)

    def render(self, tr: Translator | None = None) -> str:
        if tr is None:
            chosen = self.singular if self.count == 1 else self.plural
        else:
            chosen = tr.ngettext(self.singular, self.plural, self.count)
        return chosen.format(count=self.count, **_rendered(self.params, tr))

    def __str__(self) -> str:
        return self.render()


def _rendered(params: Mapping[str, object], tr: Translator | None) -> dict[str, object]:
    return {k: v.render(tr) if isinstance(v, Text | Plural) else v for k, v in params.items()}


def language(code: str | None) -> str:
    """The supported language for what a platform says of a member: a language tag ("es",
    "es-419", "ru_RU", Discord's "es-ES") or a browser's Accept-Language header (its best match
    by weight); English when nothing fits."""
    if not code:
        return ENGLISH
    choices: list[tuple[float, int, str]] = []
    for order, part in enumerate(code.split(",")[:32]):  # a header is short; never read a wall of it
        tag, _, rest = part.strip().partition(";")
        weight = 1.0
        for param in rest.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        tag = tag.strip()
        if weight > 0 and _TAG.fullmatch(tag):
            choices.append((-weight, order, tag))
    for _, _, tag in sorted(choices):
        primary = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
        if primary in LANGUAGES:
            return primary
    return ENGLISH


@functools.cache
def _translator_for(lang: str) -> Translator:
    if lang == ENGLISH:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as po:
        catalog = read_po(po, locale=lang)
    # An entry not translated yet (empty, or only partly for plural forms) is left out, so the
    # member reads the English text instead of nothing; fuzzy ones are left out by write_mo.
    for message in list(catalog):
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and not all(strings):
            catalog.delete(message.id, message.context)
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    translations = gettext.GNUTranslations(mo)
    translations.add_fallback(gettext.NullTranslations())
    return translations


def translator(lang: str | None) -> Translator:
    """gettext / ngettext / pgettext in the member's language (see `language`), English where a
    text has no translation; each catalogue is read once."""
    return _translator_for(language(lang))


def say(lang: str | None, text: str, **params: object) -> str:
    """One text in the member's language with its placeholders filled."""
    return translator(lang).gettext(text).format(**params)


# The catalogues (for `python -m bot.i18n extract` and the tests) -------------------------------


def extract_template(root: Path) -> Catalog:
    """Every text the sources under `root` mark for translation, as a catalogue template."""
    from babel.messages.extract import extract_from_dir

    catalog = _catalog(None)
    for source in SOURCES:
        found = extract_from_dir(
            root / source, method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
        )
        for filename, lineno, message, comments, context in found:
            catalog.add(message, None, [(f"{source}/{filename}", lineno)], auto_comments=comments, context=context)
    return catalog


def _catalog(lang: str | None) -> Catalog:
    from babel.messages.catalog import Catalog

    # Fixed dates and names: a header that changed with every extract would be a merge conflict.
    catalog = Catalog(
        locale=lang,
        project="restyle-bot",
        version="1",
        domain=DOMAIN,
        charset="utf-8",
        creation_date=CATALOGUE_DATE,
        revision_date=CATALOGUE_DATE,
        last_translator="restyle-bot",
        language_team=lang or "",
        fuzzy=False,
    )
    if lang in PLURAL_FORMS:
        catalog.mime_headers = [("Plural-Forms", PLURAL_FORMS[lang])]
    return catalog


def _write(catalog: Catalog, path: Path) -> None:
    from babel.messages.pofile import write_po

    out = io.BytesIO()
    # No source locations: they change with every edit and would make each merge a conflict.
    write_po(out, catalog, no_location=True, sort_output=True, width=100, omit_header=False)
    path.write_bytes(out.getvalue())


def extract(root: Path) -> list[Path]:
    """Rewrite the template from the sources and merge it into every language's catalogue
    (new texts empty, changed ones fuzzy, gone ones dropped); the files written."""
    from babel.messages.pofile import read_po

    template = extract_template(root)
    written = [TEMPLATE]
    _write(template, TEMPLATE)
    for lang in LANGUAGES:
        if lang == ENGLISH:
            continue
        path = LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "rb") as po:
                catalog = read_po(po, locale=lang)
        else:
            catalog = _catalog(lang)
        catalog.update(template, no_fuzzy_matching=False)
        catalog.obsolete.clear()
        _write(catalog, path)
        written.append(path)
    _translator_for.cache_clear()
    return written


def main(argv: list[str]) -> int:
    if argv != ["extract"]:
        print("usage: python -m bot.i18n extract", file=sys.stderr)
        return 2
    for path in extract(Path(__file__).resolve().parent.parent):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
