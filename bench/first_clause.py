#!/usr/bin/env python3
"""First audio of a streamed Pocket TTS session whose first sentence is long: waiting for the
sentence end against speaking the first clause at a comma, for several minimum word counts.

    .venv/bin/python bench/first_clause.py [--repeat 5] [--words-per-second 14] [--thresholds 3,4,5,6,8,10,12]

Words are sent over `WS /api/tts_streaming` one at a time, as an LLM writes them, to the service
on the full-size random-weight Spanish Pocket TTS (built once into models/bench/pocket-full, as
`scripts/make_tiny_models.py --full-pocket` does). For each threshold (`FIRST_CLAUSE_MIN_WORDS`,
set in this process between sessions) and each long first sentence it prints the median and the
best time from the first word sent to the first audio received; "end" waits for the sentence end,
as sessions did before the first clause could end at a comma. It also counts the short sentences with a comma that
the threshold would split in two (their first part spoken alone), which a higher threshold avoids.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time

import msgpack
from websockets.sync.client import connect

from common import MODELS, ROOT, ensure_models, start_server, stop_server

# Long first sentences of an answer, each with its commas' positions (words before them) noted.
LONG = [
    # 27 words; commas after 3 and 12 words.
    "Claro que sí, te explico cómo funciona el registro en nuestra plataforma, que es bastante sencillo "
    "y solo te llevará unos minutos con tus documentos a mano.",
    # 26 words; a comma after 7.
    "Para cambiar la contraseña de tu cuenta, entra en la sección de ajustes desde el menú principal y "
    "pulsa el botón que dice seguridad y acceso.",
    # 25 words; a comma after 6.
    "Si quieres aprender a cocinar arroz, lo primero es lavar bien los granos con agua fría hasta que "
    "el agua salga casi transparente del todo.",
    # 26 words; a comma after 14: too late for any threshold to help much.
    "Según los datos más recientes que tengo disponibles sobre el clima de la región, la mejor época "
    "para visitar la costa es entre mayo y septiembre.",
]

# Short sentences with a comma, as answers often say them: best spoken whole.
SHORT = [
    "Hola, ¿en qué puedo ayudarte hoy?", "Claro, aquí lo tienes.", "Sí, es correcto.",
    "Buenos días, ¿cómo estás?", "Por supuesto, con mucho gusto.", "Lo siento, no tengo esa información.",
    "Muchas gracias por tu paciencia, Laura.", "Si tienes más preguntas, no dudes en escribirme.",
    "Perfecto, ya está todo listo.", "En ese caso, te recomiendo reiniciar el equipo.",
    "Para empezar, abre la aplicación.", "Después de eso, pulsa el botón azul.",
    "Si el problema continúa, avísame.", "Como te decía antes, el plazo termina mañana.",
    "Gracias por escribirnos, te respondemos enseguida.", "Me alegra que te haya servido, de verdad.",
    "Te lo envío por correo esta misma tarde, sin falta.", "El pedido llegará el martes, según el seguimiento.",
    "No te preocupes, es un error muy común.", "Entiendo tu frustración, vamos a solucionarlo juntos.",
    "La reunión empieza a las diez, en la sala grande.", "Ya he revisado tu cuenta, todo parece en orden.",
    "Cuando termines el formulario, envíalo desde aquí.", "Tu reserva está confirmada para el sábado, a las nueve.",
]

logging.getLogger("pocket_tts").setLevel(logging.ERROR)  # the tiny tokenizer's long chunks, for every later clause

NEVER = 10 ** 9  # a threshold no sentence reaches: the clause waits for the sentence end


def pocket_env() -> dict[str, str]:
    """The service on the full-size Spanish Pocket TTS only."""
    from tiny_pocket import build_full_pocket, voice_wav

    ensure_models()
    full = MODELS / "pocket-full"
    if not (full / "es.yaml").exists():
        build_full_pocket(full, language="es")
    voice = full / "voices" / "bench-es.wav"
    if not voice.exists():
        voice.parent.mkdir(parents=True, exist_ok=True)
        voice_wav(voice)
    return {"TTS_DEVICE": "cpu", "TTS_POCKET_CONFIG": str(full / "es.yaml"), "TTS_VOICE_DIR": str(voice.parent),
            "TTS_POCKET_VOICE": voice.stem, "TTS_POCKET_LANGUAGES": "es", "TTS_POCKET_PRELOAD_LANGUAGES": "es",
            "TTS_DEFAULT_LANGUAGE": "es"}


def first_audio(base: str, words: list[str], gap: float) -> float:
    """Seconds from the first word sent to the first audio received; the session is then dropped."""
    url = base.replace("http://", "ws://") + "/api/tts_streaming?format=PcmMessagePack&language=es"
    with connect(url, max_queue=None) as ws:
        assert msgpack.unpackb(ws.recv(timeout=60))["type"] == "Ready"
        stop = threading.Event()
        started = time.perf_counter()

        def writer():
            for index, word in enumerate(words):
                if stop.wait(max(started + index * gap - time.perf_counter(), 0)):
                    return
                ws.send(msgpack.packb({"type": "Text", "text": word}))
            ws.send(msgpack.packb({"type": "Eos"}))

        thread = threading.Thread(target=writer)
        thread.start()
        while msgpack.unpackb(ws.recv(timeout=600))["type"] != "Audio":
            pass
        seconds = time.perf_counter() - started
        stop.set()
        thread.join()
    return seconds


def wait_idle(app, timeout: float = 60) -> None:
    """The dropped session's jobs have left the model before the next one is timed."""
    service = app.extensions["tts_service"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = any(scheduler.active for scheduler in service.router.schedulers.values())
        if not busy and not (service.slots and any(service.slots.used(key) for key in service.router.schedulers)):
            break
        time.sleep(0.05)
    time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--words-per-second", type=float, default=14.0)
    parser.add_argument("--thresholds", default="3,4,5,6,8,10,12")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from tts_service.speech import clauses as session

    thresholds = [NEVER] + [int(n) for n in args.thresholds.split(",")]
    gap = 1 / args.words_per_second
    base, app, server = start_server(pocket_env(), cache_bytes=0, rate_limit="")
    try:
        first_audio(base, "Calentando el modelo, una vez.".split(), gap)
        wait_idle(app)
        # Rounds go through every threshold and sentence in turn, so that a busy spell on a shared
        # machine slows one run of each cell rather than a whole row.
        runs: dict[int, list[list[float]]] = {threshold: [[] for _ in LONG] for threshold in thresholds}
        for round_ in range(args.repeat):
            for threshold in thresholds:
                session.FIRST_CLAUSE_MIN_WORDS = threshold
                for index, text in enumerate(LONG):
                    runs[threshold][index].append(first_audio(base, text.split(), gap))
                    wait_idle(app)
            print(f"round {round_ + 1} of {args.repeat} done", flush=True)
    finally:
        stop_server(app, server)

    print(f"\nfirst audio after the first word: median (best) of {args.repeat}; words sent one every "
          f"{gap * 1000:.0f} ms ({args.words_per_second:g} per second), so word n is sent (n - 1) x "
          f"{gap * 1000:.0f} ms after the first; then the words in the first clause\n")
    heads = [f"{len(text.split())}-word sentence" for text in LONG]
    print(f"| first clause ends | {' | '.join(heads)} | short sentences split |")
    print("|---|" + "---:|" * (len(LONG) + 1))
    for threshold in thresholds:
        label = "at the sentence end" if threshold == NEVER else f"at a comma after {threshold}+ words"
        cuts = []
        for text in LONG:
            end = session.first_clause_end(text + " ", threshold)
            cuts.append(len(text[:end].split()) if end else len(text.split()))
        split = sum(1 for text in SHORT if session.first_clause_end(text + " ", threshold))
        cells = [f"{statistics.median(times):.2f} s ({min(times):.2f}) / {words}"
                 for times, words in zip(runs[threshold], cuts)]
        print(f"| {label} | {' | '.join(cells)} | {split} of {len(SHORT)} |")


if __name__ == "__main__":
    main()
