"""The container's HEALTHCHECK: exit 0 when /healthz answers 200, 1 otherwise.

Stdlib only (the slim image has no curl). When [web] listens beyond loopback it needs its
token, so the token from RESTYLE_WEB_TOKEN is sent as a bearer header when set.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = os.environ.get("RESTYLE_HEALTH_URL", "http://127.0.0.1:8080/healthz")
    headers = {}
    token = os.environ.get("RESTYLE_WEB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=4) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {url} answered {response.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
