"""Who may use the web listener: with `[web] access_token` set, every request carries the token
(`?token=` once, traded for a cookie; the cookie; or `Authorization: Bearer <token>`). Without
one the page is only on loopback, where it refuses other host names and other sites' posts, and
/metrics is not served beyond loopback. (A chat result's compare link is its own credential:
the adapter's guard lets /compare/ through before these rules, compare.py checks its signature.)"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from bot.adapters.web.errors import json_error, said
from bot.config import is_loopback
from bot.i18n import N_

COOKIE = "restyle_web"
COOKIE_MAX_AGE = 30 * 24 * 3600
OPS_PATHS = ("/healthz", "/readyz", "/metrics")
CROSS_SITE = N_("This request came from another website, so it was refused.")
NEEDS_TOKEN = N_("This page needs its access token: open it once as /?token=<your [web] access_token>.")
LOOPBACK_NAME = N_("Open this page as http://127.0.0.1 (or localhost).")
METRICS_NEED_TOKEN = (
    "/metrics is served beyond loopback only with a token: set [web] access_token (or RESTYLE_WEB_TOKEN) "
    "and send it as Authorization: Bearer <token>."
)


def host_without_port(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def same_site_location(url: Any) -> str:
    """A redirect target on this site: the path and query of `url`, or "/" for anything a
    browser could read as another host ("//evil.example/", "/\\evil.example", "/%2F%2Fevil...")."""
    raw = url.raw_path
    decoded = url.path
    for path in (raw, decoded):
        # Browsers drop tabs and newlines from addresses and read "\\" as "/": "/\t/evil" is "//evil".
        if not path.startswith("/") or "\\" in path or any(ch < " " or ch == "\x7f" for ch in path):
            return "/"
        if path.lstrip("/") != path[1:]:  # two or more slashes at the start
            return "/"
    query = url.raw_query_string
    return raw + (f"?{query}" if query else "")


class Access:
    """The token, loopback and origin rules of one listener (`host`: where it listens; `page`:
    whether it serves the page, or only the ops endpoints)."""

    def __init__(self, token: str | None, *, host: str, page: bool) -> None:
        self.token = token
        self.host = host
        self.page = page
        self._cookie_value = hashlib.sha256(f"restyle-web:{token}".encode()).hexdigest() if token else None

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer instead of the handler's (a refusal, or the redirect that trades `?token=`
        for the cookie), or None when the request may go on."""
        if self.token is None:
            refusal = self._loopback_only(request)
            if refusal is not None:
                return refusal
            if request.path == "/metrics" and not is_loopback(self.host):
                # Counts of jobs are nobody's business on the network without the admin's say-so.
                return json_error(403, METRICS_NEED_TOKEN)
            return None
        given = request.query.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            if request.method in ("GET", "HEAD"):
                # Trade the token in the address for a cookie, and drop it from the address bar
                # and the history.
                rest = [(k, v) for k, v in request.query.items() if k != "token"]
                location = same_site_location(request.rel_url.with_query(rest))
                response = web.Response(status=303, headers={"Location": location})
                assert self._cookie_value is not None  # made with the token
                response.set_cookie(
                    COOKIE, self._cookie_value, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict", path="/"
                )
                return response
        elif not self._authorized(request):
            if request.path.startswith("/api/") or request.path in OPS_PATHS:
                response = json_error(401, said(request, NEEDS_TOKEN))
            else:
                response = web.Response(status=401, text=said(request, NEEDS_TOKEN) + "\n", content_type="text/plain")
            response.headers["WWW-Authenticate"] = 'Bearer realm="restyle-bot"'
            return response
        # With a token, the cookie is SameSite=Strict: other sites' requests carry no cookie.
        return None

    def _loopback_only(self, request: web.Request) -> web.Response | None:
        """Without a token the page is only on loopback (config insists), where any web site the
        member visits could still reach it. Refuse host names other than loopback ones (a site
        pointing its own name at 127.0.0.1) and posts from other origins (spending quota)."""
        if not (self.page and is_loopback(self.host)):
            return None
        if not is_loopback(host_without_port(request.host)):
            return json_error(403, said(request, LOOPBACK_NAME))
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower():
                return json_error(403, said(request, CROSS_SITE))
        return None

    def _authorized(self, request: web.Request) -> bool:
        assert self.token is not None and self._cookie_value is not None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and hmac.compare_digest(header[7:].strip().encode(), self.token.encode()):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._cookie_value.encode())
