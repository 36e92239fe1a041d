"""Checks that an answer was said in the member's language, not left in English."""

from __future__ import annotations

import re

# Where an English answer is cut into the pieces looked for in a translated one.
_CUTS = re.compile(r"\n|[.:;,!?()]\s|[.:;!?]$|\s·\s|\s—\s|\(|\)")
_WORD = re.compile(r"[A-Za-z]{3,}")
_COMMAND = re.compile(r"/\w+|\w+[=:]\w+|`[^`]*`|<[^>]*>")  # the grammar: the same in every language


def english_left(english: str, translated: str, names: tuple[str, ...] = ()) -> list[str]:
    """The pieces of an English answer (its sentences and clauses) that a translated answer still
    contains word for word. Pieces made only of names, numbers and commands (a tier's name, a
    price, /upgrade, strength=sweep) read the same in every language and are not looked for; `names` adds to them."""
    known = {"free", "pro", "max", "UTC", "Telegram", "Stars", "Discord", *names}
    left = []
    for piece in _CUTS.split(english):
        piece = piece.strip(" *·—•")
        words = [w for w in _WORD.findall(_COMMAND.sub(" ", piece)) if w.lower() not in {k.lower() for k in known}]
        if words and piece in translated:
            left.append(piece)
    return left
