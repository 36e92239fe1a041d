"""The web page's own words (index.html and app.js), in the member's language.

Each text is an English msgid in the one catalogue (bot/i18n.py), named by an id the page uses:
index.html keeps the English in its markup as the fallback and marks the element with
data-t="id" (data-t-alt, data-t-title, data-t-placeholder, data-t-aria-label for attributes);
app.js fetches the table from GET /api/texts once and builds its own sentences from it.
Placeholders are `{name}` as in Python (a format spec such as `{strength:g}` is the page's
plain number). A text whose words depend on a count is served as its plural forms by CLDR
category ("one", "few", "many", "other"), which the browser picks with Intl.PluralRules."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import web

from bot.commands import describe_strength
from bot.i18n import N_, Plural, Translator, language, translator

PAGE_TEXTS: Mapping[str, str] = MappingProxyType(
    {
        # index.html
        "skip": N_("Skip to the prompt"),
        "stage_label": N_("Picture"),
        "panel_label": N_("Restyle"),
        "drop_title": N_("Drop a picture here"),
        "drop_or": N_("or"),
        "drop_choose": N_("choose a file"),
        "drop_hint": N_("PNG, JPEG or WebP"),
        "preview_alt": N_("The picture you picked"),
        "progress_label": N_("Progress"),
        "cancel": N_("Cancel"),
        "original_alt": N_("The original picture"),
        "restyled_alt": N_("The restyled picture"),
        # TRANSLATORS: tags on the two halves of the drag-to-compare view.
        "tag_original": N_("Original"),
        "tag_restyled": N_("Restyled"),
        "compare_label": N_("Compare: original on the left, restyled on the right"),
        "change_picture": N_("Use another picture"),
        "form_title": N_("Restyle a picture"),
        "prompt_label": N_("Describe the new style"),
        "prompt_placeholder": N_("rainy night with neon signs"),
        "prompt_help": N_("Ctrl+Enter runs it. Chat options like seed=42 work here too."),
        "style_label": N_("Or start from a ready-made style"),
        "style_none": N_("None: my own words above"),
        "style_help": N_("A style brings its own prompt and strength; words above are added to it."),
        "strength_label": N_("Strength"),
        "strength_help": N_("0.2–0.3 keeps the layout, 0.4–0.6 gives a clear new style, 0.7–0.9 reworks heavily."),
        "more_options": N_("More options"),
        "seed_label": N_("Seed"),
        # TRANSLATORS: the seed field's placeholder: left empty, the seed is random.
        "seed_placeholder": N_("random"),
        "seed_help": N_("Same seed, same result."),
        "negative_label": N_("Avoid"),
        "negative_placeholder": N_("text, watermark"),
        "run": N_("Run"),
        "download": N_("Download"),
        "run_again": N_("Run again"),
        "again": N_("Again"),
        "again_title": N_("Same picture and prompt, a new seed"),
        "subtler": N_("Subtler"),
        "subtler_title": N_("Less change"),
        "stronger": N_("Stronger"),
        "stronger_title": N_("More change"),
        "download_all": N_("Download all (ZIP)"),
        # app.js
        "no_picture": N_("Pick or drop a picture first."),
        "unreachable": N_("The bot cannot be reached. Is it still running?"),
        "bad_answer": N_("The bot answered {status} {reason}."),
        "style_option": N_("{name} (strength {strength}): {about}"),
        "used_today": N_("{used} of {quota} today"),
        "drop_hint_limit": N_("PNG, JPEG or WebP, up to {mb} MB"),
        "engine_loading": N_("The model is still loading; jobs wait in the queue until it is ready."),
        "too_big": N_("That picture is {size} MB; the most the bot takes is {mb} MB."),
        "sweep_box": N_("Try {count} strengths ({strengths})"),
        "try_sweep": N_("Try {count} strengths"),
        "try_sweep_title": N_("The same picture, prompt and seed at {strengths}"),
        "sweep_help": N_("Same picture, prompt and seed at each strength; costs one restyle each."),
        "sweep_not_in_tier": N_("The {tier} tier has no strength sweeps; pick one strength above."),
        "a_moment": N_("a moment"),
        "about": N_("about {duration}"),
        "seconds": N_("{seconds} s"),
        "minutes": N_("{minutes} min"),
        "next_in_line": N_("Next in line · {eta}"),
        "waiting": N_("Waiting in line: {ahead} ahead · {eta}"),
        "restyling": N_("Restyling…"),
        "restyling_percent": N_("Restyling… {percent}%"),
        "held_back": N_("Done. {tier} tier results appear in {eta}"),
        "job_failed": N_("The picture engine failed on this job; try again."),
        "trying": N_("Trying {count} strengths"),
        "trying_done": N_(": {ended} of {count} done"),
        "sweep_next_in_line": N_("{what} · next in line · {eta}"),
        "sweep_waiting": N_("{what} · waiting in line: {ahead} ahead · {eta}"),
        "sweep_restyling": N_("{what} · restyling {strength}…"),
        "sweep_held_back": N_("All {count} done. {tier} tier results appear in {eta}"),
        "sweep_failed": N_("The picture engine failed on this sweep; try again."),
        "sweep_title": N_("{count} strengths, one seed"),
        "sweep_alt": N_("Restyled at strength {strength}"),
        "sweep_cancelled": N_("Cancelled"),
        "sweep_failed_one": N_("Failed"),
        "sweep_failed_why": N_("Failed: {error}"),
        "sweep_seed": N_("seed {seed}"),
        "sweep_advice": N_("Keep the one you like to go on from it."),
        "keep": N_("Keep {strength:g}"),
        # What each strength does, under each picture of a sweep (as the strength help says).
        "effect_subtle": N_("keeps the layout"),
        "effect_clear": N_("clear new style"),
        "effect_heavy": N_("reworks heavily"),
        "compare_value": N_("{percent}% restyled"),
    }
)
PAGE_PLURALS: Mapping[str, Plural] = MappingProxyType(
    {
        "result_facts": Plural(
            "strength {strength:g} ({word}) · seed {seed} · {count} step",
            "strength {strength:g} ({word}) · seed {seed} · {count} steps",
            0,
        ),
    }
)
# A count of each CLDR plural category of the page's languages, to say each gettext form once.
PLURAL_SAMPLES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "en": {"one": 1, "other": 2},
        "es": {"one": 1, "other": 2},
        "ru": {"one": 1, "few": 2, "many": 5, "other": 5},
    }
)


def page_texts(lang: str, tr: Translator) -> dict[str, str | dict[str, str]]:
    """Every text of the page by its id, in `tr`'s language (`lang`, one of bot.i18n.LANGUAGES)."""
    texts: dict[str, str | dict[str, str]] = {key: tr.gettext(msgid) for key, msgid in PAGE_TEXTS.items()}
    # The strength's one word, as chat captions say it (a context tells "clear" from "transparent").
    for key, strength in (("word_subtle", 0.25), ("word_clear", 0.5), ("word_heavy", 0.8)):
        texts[key] = describe_strength(strength, tr)
    samples = PLURAL_SAMPLES.get(lang, PLURAL_SAMPLES["en"])
    for key, plural in PAGE_PLURALS.items():
        texts[key] = {category: tr.ngettext(plural.singular, plural.plural, n) for category, n in samples.items()}
    return texts


def texts_response(accept_language: str | None, if_none_match: str | None) -> web.Response:
    """GET /api/texts: the table in the browser's language (its Accept-Language), as
    {"lang": "es", "texts": {...}}. Cached per language by the browser and revalidated (ETag),
    so a new version's words show at the next load."""
    lang = language(accept_language)
    body = json.dumps({"lang": lang, "texts": page_texts(lang, translator(lang))}, ensure_ascii=False).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": "Accept-Language"}
    if if_none_match is not None and etag in (tag.strip() for tag in if_none_match.split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", charset="utf-8", headers=headers)
