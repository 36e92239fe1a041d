"""Signed, expiring links to one job's compare view on the web page ([web] public_url).

The link is the only credential a member's browser has, so it opens that job's two pictures and
nothing else, until it expires; a link with another job id or a changed expiry fails its signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config
from bot.upgrades import payload_key

SIG_BYTES = 16  # 128 bits: beyond guessing, and the link stays short (Discord allows 512)


@dataclass(frozen=True)
class CompareLinks:
    base_url: str  # the page's public address, without a trailing slash
    key: bytes
    ttl_s: float

    def url(self, job_id: str, now: float) -> str:
        return f"{self.base_url}/compare/{job_id}?{self.query(job_id, int(now + self.ttl_s))}"

    def query(self, job_id: str, until: int) -> str:
        return f"until={until}&sig={self._tag(job_id, until)}"

    def problem(self, job_id: str, until: str, sig: str, now: float) -> str | None:
        """None for a good link; "forged" (not signed here, or edited) or "expired"."""
        try:
            until_s = int(until)
        except ValueError:
            return "forged"
        if not hmac.compare_digest(sig.encode(), self._tag(job_id, until_s).encode()):
            return "forged"
        return "expired" if until_s < now else None

    def _tag(self, job_id: str, until: int) -> str:
        digest = hmac.new(self.key, f"compare|{job_id}|{until}".encode(), hashlib.sha256).digest()[:SIG_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def compare_links(config: Config, data_dir: Path) -> CompareLinks | None:
    """The links for this configuration; None without [web] public_url. The key comes from the
    payments secret (one per deployment, shared by every machine), kept apart by its own label."""
    if not config.web.public_url:
        return None
    key = hashlib.sha256(b"restyle-bot compare link\0" + payload_key(config, data_dir)).digest()
    return CompareLinks(config.web.public_url.rstrip("/"), key, config.web.compare_link_days * 86_400)
