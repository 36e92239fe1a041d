"""The /restyle grammar, shared by every front end.

`parse_restyle` turns what a chat member typed into a `RestyleCommand`, or raises `CommandError`
with a message meant to be sent back to that member as-is. Pure and stdlib-only, so adapters and
tests can call it without a model, a network or an event loop.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import NoReturn, Protocol

from bot.i18n import N_, Text, Translator

MIN_STRENGTH = 0.05  # below this img2img barely runs a denoising step: the picture comes back unchanged
MAX_STRENGTH = 1.0
MAX_SEED = 2**32 - 1  # torch generators take any int, but 32 bits is what people can copy and share
MIN_STEPS = 1
MAX_STEPS = 50
MAX_PROMPT_CHARS = 500  # CLIP only reads ~77 tokens anyway; this keeps logs and captions readable
# The whole command as typed, checked before any pattern runs: a prompt and a no= text at their
# limits with every option still fit, and nothing a member sends costs more than this to parse.
MAX_COMMAND_CHARS = 2000
FORMATS: Mapping[str, str] = MappingProxyType({"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"})

STRENGTH_PHRASES: Mapping[str, float] = MappingProxyType(
    {"low strength": 0.25, "medium strength": 0.5, "high strength": 0.8}
)

# strength=sweep runs one request at these strengths (same picture, prompt and seed), in this order.
SWEEP_STRENGTHS: tuple[float, ...] = (0.3, 0.5, 0.7)
SWEEP_WORD = "sweep"
_SWEEP_SHOWN = ", ".join(map(str, SWEEP_STRENGTHS))

EXAMPLE = "/restyle rainy night with neon signs strength=0.5"

# The option names (strength=, seed=, ...) and "low strength" are the grammar: translations keep them.
USAGE_TEXT = Text(
    N_("""\
Send or reply to a picture with /restyle and a description of the new style.

  {example}
  /restyle oil painting, thick brush strokes, low strength
  /restyle pencil sketch strength=0.8 seed=42 no="colour, text"

How much of the picture changes (strength=, from {min_strength} to {max_strength}):
  0.2-0.3  keeps the layout and nudges colours   (or say "low strength")
  0.4-0.6  clear new style, shapes kept          (or "medium strength")
  0.7-0.9  heavy rework                          (or "high strength")
  strength=sweep  tries {sweep_strengths} at once and shows them side by side
                  (costs {sweep_count} restyles; not on every tier)

Ready-made styles: style=neon (its own prompt and strength; words you add go with it). /styles lists them.

