#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them all.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.requirements-dev.sha256
wanted="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    echo "$wanted" > "$stamp"
fi
# The voice-agent frameworks' clients, in a venv of their own (they need a newer aiohttp than moshi).
agents_stamp=.venv-agents/.requirements-agents.sha256
agents_wanted="$(sha256sum requirements-agents.txt | cut -d' ' -f1)"
if [ "$(cat "$agents_stamp" 2>/dev/null)" != "$agents_wanted" ]; then
    [ -x .venv-agents/bin/python ] || "$PYTHON" -m venv .venv-agents
    .venv-agents/bin/python -m pip install --quiet --upgrade pip
    .venv-agents/bin/python -m pip install --quiet -r requirements-agents.txt
    echo "$agents_wanted" > "$agents_stamp"
fi
if [ -d tests/browser ] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
# Debian's nginx for tests/system/test_nginx.py: nginx-light where it exists (bookworm), else nginx.
if [ -f tests/system/test_nginx.py ] && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    if apt-cache policy nginx-light | grep -q 'Candidate: [0-9]'; then pkg=nginx-light; else pkg=nginx; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg"
fi
# Debian's podman, buildah and mmdebstrap for tests/system/test_container.py: the image is built
# and run with chroot isolation, no container runtime needed (uidmap and fuse-overlayfs let a
# non-root developer do the same).
if [ -f tests/system/test_container.py ] && ! { command -v podman && command -v buildah && command -v mmdebstrap; } >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman buildah mmdebstrap uidmap fuse-overlayfs
fi
export TTS_TORCH_COMPILE=off
.venv/bin/python -m pytest "$@"
if [ -d tests/js ]; then
    node --test tests/js/
fi
