"""The value rules of config.toml's keys: what each value must be, worded for the error message.

A table's field carries its rule in `Annotated`: limits for numbers (`Number`, `Whole`), `Flag`
for true/false, or one of the checks below (`Checked(...)`), which validate and convert a value
themselves and raise `_Invalid` with the words bot/config/loading.py puts after the key's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from annotated_types import GroupedMetadata
from pydantic import BeforeValidator, Field
from pydantic.fields import FieldInfo

ADMIN_PLATFORMS = ("telegram", "discord", "web")


class _Invalid(ValueError):
    """A value was refused; args[0] says what it must be ("must be a list of ...").

    A ValueError, so pydantic reports it as the field's error. `whole`: the reason already quotes
    the offending part (one entry of a list), so the usual ", got <value>" is left off.
    """

    def __init__(self, reason: str, *, whole: bool = False) -> None:
        super().__init__(reason)
        self.whole = whole


Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Rule:
    """What a value must be, for the error message ("a number >= 0"); rides in Annotated."""

    text: str


def _fmt(n: float) -> str:
    return str(int(n)) if isinstance(n, int) else str(n)


@dataclass(frozen=True)
class Limits(GroupedMetadata):
    """A number's limits and the Rule that words them, as one piece of `Annotated` metadata:
    pydantic unpacks it (annotated_types.GroupedMetadata) as if both had been written there."""

    limits: FieldInfo
    rule: Rule

    def __iter__(self) -> Iterator[object]:
        yield from self.limits.metadata
        yield self.rule


def Number(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Limits:
    """A float field's limits, `Annotated[float, Number(0)]` (ints accepted, bools, nan and inf
    not: TOML allows both)."""
    if above is not None:
        rule = f"a number > {_fmt(above)}"
    elif lo is not None and hi is None:
        rule = f"a number >= {_fmt(lo)}"
    elif lo is not None and hi is not None:
        rule = f"a number from {_fmt(lo)} to {_fmt(hi)}"
    else:
        rule = "a number"
    return Limits(Field(ge=lo, le=hi, gt=above, allow_inf_nan=False), Rule(rule))


def Whole(lo: int | None = None, hi: int | None = None) -> Limits:
    """A whole number field's limits, `Annotated[int, Whole(1)]`."""
    if lo is None:
        rule = "a whole number"
    elif hi is None:
        rule = f"a whole number >= {lo}"
    else:
        rule = f"a whole number from {lo} to {hi}"
    return Limits(Field(ge=lo, le=hi), Rule(rule))


Flag = Annotated[bool, Rule("true or false (without quotes)")]


def Checked(check: Check) -> Any:
    """A value one of the checks below validates (and converts) itself."""
    return BeforeValidator(check)


def _shown(value: Any) -> str:
    # Echo values the way they look in TOML, so the reader can find them in the file.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 60 else f"'{value[:59]}…'"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value[:5]) + (", …]" if len(value) > 5 else "]")
    return str(value)


def _text(*, choices: tuple[str, ...] = (), pattern: str | None = None, hint: str = "") -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Invalid("must be a non-empty text in quotes" + (f" ({hint})" if hint else ""))
        if choices and value not in choices:
            raise _Invalid("must be one of " + ", ".join(f'"{c}"' for c in choices))
        if pattern and not re.fullmatch(pattern, value):
            raise _Invalid(f"must be {hint}")
        return value

    return check


def _shards(value: Any) -> str | int:
    # Discord allows at most 2,500 servers per shard; "auto" asks Discord (GET /gateway/bot).
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise _Invalid('must be "auto" or a whole number of shards from 1 to 1024')
    return value


def _optional_text(*, schemes: tuple[str, ...] = ()) -> Check:
    def check(value: Any) -> str | None:
        if value is None:  # already "not set" (a copy made with dataclasses.replace)
            return None
        if not isinstance(value, str):
            raise _Invalid("must be a text in quotes (or leave the line out)")
        # token = "" is how templates often say "not set"; treat it like a missing line.
        if not value.strip():
            return None
        if schemes and not value.startswith(tuple(s + "://" for s in schemes)):
            raise _Invalid("must be a URL starting with " + " or ".join(s + "://" for s in schemes))
        return value.strip()

    return check


def _sizes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise _Invalid('must be a list of picture sizes like ["512x512", "512x384"]')
    for entry in value:
        width, sep, height = entry.strip().lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit() and int(width) % 8 == 0 and int(height) % 8 == 0
                and min(int(width), int(height)) >= 64):  # fmt: skip
            raise _Invalid(f'entry {_shown(entry)} must be WIDTHxHEIGHT, multiples of 8, like "512x384".', whole=True)
    if len(value) > 4:  # each size is two compiles at start, and torch recompiles 8 shapes at most
        raise _Invalid("may list at most 4 sizes")
    return tuple(entry.strip().lower() for entry in value)


def _admins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _Invalid('must be a list like ["telegram:12345", "discord:67890", "web:local"]')
    out = []
    for entry in value:
        platform, _, member = entry.strip().partition(":")
        if platform not in ADMIN_PLATFORMS or not member.strip():
            raise _Invalid(
                f'entry {_shown(entry)} must be "platform:id" with platform telegram, discord or web,'
                ' like "telegram:12345".',
                whole=True,
            )
        if platform in ("telegram", "discord") and not member.isdigit():
            # Adapters compare numeric ids; a @username would silently never match.
            raise _Invalid(
                f'entry {_shown(entry)} must use the numeric {platform} user id, like "{platform}:12345";'
                " a name would never match.",
                whole=True,
            )
        out.append(f"{platform}:{member.strip()}")
    return tuple(out)


def _ids(what: str, example: str, *, negative: bool = False) -> Check:
    def check(value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"must be a list of {what} ids, like [{example}]")
        out = []
        for v in value:
            # Accept quoted ids too: people copy them from the apps as text.
            if isinstance(v, str) and v.strip().lstrip("-").isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or (v <= 0 and not negative) or v == 0:
                raise _Invalid(f"entry {_shown(v)} must be a {what} id (a number), like [{example}].", whole=True)
            out.append(v)
        return tuple(out)

    return check


_guild_ids = _ids("Discord server", "123456789012345678")


def _words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid('must be a list of words or phrases, like ["gore", "real person"]')
    return tuple(v.strip() for v in value)


def _secrets_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid('must be a list of former secrets, like ["old secret"]')
    return tuple(v.strip() for v in value)


def _patterns(value: Any) -> tuple[str, ...]:
    words = _words(value)
    for pattern in words:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _Invalid(f"entry {_shown(pattern)} is not a valid regular expression ({exc}).", whole=True) from None
    return words


def _store_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("must be a text in quotes")
    url = value.strip()
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise _Invalid(
            'must be "" (SQLite in [bot] data_dir), "sqlite:///path/to/file" or "postgresql://user:password@host/db"'
        )
    return url


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("must be a folder path in quotes")
    return Path(value)


def _sku(value: Any) -> int | None:
    if value is None:  # not on sale on Discord (a copy made with dataclasses.replace)
        return None
    # Accept a quoted id too: the developer portal shows it as text to copy.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Invalid("must be a Discord SKU id (a number from the developer portal's Monetization page)")
    return value
