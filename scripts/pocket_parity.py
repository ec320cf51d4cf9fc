"""The Pocket engine's audio next to pocket-tts's own, for the same text, voice and model.

Used by tests/protocols/test_pocket_batching.py and scripts/check_pocket_upgrade.py, so that the test that
holds the frame loop to the package and the check run before moving the pin compare the same way.
Sampling is made deterministic (temperature 0): the engine and the package then differ by float
rounding only, as long as the frame loop still follows the package.
"""

from __future__ import annotations

import numpy as np

TEXTS = ["Hola, soy Capibara con voz natural.", "Buenos días a todos.", "¿Qué tal estás hoy, amigo mío?",
         "Me gusta el café."]
# Largest difference allowed, float32 and int8 weights: for a request alone against the package,
# and for a row of a batch against the same request alone (tests/protocols/test_pocket_batching.py says why).
ALONE_TOLERANCE = {"off": 1e-6, "on": 1e-4}
BATCH_TOLERANCE = {"off": 1e-6, "on": 2e-4}


def load_engine(env: dict[str, str], language: str = "es", quantize: str = "on", precision: str = "float32"):
    """A loaded Pocket engine on the model `env` names, sampling without noise."""
    from tts_service.config import Settings
    from tts_service.engines.pocket import internals as pocket_internals
    from tts_service.engines.pocket import PocketEngine

    engine = PocketEngine(Settings.from_env({**env, "TTS_POCKET_QUANTIZE": quantize,
                                             "TTS_POCKET_DECODER_PRECISION": precision}), language)
    engine.load()
    pocket_internals.set_temperature(engine._model, 0.0)
    return engine


def speak(engine, texts: list[str], seconds: float = 3.0, together: bool = True) -> list[np.ndarray]:
    """The engine's audio for each text through a scheduler: all at once as one batch, or one by one."""
    from tts_service.engines.base import SynthesisRequest
    from tts_service.scheduler import Scheduler

    scheduler = Scheduler(engine, batch_wait=0.2, timeout=60)
    scheduler.start(preload=False)
    try:
        if together:
            jobs = [scheduler.submit(SynthesisRequest(text, engine.language, max_audio_seconds=seconds))
                    for text in texts]
            audio = [job.result().audio for job in jobs]
            assert scheduler.stats.batch_sizes[len(texts)] > 0, scheduler.stats.batch_sizes
            return audio
        return [scheduler.submit(SynthesisRequest(text, engine.language, max_audio_seconds=seconds)).result().audio
                for text in texts]
    finally:
        scheduler.stop(timeout=30)


def package_audio(engine, text: str) -> np.ndarray:
    """What pocket-tts's own `generate_audio` says for `text` with the engine's default voice.

    Its decoder thread decodes however many frames are queued at once, so the sample values
    depend on thread timing; one frame per call is the package's own deterministic setting.
    """
    from tts_service.engines.pocket import internals as pocket_internals

    model = engine._model
    _, default = engine.voices(engine.language)
    state = engine._voice_states[str(engine._voice_source(default))]
    with pocket_internals.one_frame_per_decoder_call(model):
        return model.generate_audio(state, text).numpy()


def compare(engine, quantize: str, texts: list[str] = TEXTS, seconds: float = 3.0) -> dict:
    """How far the engine is from the package: each text alone, and as a row of one batch.

    Returns the largest differences, the tolerances, whether the lengths agree and whether
    everything holds.
    """
    alone = speak(engine, texts, seconds, together=False)
    batched = speak(engine, texts, seconds)
    reference = [package_audio(engine, text) for text in texts]
    report = {"alone_vs_package": 0.0, "batch_vs_alone": 0.0, "lengths_match": True, "audible": True,
              "alone_tolerance": ALONE_TOLERANCE[quantize], "batch_tolerance": BATCH_TOLERANCE[quantize]}
    limit = int(seconds * engine.sample_rate)
    for one, many, package in zip(alone, batched, reference):
        # The engine stops at `seconds`; the package says the whole text.
        report["lengths_match"] &= len(one) == len(many) == min(len(package), limit) > 0
        n = min(len(one), len(package))
        report["alone_vs_package"] = max(report["alone_vs_package"], float(np.abs(one[:n] - package[:n]).max()))
        report["batch_vs_alone"] = max(report["batch_vs_alone"], float(np.abs(one - many).max()))
        report["audible"] &= float(np.abs(package).max()) > 100 * ALONE_TOLERANCE[quantize]
    report["holds"] = bool(report["lengths_match"] and report["audible"]
                           and report["alone_vs_package"] <= report["alone_tolerance"]
                           and report["batch_vs_alone"] <= report["batch_tolerance"])
    return report