Other options: seed=N (0 to {max_seed}, same seed = same result), steps=N ({min_steps} to {max_steps}, capped by your tier),
no="things to avoid", format=png|jpeg|webp. Quote values with spaces: no="text, watermark".
"""),
    {
        "example": EXAMPLE,
        "min_strength": MIN_STRENGTH,
        "max_strength": MAX_STRENGTH,
        "max_seed": MAX_SEED,
        "min_steps": MIN_STEPS,
        "max_steps": MAX_STEPS,
        "sweep_strengths": _SWEEP_SHOWN,
        "sweep_count": len(SWEEP_STRENGTHS),
    },
)
USAGE = USAGE_TEXT.render()


def usage(tr: Translator | None = None) -> str:
    """/help's text in the member's language."""
    return USAGE_TEXT.render(tr)


class CommandError(ValueError):
    """A /restyle that cannot be run; str(error) is written (in English) for the chat member who
    sent it, `render(translator)` says it in their language."""

    def __init__(self, text: Text | str) -> None:
        self.text = text if isinstance(text, Text) else Text(text)
        super().__init__(self.text.render())

    def render(self, tr: Translator | None = None) -> str:
        return self.text.render(tr)


@dataclass(frozen=True)
class RestyleCommand:
    prompt: str
    strength: float | None = None  # None: the configured default
    seed: int | None = None  # None: a random seed, reported back so the result can be repeated
    steps: int | None = None  # None: the engine's default
    negative_prompt: str | None = None
    output_format: str | None = None  # "png" | "jpeg" | "webp"; None: the front end's choice
    style: str | None = None  # a recipe's name (style=neon); apply_style() makes its prompt and strength
    # strength=sweep: run at each of SWEEP_STRENGTHS (strength stays None); one request, 3 jobs
    sweep: bool = False


# Every spelling of an option, mapped to the field it sets.
_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "strength": "strength",
        "s": "strength",
        "denoise": "strength",
        "seed": "seed",
        "steps": "steps",
        "no": "negative_prompt",
        "negative": "negative_prompt",
        "format": "output_format",
        "style": "style",
    }
)

# How options are called in messages: the name people see in USAGE.
_DISPLAY = {
    "strength": "strength",
    "seed": "seed",
    "steps": "steps",
    "negative_prompt": "no",
    "output_format": "format",
    "style": "style",
}

# Phone keyboards type curly quotes; accept the common pairs so "no=“text”" does what it looks like.
_QUOTES = {'"': '"', "'": "'", "“": "”", "”": "”", "‘": "’", "„": "“", "«": "»"}

_KEY_ALT = "|".join(sorted(map(re.escape, _KEYS), key=len, reverse=True))
# An option starts a word (start of text or after whitespace) so that "e=mc2" or "?s=1" in a URL
# never count; `key=` must be written without spaces, as USAGE shows.
_OPTION_RE = re.compile(rf"(?<!\S)(?P<key>{_KEY_ALT})=", re.IGNORECASE)
# An unquoted value runs to the next whitespace, minus trailing punctuation that separates it from
# the rest of the sentence ("strength=0.5, at night"). The punctuation is stripped in Python, not
# with a lazy match and a lookahead: that pair rescans the rest of the word at every position,
# quadratic in a word like ",,,,…x" (32,000 commas took 8 s).
_BARE_VALUE_RE = re.compile(r"\S*")
_TRAILING_PUNCTUATION = ",;.!?"
# Spaced "strength = 0.5" is almost surely meant as an option; say how to write it instead of
# silently painting the words. Short aliases (s, no) are left alone: too common in prose.
_SPACED_RE = re.compile(r"(?<!\S)(?P<key>strength|denoise|seed|steps|negative|format)(?:\s+=\s*|=\s+)\S", re.IGNORECASE)
_PHRASE_RE = re.compile(
    r"(?<!\w)(?P<phrase>" + "|".join(p.replace(" ", r"\s+") for p in STRENGTH_PHRASES) + r")(?![\w=])",
    re.IGNORECASE,
)
_STYLE_NAME_RE = re.compile(r"[a-z0-9_-]{1,32}")
_COMMAND_RE = re.compile(r"/restyle(?:@\w+)?(?=\s|$)", re.IGNORECASE)
_DECIMAL_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INTEGER_RE = re.compile(r"[0-9]+")
# Platform ids: Telegram's fit in 52 bits, Discord's snowflakes in 64 (at most 20 digits).
MAX_PLATFORM_ID = 2**64 - 1


def parse_restyle(text: str, *, bot_username: str | None = None) -> RestyleCommand:
    """Parse "/restyle <prompt> [key=value ...]", "/restyle@Bot ..." or the bare prompt text.

    `bot_username` (without "@") lets a leading "@Bot" mention be dropped from bare text, as in
    a group message "@Bot watercolor". Any "/restyle@Name" is accepted: adapters decide whether a
    command addressed to another bot is theirs to answer.
    """
    check_command_length(text)
    body = _strip_command(_clean(text), bot_username)
    values: dict[str, object] = {}
    given_as: dict[str, str] = {}  # field -> the key it was first given with, for "given twice"
    cuts: list[tuple[int, int]] = []

    for start, end, key, raw in _find_options(body):
        field = _KEYS[key.lower()]
        if field in values:
            raise CommandError(_twice(field, given_as[field], key))
        values[field] = _convert(field, raw)
        given_as[field] = key
        cuts.append((start, end))

    phrases = [m for m in _PHRASE_RE.finditer(body) if not _inside(m.start(), cuts)]
    if len(phrases) > 1:
        said = ", ".join(f'"{_squash(m.group("phrase"))}"' for m in phrases)
        raise CommandError(Text("Please pick one strength: you wrote {phrases}.", {"phrases": said}))
    if phrases:
        phrase = _squash(phrases[0].group("phrase"))
        if values.get("strength") == SWEEP_WORD:
            raise CommandError(
                Text(
                    'You wrote both "{phrase}" and {key}=sweep; please pick one: a sweep tries several strengths by itself.',
                    {"phrase": phrase, "key": given_as["strength"]},
                )
            )
        if "strength" in values:
            raise CommandError(
                Text(
                    'You wrote both "{phrase}" and {key}=; please keep just one of them.',
                    {"phrase": phrase, "key": given_as["strength"]},
                )
            )
        values["strength"] = STRENGTH_PHRASES[phrase.lower()]
        cuts.append(phrases[0].span())

    prompt = _remove_spans(body, cuts)
    _check_spaced_options(prompt)
    if not prompt and "style" not in values:
        raise CommandError(
            Text("Please describe the new style after /restyle, for example:\n{example}", {"example": EXAMPLE})
        )
    _check_length(N_("Your prompt is {length} characters long; the limit is {limit}. Please shorten it."), prompt)
    negative = values.get("negative_prompt")
    if isinstance(negative, str):
        _check_length(
            N_("Your no= text is {length} characters long; the limit is {limit}. Please shorten it."), negative
        )
    if values.get("strength") == SWEEP_WORD:
        del values["strength"]
        values["sweep"] = True
    return RestyleCommand(prompt=prompt, **values)  # type: ignore[arg-type]  # each option's checked value, by field name


class Recipe(Protocol):
    """A named style (bot.config.StyleSettings is one); read-only, so a frozen dataclass fits."""

    @property
    def name(self) -> str: ...

    @property
    def prompt(self) -> str: ...

    @property
    def strength(self) -> float: ...


def apply_style(command: RestyleCommand, styles: Mapping[str, Recipe]) -> RestyleCommand:
    """The command with its style=<name> made into a prompt and a strength: the recipe's
    prompt, then the member's words (they add to it); the recipe's strength unless the member
    gave one. A command without a style comes back as it is."""
    if command.style is None:
        return command
    recipe = styles.get(command.style)
    if recipe is None:
        close = difflib.get_close_matches(command.style, list(styles), n=1, cutoff=0.6)
        if not styles:
            raise CommandError(
                Text("I know no style called {name!r}; there are no styles yet.", {"name": command.style})
            )
        if close:
            raise CommandError(Text("I know no style called {name!r}. Did you mean {close!r}? The styles are: {known} "
                                    "(/styles says what each does).",
                                    {"name": command.style, "close": close[0], "known": ", ".join(sorted(styles))}))  # fmt: skip
        raise CommandError(Text("I know no style called {name!r}. The styles are: {known} (/styles says what each does).",
                                {"name": command.style, "known": ", ".join(sorted(styles))}))  # fmt: skip
    prompt = f"{recipe.prompt}, {command.prompt}" if command.prompt else recipe.prompt
    _check_length(
        N_("The style's prompt with your words is {length} characters long; the limit is {limit}. Please shorten it."),
        prompt,
    )
    # A sweep keeps strength None: it tries its own strengths on the recipe's prompt.
    strength = command.strength if command.strength is not None or command.sweep else recipe.strength
    return replace(command, prompt=prompt, strength=strength, style=None)


def whole_number(text: str, lo: int, hi: int) -> int | None:
    """`text` as a whole number from lo to hi, or None. ASCII digits only: str.isdigit() is True
    for "²" and "٣", which int() then refuses or reads as another number; and the length is
    checked before int() so a wall of digits costs nothing."""
    if not 0 < len(text) <= len(str(hi)) or not _INTEGER_RE.fullmatch(text):
        return None
    number = int(text)
    return number if lo <= number <= hi else None


def describe_strength(s: float, tr: Translator | None = None) -> str:
    """One word for a strength, for captions: "subtle", "clear" or "heavy"."""
    # A context: "clear" here is a clearly visible change, not "transparent" or "to empty".
    pgettext = tr.pgettext if tr is not None else (lambda _context, word: word)
    if s < 0.35:
        return pgettext("strength", "subtle")
    if s < 0.65:
        return pgettext("strength", "clear")
    return pgettext("strength", "heavy")


# How far the Subtler and Stronger buttons move strength, on every front end.
STRENGTH_STEP = 0.15
# The buttons under a result that run the job again, and how each moves strength.
STRENGTH_CHANGES: Mapping[str, float] = MappingProxyType(
    {"again": 0.0, "subtler": -STRENGTH_STEP, "stronger": STRENGTH_STEP}
)


@dataclass(frozen=True)
class OutputFormat:
    name: str  # as `format=` and the jobs table say it
    label: str  # on a button
    extension: str  # of a file sent
    media_type: str


# Every format a result can be had in, in the order the file buttons show them.
OUTPUT_FORMATS: Mapping[str, OutputFormat] = MappingProxyType({
    "png": OutputFormat("png", "PNG", "png", "image/png"),
    "webp": OutputFormat("webp", "WebP", "webp", "image/webp"),
    "jpeg": OutputFormat("jpeg", "JPEG", "jpg", "image/jpeg"),
})  # fmt: skip


def with_strength_delta(strength: float, delta: float) -> float:
    """The strength a Subtler/Stronger button asks for: moved by `delta`, kept in range."""
    # Round before and after clamping: 0.5 + 0.1 is 0.6000000000000001 in binary floats.
    return round(min(MAX_STRENGTH, max(MIN_STRENGTH, round(strength + delta, 2))), 2)


def _clean(text: str) -> str:
    # Collapse every run of whitespace (newlines included) first, then drop what is left of the
    # control characters. Format characters (Cf: zero-width joiners in emoji, right-to-left marks)
    # are kept: they are part of what the member wrote.
    collapsed = re.sub(r"\s+", " ", text)
    return "".join(c for c in collapsed if unicodedata.category(c) != "Cc").strip()


def _strip_command(text: str, bot_username: str | None) -> str:
    match = _COMMAND_RE.match(text)
    if match:
        return text[match.end() :].strip()
    if bot_username:
        mention = "@" + bot_username.lstrip("@")
        if text[: len(mention)].lower() == mention.lower() and text[len(mention) : len(mention) + 1] in ("", " "):
            return text[len(mention) :].strip()
    return text


def _check_spaced_options(prompt: str) -> None:
    match = _SPACED_RE.search(prompt)
    if match:
        _spaced_error(match.group("key"))


def _spaced_error(key: str) -> NoReturn:
    name = _DISPLAY[_KEYS[key.lower()]]
    raise CommandError(
        Text(
            "Please write options without spaces around =, like {name}={example}.",
            {"name": name, "example": _example_value(name)},
        )
    )


def _find_options(body: str) -> list[tuple[int, int, str, str]]:
    """(start, end, key, raw value) of each option, in order."""
    found = []
    pos = 0
    while match := _OPTION_RE.search(body, pos):
        key = match.group("key")
        value_start = match.end()
        opener = body[value_start : value_start + 1]
        if opener and opener in _QUOTES:
            closer = _QUOTES[opener]
            close = body.find(closer, value_start + 1)
            if close < 0:
                raise CommandError(
                    Text(
                        "The quote after {key}= is never closed; write it like {key}={opener}{example}{closer}.",
                        {"key": key, "opener": opener, "example": _example_value(key), "closer": closer},
                    )
                )
            raw, end = body[value_start + 1 : close], close + 1
        else:
            bare = _BARE_VALUE_RE.match(body, value_start)
            assert bare is not None  # \S* matches the empty string at worst
            raw = bare.group().rstrip(_TRAILING_PUNCTUATION)
            end = value_start + len(raw)
            if not raw and body[end : end + 1] == " ":
                _spaced_error(key)
        found.append((match.start(), end, key, raw))
        pos = end
    return found


def _convert(field: str, raw: str) -> object:
    key = _DISPLAY[field]  # messages use the name USAGE teaches, whichever alias was typed
    value = raw.strip()
    if field == "strength":
        if value.lower() == SWEEP_WORD:
            return SWEEP_WORD  # parse_restyle turns it into RestyleCommand.sweep
        return _number(key, value, MIN_STRENGTH, MAX_STRENGTH)
    if field == "seed":
        return _whole(key, value, 0, MAX_SEED)
    if field == "steps":
        return _whole(key, value, MIN_STEPS, MAX_STEPS)
    if field == "output_format":
        if value.lower() not in FORMATS:
            raise CommandError(
                Text(
                    "{key} must be png, jpeg or webp, like format=png — got {value}.",
                    {"key": key, "value": _shown(value)},
                )
            )
        return FORMATS[value.lower()]
    if field == "style":
        if not _STYLE_NAME_RE.fullmatch(value.lower()):
            raise CommandError(
                Text(
                    "{key}= needs a style's name, like style=neon (/styles lists them) — got {value}.",
                    {"key": key, "value": _shown(value)},
                )
            )
        return value.lower()
    # negative_prompt: free text, cleaned like the prompt.
    if not value:
        raise CommandError(Text('{key}= needs the things to avoid, like no="text, watermark".', {"key": key}))
    return value


def _number(key: str, value: str, lo: float, hi: float) -> float:
    params = {"key": key, "lo": lo, "hi": hi, "value": _shown(value)}
    if re.fullmatch(r"[0-9]*,[0-9]+", value):
        # Decimal commas are common outside English; say exactly what to change.
        raise CommandError(
            Text(
                "{key} must be a number from {lo} to {hi}, like {key}=0.5 — got {value}. Use a dot: {key}={dotted}.",
                {**params, "dotted": value.replace(",", ".")},
            )
        )
    if not _DECIMAL_RE.fullmatch(value) or not lo <= float(value) <= hi:
        raise CommandError(Text("{key} must be a number from {lo} to {hi}, like {key}=0.5 — got {value}.", params))
    return float(value)


def _whole(key: str, value: str, lo: int, hi: int) -> int:
    if not _INTEGER_RE.fullmatch(value) or not lo <= int(value) <= hi:
        raise CommandError(
            Text(
                "{key} must be a whole number from {lo} to {hi}, like {key}={example} — got {value}.",
                {"key": key, "lo": lo, "hi": hi, "example": _example_value(key), "value": _shown(value)},
            )
        )
    return int(value)


def _example_value(key: str) -> str:
    field = _KEYS[key.lower()]
    return {
        "strength": "0.5",
        "seed": "42",
        "steps": "8",
        "negative_prompt": "text, watermark",
        "output_format": "png",
    }[field]


def _twice(field: str, first: str, second: str) -> Text:
    params = {"name": _DISPLAY[field], "first": first, "second": second}
    if first.lower() == second.lower():
        return Text("{name} is given twice; please keep just one {first}=.", params)
    return Text("{name} is given twice ({first}= and {second}= mean the same); please keep just one.", params)


def check_command_length(text: str) -> None:
    """Refuse text too long to be a command, before any pattern looks at it (front ends call
    this for each text field they pass on)."""
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandError(
            Text(
                "That text is {length:,} characters long; the bot reads at most {limit:,}, so please shorten it.",
                {"length": len(text), "limit": MAX_COMMAND_CHARS},
            )
        )


def _check_length(template: str, text: str) -> None:
    """`template`: the whole sentence (with {length} and {limit}) for the field that is too long."""
    if len(text) > MAX_PROMPT_CHARS:
        raise CommandError(Text(template, {"length": len(text), "limit": MAX_PROMPT_CHARS}))


def _remove_spans(body: str, cuts: list[tuple[int, int]]) -> str:
    """`body` without the option and phrase spans, each taken out with one separating comma."""
    keep = [True] * len(body)
    for start, end in cuts:
        start, end = _widen_to_separator(body, start, end)
        for i in range(start, end):
            keep[i] = False
    kept = "".join(c for c, k in zip(body, keep, strict=True) if k)
    return re.sub(r" +", " ", kept).strip()


def _widen_to_separator(body: str, start: int, end: int) -> tuple[int, int]:
    # Take a clause out without leaving ", ," or a stray "." behind:
    #   "a, low strength, b"     -> "a, b"          (the comma before goes with it)
    #   "a cat strength=1."      -> "a cat."        (attached punctuation rejoins the word before)
    #   "strength=0.5, a cat"    -> "a cat"         (at the start, the comma after goes)
    before = start
    while before > 0 and body[before - 1] == " ":
        before -= 1
    if before > 0 and body[before - 1] in ",;":
        return before - 1, end
    if before > 0 and body[end : end + 1] in tuple(",;.!?"):
        return before, end
    after = end
    while after < len(body) and body[after] == " ":
        after += 1
    while after < len(body) and body[after] in ",;.!?":
        after += 1
    if after > end and body[after - 1] != " ":
        return start, after
    return start, end


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= pos < end for start, end in spans)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _shown(value: str) -> str | Text:
    # Echo what was typed so the member sees the mistake, but never a wall of text.
    if not value:
        return Text(N_("nothing"))
    return f"'{value if len(value) <= 30 else value[:29] + '…'}'"
