"""Upgrades, the pure part: plans and their perks, signed invoice payloads, redeem and link
codes, the guessing limit and the tier arithmetic (extend, merge, revert).

No I/O and no chat libraries: the service (bot/service.py) stores and audits, the adapters talk
to Telegram and Discord. Everything here is a function of its arguments (plus `secrets` for new
codes), so it is tested as tables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config, PlanSettings, TierSettings
from bot.i18n import Translator, translator

DAY_S = 86400.0
LINK_CODE_TTL_S = 600.0  # a /link code works for 10 minutes
# An admin grant lasts at most this long (100 years; 0 days means no end): past it, expiry dates
# overflow what dates can say, and no real grant needs more.
MAX_GRANT_DAYS = 36500
GUESS_LIMIT = 5  # wrong codes (redeem or link) a member may try ...
GUESS_WINDOW_S = 3600.0  # ... per hour (counted in the database: bot/service.py _count_guess)
# Redeem codes: 3 groups of 4 from an alphabet without look-alikes (0/O, 1/I/L), ~60 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_PREFIX = "RS"
LINK_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LINK_LENGTH = 8  # ~39 bits, alive 10 minutes, 5 guesses an hour: not guessable
PAYLOAD_VERSION = "u1"
ENGLISH = translator(None)
SIG_BYTES = 12  # 96-bit HMAC tag, base64url: 16 characters


# Plans and perks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanView:
    name: str
    tier: str
    days: int
    stars: int | None
    subscription: bool
    discord_sku: int | None
    perks: tuple[str, ...]  # in the language of the member it was made for (plan_view's `tr`)

    @property
    def title(self) -> str:
        return self.title_in(ENGLISH)

    @property
    def price_text(self) -> str:
        return self.price_in(ENGLISH)

    def title_in(self, tr: Translator) -> str:
        """Short, for a button or an invoice title (Telegram: 1-32 characters)."""
        tier = self.tier.capitalize()
        if self.subscription:
            title = tr.gettext("{tier} · month").format(tier=tier)
        else:
            title = tr.ngettext("{tier} · {count} day", "{tier} · {count} days", self.days).format(
                tier=tier, count=self.days
            )
        return title[:32]

    def price_in(self, tr: Translator) -> str:
        if self.stars is None:
            return ""
        return tr.gettext("{stars} ⭐ a month").format(stars=self.stars) if self.subscription else f"{self.stars} ⭐"


def tier_perks(tier: TierSettings, free: TierSettings, tr: Translator = ENGLISH) -> tuple[str, ...]:
    """What a tier gives, read from its settings and said against the free tier's."""
    perks = []
    if tier.min_turnaround_s <= 0:
        perks.append(
            tr.gettext("no wait") if free.min_turnaround_s > 0 else tr.gettext("results as soon as they are ready")
        )
    elif tier.min_turnaround_s < free.min_turnaround_s:
        perks.append(tr.gettext("results in {seconds:g} s instead of {free:g} s")
                     .format(seconds=tier.min_turnaround_s, free=free.min_turnaround_s))  # fmt: skip
    else:
        perks.append(tr.gettext("results after at least {seconds:g} s").format(seconds=tier.min_turnaround_s))
    if tier.rank > free.rank:
        perks.append(tr.gettext("priority in the queue"))
    if tier.sweep and not free.sweep:
        perks.append(tr.gettext("strength sweeps (3 strengths side by side)"))
    if tier.max_side > free.max_side:
        perks.append(tr.gettext("pictures up to {side} px (larger)").format(side=tier.max_side))
    else:
        perks.append(tr.gettext("pictures up to {side} px").format(side=tier.max_side))
    perks.append(tr.ngettext("{count} restyle a day", "{count} restyles a day", tier.daily_quota)
                 .format(count=tier.daily_quota))  # fmt: skip
    perks.append(tr.ngettext("{count} job waiting at once", "{count} jobs waiting at once", tier.max_queued)
                 .format(count=tier.max_queued))  # fmt: skip
    return tuple(perks)


def tiers_by_rank(config: Config) -> list[TierSettings]:
    return sorted(config.tiers.values(), key=lambda t: t.rank)


def plan_view(config: Config, plan: PlanSettings, tr: Translator = ENGLISH) -> PlanView:
    """A plan as a member sees it: its perks in that member's language (`tr`)."""
    return PlanView(
        plan.name, plan.tier, plan.days, plan.stars, plan.subscription, plan.discord_sku,
        tier_perks(config.tier(plan.tier), config.tiers["free"], tr),
    )  # fmt: skip


def plans_on(config: Config, platform: str, tr: Translator = ENGLISH) -> list[PlanView]:
    """Plans on sale on one platform: Stars prices on Telegram, SKUs on Discord."""
    out = []
    for plan in config.plans.values():
        if platform == "telegram" and plan.stars is None:
            continue
        if platform == "discord" and plan.discord_sku is None:
            continue
        if platform not in ("telegram", "discord"):
            continue
        out.append(plan_view(config, plan, tr))
    return out


def plan_for_sku(config: Config, sku_id: int) -> PlanSettings | None:
    return next((p for p in config.plans.values() if p.discord_sku == sku_id), None)


# Invoice payloads ----------------------------------------------------------------------------


def payload_key(config: Config, data_dir: Path | None = None) -> bytes:
    """The HMAC key new invoice payloads are signed with: [payments] secret, else one generated
    once and kept in data_dir. Never the bot token: a token revoked after a leak would void every
    open invoice and every subscription renewal (the member charged, the tier not given)."""
    if config.payments.secret:
        material = config.payments.secret
    elif data_dir is not None:
        path = Path(data_dir) / "payment-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
            path.chmod(0o600)
        material = "file:" + path.read_text(encoding="utf-8").strip()
    else:
        raise ValueError("no secret for invoice payloads")
    return _key_of(material)


