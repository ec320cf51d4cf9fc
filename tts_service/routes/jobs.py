"""/v1/audio/jobs: a long text made into one audio file in the background, with its progress.

Every answer is read from the job store, so any replica sharing the store answers for any job.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, jsonify, request, send_file, stream_with_context, url_for

from ..audio import subtitles
from ..jobs import audio as joined
from ..jobs.plan import plan as cut
from ..jobs.runner import JobRunner, offsets
from ..jobs.store import ACTIVE, FINISHED, StoreFull
from ..service import get_service
from ..speech.events import Word
from ..speech.voices import resolve
from ..text.checks import check_whole_text
from .errors import ApiError, bad_request
from .http import flag, json_body

bp = Blueprint("jobs", __name__)

EVENT_POLL = 0.25  # how often an SSE stream looks at the job's state
EVENT_KEEPALIVE = 15.0


def _runner() -> JobRunner:
    service = get_service()
    runner = next((door for door in service.doors if isinstance(door, JobRunner)), None)
    if runner is None:
        raise ApiError(503, "Jobs are off on this server (TTS_JOB_STORE is empty).")
    return runner


def _state(job_id: str) -> dict:
    state = _runner().store.state(job_id)
    if state is None:
        raise ApiError(404, "No job with this id (it may have expired or been deleted).", code="job_not_found")
    return state


def describe(state: dict, plan: dict | None = None) -> dict:
    """The job as clients see it: status, progress, an estimate of the time left, chapters."""
    durations = state.get("durations", [])
    total, done = state["characters"], state.get("characters_done", 0)
    run = state.get("run_seconds", 0.0)
    left = None
    if state["status"] in ACTIVE and done:
        left = round(run / done * (total - done), 1)
    starts = offsets(plan, durations) if plan is not None else []
    chapters = [{"title": chapter["title"],
                 "start": round(starts[chapter["piece"]], 3) if chapter["piece"] < len(starts) else None}
                for chapter in state.get("chapters", [])]
    answer = {
        "id": state["id"],
        "status": state["status"],
        "progress": {"characters_done": done, "characters": total,
                     "fraction": round(done / total, 4) if total else 1.0,
                     "pieces_done": state.get("pieces_done", 0), "pieces": state["pieces"],
                     "audio_seconds": state.get("audio_seconds", 0.0), "seconds_left": left},
        "format": state["format"],
        "language": state.get("language"),
        "voice": state.get("voice"),
        "chapters": chapters,
        "created": state["created"],
    }
    if state.get("error"):
        answer["error"] = state["error"]
    if state["status"] == "done":
        answer["audio_url"] = url_for("jobs.audio", job_id=state["id"])
        answer["bytes"] = state.get("bytes")
    answer["subtitles_url"] = url_for("jobs.captions", job_id=state["id"])
    return answer


def _plan(job_id: str) -> dict | None:
    try:
        return _runner().store.plan(job_id)
    except (OSError, ValueError):
        return None


@bp.post("/v1/audio/jobs")
def create():
    runner = _runner()
    service = get_service()
    settings = service.settings
    body = json_body()
    text = check_whole_text(body.get("text"), settings.job_max_chars)
    fmt = body.get("format", "mp3")
    if fmt not in joined.FORMATS:
        raise bad_request(f"'format' must be one of {', '.join(joined.FORMATS)}.", param="format")
    language, voice = body.get("language"), body.get("voice")
    for name, value in (("language", language), ("voice", voice)):
        if value is not None and not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string.", param=name)
    captions = body.get("subtitles")
    if captions is not None and captions not in (True, False) + subtitles.FORMATS:
        raise bad_request(f"'subtitles' must be true, false or one of {', '.join(subtitles.FORMATS)}.",
                          param="subtitles")
    resolved = resolve(service.router, language, voice)  # a bad language or voice is a 400 now, not a failed job
    plan = cut(text, settings.max_chars)
    if not plan["pieces"]:
        raise bad_request("The text has nothing speakable; send words to speak.")
    store = runner.store
    waiting = sum(1 for state in store.states() if state.get("status") == "queued")
    if waiting >= settings.job_max_queued:
        raise ApiError(429, f"{waiting} jobs are already waiting (TTS_JOB_MAX_QUEUED); try again later.",
                       headers={"Retry-After": "60"})
    state = {"status": "queued", "created": time.time(), "characters": sum(len(p["text"]) for p in plan["pieces"]),
             "text_characters": len(text), "pieces": len(plan["pieces"]), "pieces_done": 0, "characters_done": 0,
             "audio_seconds": 0.0, "durations": [], "run_seconds": 0.0, "format": fmt,
             "language": resolved.language, "voice": voice, "clean": flag(body, "clean", settings.clean_text),
             "normalize": flag(body, "normalize", settings.normalize),
             "subtitles": captions if isinstance(captions, str) else ("vtt" if captions else None),
             "chapters": plan["chapters"]}
    try:
        job_id = store.create(text, state, plan)
    except StoreFull as exc:
        raise ApiError(507, f"The job store is full: {exc}.", code="store_full") from None
    runner.wake()
    answer = describe(store.state(job_id), plan)
    response = jsonify(answer)
    response.status_code = 202
    response.headers["Location"] = url_for("jobs.status", job_id=job_id)
    return response


@bp.get("/v1/audio/jobs")
def listing():
    store = _runner().store
    return jsonify({"jobs": [describe(state) for state in reversed(store.states())]})


@bp.get("/v1/audio/jobs/<job_id>")
def status(job_id: str):
    state = _state(job_id)
    return jsonify(describe(state, _plan(job_id)))


@bp.delete("/v1/audio/jobs/<job_id>")
def delete(job_id: str):
    runner = _runner()
    state = _state(job_id)
    runner.store.remove(job_id)
    runner.cancel(job_id)
    was = state["status"]
    return jsonify({"id": job_id, "status": "cancelled" if was in ACTIVE else was, "deleted": True})


@bp.get("/v1/audio/jobs/<job_id>/audio")
def audio(job_id: str):
    state = _state(job_id)
    if state["status"] != "done":
        raise ApiError(409, f"The job is {state['status']}: its audio is there once it is done.",
                       status=state["status"])
    path = _runner().store.root / job_id / f"audio.{state['format']}"
    if not path.is_file():
        raise ApiError(404, "The job's audio was removed.")
    return send_file(path, mimetype=joined.MIME[state["format"]], conditional=True,
                     download_name=f"{job_id}.{state['format']}", etag=True)


@bp.get("/v1/audio/jobs/<job_id>/subtitles")
def captions(job_id: str):
    """WebVTT (or SRT with ?format=srt) of the pieces done so far, each piece's words moved to its place."""
    state = _state(job_id)
    fmt = request.args.get("format") or state.get("subtitles") or "vtt"
    if fmt not in subtitles.FORMATS:
        raise bad_request(f"'format' must be one of {', '.join(subtitles.FORMATS)}.", param="format")
    store, plan = _runner().store, _plan(job_id)
    words: list[dict] = []
    for index, start in enumerate(offsets(plan, state.get("durations", []))[:state.get("pieces_done", 0)]):
        meta = store.piece_done(job_id, index) or {"words": []}
        words += [Word(word, start + begin, start + end, *written).as_dict()
                  for word, begin, end, *written in meta["words"]]
    mime = "text/vtt" if fmt == "vtt" else "application/x-subrip"
    return Response(subtitles.render(words, fmt), mimetype=f"{mime}; charset=utf-8")


@bp.get("/v1/audio/jobs/<job_id>/events")
def events(job_id: str):
    """Server-Sent Events: the job's answer each time it changes, until it ends (or is deleted)."""
    first = _state(job_id)
    store = _runner().store

    def stream():
        last, sent_at, state = None, time.monotonic(), first
        while True:
            if state is None:
                yield "event: deleted\ndata: {}\n\n"
                return
            answer = json.dumps(describe(state, _plan_quiet(store, job_id)))
            if answer != last:
                last, sent_at = answer, time.monotonic()
                yield f"event: progress\ndata: {answer}\n\n"
            elif time.monotonic() - sent_at > EVENT_KEEPALIVE:
                sent_at = time.monotonic()
                yield ": still working\n\n"
            if state["status"] in FINISHED:
                return
            time.sleep(EVENT_POLL)
            state = store.state(job_id)

    response = Response(stream_with_context(stream()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _plan_quiet(store, job_id: str) -> dict | None:
    try:
        return store.plan(job_id)
    except (OSError, ValueError):
        return None
