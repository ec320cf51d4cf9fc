#!/usr/bin/env bash
# Start the Kyutai TTS service, setting up what is missing first. Fine inside `screen`.
#   ./start_kyutai.sh            # models from Hugging Face, settings from the environment or .env
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating the virtual environment in .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
wanted="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "installing requirements (the first time downloads torch, several GB)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install -r requirements.txt
    echo "$wanted" > "$stamp"
fi
if [ -f .env ]; then
    set -a; . ./.env; set +a
fi
# gunicorn: one process owning the models, threads for I/O, graceful shutdown on SIGTERM.
# (`python tts_server.py` runs Flask's own server instead, for development.)
exec .venv/bin/gunicorn --config gunicorn.conf.py "tts_server:create_app()" "$@"