def payload_keys(config: Config, data_dir: Path | None = None) -> list[bytes]:
    """Every key a payload may be signed with, the current one first: [payments]
    previous_secrets (each as a former secret or a former bot token) and the current token, which
    signed payloads before the key moved to data_dir (renewals carry their first invoice's payload)."""
    keys = [payload_key(config, data_dir)]
    former = list(config.payments.previous_secrets)
    for item in former:
        keys += [_key_of(item), _key_of("telegram-token:" + item)]
    if config.telegram.token:
        keys.append(_key_of("telegram-token:" + config.telegram.token))
    return list(dict.fromkeys(keys))


def _key_of(material: str) -> bytes:
    return hashlib.sha256(b"restyle-bot invoice payload\0" + material.encode()).digest()


def _tag(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()[:SIG_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_payload(key: bytes, member_key: str, plan: str, nonce: str | None = None) -> str:
    """`u1.<plan>.<nonce>.<tag>`: at most 3 + 32 + 8 + 16 + 3 = 62 bytes (Telegram allows 128).
    The member is not written in it but signed into the tag, so it cannot be moved to another."""
    nonce = nonce or secrets.token_hex(4)
    body = f"{PAYLOAD_VERSION}.{plan}.{nonce}"
    return f"{body}.{_tag(key, body + '|' + member_key)}"


def looks_like_payload(payload: str) -> bool:
    """Shaped like a payload this bot signs (for some member): a payload that fails
    read_payload for one member but looks like this was made for another member."""
    parts = payload.split(".")
    return len(parts) == 4 and parts[0] == PAYLOAD_VERSION and len(parts[3]) == 16 and bool(parts[1])


def read_payload(key: bytes | list[bytes], payload: str, member_key: str) -> str | None:
    """The plan name of a payload this bot signed for this member (with `key`, or any of a
    list of keys); None for anything else."""
    parts = payload.split(".")
    if len(parts) != 4 or parts[0] != PAYLOAD_VERSION:
        return None
    body = ".".join(parts[:3])
    keys = key if isinstance(key, list) else [key]
    if not any(hmac.compare_digest(parts[3], _tag(k, body + "|" + member_key)) for k in keys):
        return None
    return parts[1]


# Codes ---------------------------------------------------------------------------------------


def new_redeem_code() -> str:
    groups = ["".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(3)]
    return "-".join([CODE_PREFIX, *groups])


def new_link_code() -> str:
    return "".join(secrets.choice(LINK_ALPHABET) for _ in range(LINK_LENGTH))


def normalize_code(text: str) -> str:
    """Forgiving about how a code was typed: case, spaces, dashes, look-alike letters."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def code_hash(text: str) -> str:
    """Codes are kept only as sha256 of their normalized form: a stolen database gives none away."""
    return hashlib.sha256(normalize_code(text).encode()).hexdigest()


def looks_like_redeem_code(text: str) -> bool:
    return normalize_code(text).startswith(CODE_PREFIX) and len(normalize_code(text)) == len(CODE_PREFIX) + 12


# Tier arithmetic -----------------------------------------------------------------------------


def is_active(tier: str, expires_at: float | None, now: float) -> bool:
    return tier != "free" and (expires_at is None or expires_at > now)


def extended(
    config: Config, current: str, current_expiry: float | None, new: str, days: float, now: float
) -> tuple[str, float | None] | None:
    """The tier and expiry after buying (or redeeming) `days` of `new`.

    Same tier: until max(now, current end) + days (a tier without an end keeps none). A higher
    tier: from now. None when the member holds a higher tier still running: buying a lower one
    would waste the money, so it is refused before anything is paid or spent."""
    period = days * DAY_S
    if not is_active(current, current_expiry, now):
        return new, now + period
    if current == new:
        if current_expiry is None:
            return new, None
        return new, max(now, current_expiry) + period
    if config.tier(current).rank > config.tier(new).rank:
        return None
    return new, now + period


def merged(
    config: Config, a: tuple[str, float | None], b: tuple[str, float | None], now: float
) -> tuple[str, float | None]:
    """Two accounts become one: the better tier still running, and of equal tiers the later end
    (None, no end, is latest). Nothing is summed."""
    candidates = [t for t in (a, b) if is_active(t[0], t[1], now)]
    if not candidates:
        return "free", None

    def key(t: tuple[str, float | None]) -> tuple[int, float]:
        return config.tier(t[0]).rank, float("inf") if t[1] is None else t[1]

    return max(candidates, key=key)


def reverted(current: tuple[str, float | None], payment: dict, now: float) -> tuple[str, float | None]:
    """The tier after refunding `payment` (a row of the payments table): the time it added is
    taken off the current end; if none is left, what ran before it (if still running) comes
    back, else free. A member who has since moved to another tier keeps it."""
    tier, expiry = current
    if tier != payment["tier"] or expiry is None or payment["expires_at"] is None:
        return current
    prev_tier, prev_expiry = payment["prev_tier"], payment["prev_expires_at"]
    same = prev_tier == tier and prev_expiry is not None
    base = max(payment["at"], prev_expiry) if same else payment["at"]
    left = expiry - (payment["expires_at"] - base)
    if left > now:
        return tier, left
    if prev_tier != tier and is_active(prev_tier, prev_expiry, now):
        return prev_tier, prev_expiry
    return "free", None
