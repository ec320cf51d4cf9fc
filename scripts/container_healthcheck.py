#!/usr/bin/env python3
"""Exit 0 when the service in this container answers GET /health with 200 (models loaded), else 1.

The image's HEALTHCHECK runs it; it asks the address the service listens on (HOST, PORT), with
the API key when one is set, so that it works on 127.0.0.1 behind nginx and on 0.0.0.0 alike.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def health_url(environ: dict[str, str]) -> str:
    host = environ.get("HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{environ.get('PORT') or '5001'}/health"


def main() -> int:
    request = urllib.request.Request(health_url(dict(os.environ)))
    if os.environ.get("TTS_API_KEY"):
        request.add_header("Authorization", f"Bearer {os.environ['TTS_API_KEY']}")
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
