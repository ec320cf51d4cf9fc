"""Long-text jobs on the tiny Pocket TTS model: real audio, Range, subtitles, SSE, cancel, limits, a restart."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from helpers import ROOT, decode_audio, free_port, rms, running_app, served, wait_until
from tts_service.jobs import audio as joined
from tts_service.jobs.plan import plan
from tts_service.jobs.store import JobStore

BOOK = ("# Uno\nHola, esto es una prueba. Cuesta 1.500 €.\n\n"
        "# Dos\nEl texto sigue aquí. Y termina ya.")
LONG = "\n\n".join(f"Frase número {n}. Otra frase más." for n in range(1, 9))  # eight pieces


def pocket_env(tiny_env, store, **extra) -> dict[str, str]:
    return {**tiny_env, "TTS_POCKET_LANGUAGES": "es", "TTS_ROUTES": "", "TTS_DEFAULT_LANGUAGE": "es",
            "TTS_JOB_STORE": str(store), "TTS_LOG_FILE": "", "TTS_RATE_LIMIT": "", **extra}  # polled often


@pytest.fixture(scope="module")
def jobs_server(tiny_env, tmp_path_factory):
    """One service with jobs on, on a real socket: (base_url, app)."""
    store = tmp_path_factory.mktemp("jobs")
    with running_app(pocket_env(tiny_env, store)) as app, served(app) as base:
        yield base, app


def runner_of(app):
    from tts_service.jobs.runner import JobRunner
    return next(door for door in app.extensions["tts_service"].doors if isinstance(door, JobRunner))


def submit(base: str, text: str, **body) -> dict:
    response = requests.post(f"{base}/v1/audio/jobs", json={"text": text, **body}, timeout=30)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert response.headers["Location"] == f"/v1/audio/jobs/{answer['id']}"
    assert answer["status"] == "queued" and answer["progress"]["characters_done"] == 0
    return answer


def job(base: str, job_id: str) -> dict:
    response = requests.get(f"{base}/v1/audio/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def finished(base: str, job_id: str, timeout: float = 120) -> dict:
    assert wait_until(lambda: job(base, job_id)["status"] in ("done", "failed"), timeout, 0.1)
    return job(base, job_id)


@pytest.fixture(scope="module")
def book(jobs_server):
    """A finished two-chapter job in WAV (so that its length can be checked to the sample)."""
    base, _ = jobs_server
    answer = finished(base, submit(base, BOOK, format="wav")["id"])
    assert answer["status"] == "done", answer
    return answer


def test_the_plan_cuts_chapters_and_pieces_of_a_few_sentences():
    cut = plan("Antes. Del título.\n\n## El *primer* capítulo\nUna. Dos. Tres. Cuatro.\n\n"
               "```\n# no es un título\n```\n# Fin\n- uno\n- dos", 3000)
    assert [c["title"] for c in cut["chapters"]] == ["El primer capítulo", "Fin"]
    texts = [p["text"] for p in cut["pieces"]]
    assert texts[:4] == ["Antes. Del título.", "El primer capítulo", "Una. Dos. Tres.", "Cuatro."]
    assert cut["pieces"][cut["chapters"][1]["piece"]]["text"] == "Fin"
    assert texts[-1] == "- uno\n- dos"
    assert cut["pieces"][0]["chapter"] is None and cut["pieces"][-1]["chapter"] == 1


def test_a_job_runs_to_done_and_its_file_decodes(jobs_server, book):
    base, _ = jobs_server
    progress = book["progress"]
    assert progress["characters_done"] == progress["characters"] and progress["pieces_done"] == progress["pieces"] == 4
    data = requests.get(f"{base}{book['audio_url']}", timeout=30).content
    samples, rate = decode_audio(data, "wav")
    assert rate == 24000
    assert len(samples) / rate == pytest.approx(progress["audio_seconds"], abs=0.01)
    assert rms(samples) > 1e-3, "the joined audio is silence"
    assert [c["title"] for c in book["chapters"]] == ["Uno", "Dos"]
    assert book["chapters"][0]["start"] == 0 and 0 < book["chapters"][1]["start"] < progress["audio_seconds"]
    listed = requests.get(f"{base}/v1/audio/jobs", timeout=30).json()["jobs"]
    assert book["id"] in [entry["id"] for entry in listed]


def test_an_mp3_job_carries_its_chapters_in_the_file(jobs_server, tmp_path):
    base, _ = jobs_server
    answer = finished(base, submit(base, BOOK)["id"])  # mp3 by default
    assert answer["status"] == "done" and answer["format"] == "mp3"
    response = requests.get(f"{base}{answer['audio_url']}", timeout=30)
    assert response.headers["Content-Type"] == "audio/mpeg"
    samples, rate = decode_audio(response.content, "mp3")
    assert rate == 24000 and abs(len(samples) / rate - answer["progress"]["audio_seconds"]) < 0.2
    path = tmp_path / "book.mp3"
    path.write_bytes(response.content)
    marks = joined.read_chapters(path)
    assert [m["title"] for m in marks] == ["Uno", "Dos"]
    assert [round(m["start"], 2) for m in marks] == [round(c["start"], 2) for c in answer["chapters"]]


def test_range_requests_resume_a_download(jobs_server, book):
    base, _ = jobs_server
    url = f"{base}{book['audio_url']}"
    whole = requests.get(url, timeout=30)
    assert whole.headers["Accept-Ranges"] == "bytes"
    first = requests.get(url, headers={"Range": "bytes=0-999"}, timeout=30)
    assert first.status_code == 206 and len(first.content) == 1000
    assert first.headers["Content-Range"] == f"bytes 0-999/{len(whole.content)}"
    rest = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=30)
    assert rest.status_code == 206
    assert first.content + rest.content == whole.content
    beyond = requests.get(url, headers={"Range": f"bytes={len(whole.content) + 10}-"}, timeout=30)
    assert beyond.status_code == 416


def test_subtitles_follow_each_piece_in_the_joined_file(jobs_server, book):
    import webvtt

    base, _ = jobs_server
    response = requests.get(f"{base}/v1/audio/jobs/{book['id']}/subtitles", timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/vtt")
    cues = list(webvtt.from_buffer(io.StringIO(response.text)))
    said = " ".join(cue.text for cue in cues).split()
    # Shown as written: the figure whole, while "mil quinientos euros" is heard.
    assert said == "Uno Hola, esto es una prueba. Cuesta 1.500 €. Dos El texto sigue aquí. Y termina ya.".split()
    starts = [cue.start_in_seconds for cue in cues]
    assert starts == sorted(starts)
    assert cues[-1].end_in_seconds <= book["progress"]["audio_seconds"] + 0.01
    second = next(cue for cue in cues if cue.text == "Dos")
    hours, minutes, seconds = second.start.split(":")
    assert int(hours) * 3600 + int(minutes) * 60 + float(seconds) == pytest.approx(book["chapters"][1]["start"],
                                                                                   abs=0.01)
    srt = requests.get(f"{base}/v1/audio/jobs/{book['id']}/subtitles?format=srt", timeout=30)
    assert srt.text.startswith("1\n00:00:00,000 --> ")


def test_progress_arrives_as_server_sent_events(jobs_server):
    base, _ = jobs_server
    job_id = submit(base, LONG[:200])["id"]
    events = []
    with requests.get(f"{base}/v1/audio/jobs/{job_id}/events", stream=True, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                events.append(json.loads(line[len("data:"):]))
    done = [event["progress"]["characters_done"] for event in events]
    assert len(events) >= 3 and done == sorted(done)
    assert events[-1]["status"] == "done" and events[-1]["progress"]["fraction"] == 1.0
    assert any(0 < value < events[-1]["progress"]["characters"] for value in done), "no progress in between"


@pytest.mark.parametrize("path", ["", "/audio", "/subtitles", "/events"])
@pytest.mark.parametrize("job_id", ["nope", "A" * 24, "x.y"])
def test_unknown_ids_are_404_json(jobs_server, path, job_id):
    base, _ = jobs_server
    response = requests.get(f"{base}/v1/audio/jobs/{job_id}{path}", timeout=30)
    assert response.status_code == 404
    assert "No job" in response.json()["error"]["message"]
    assert requests.delete(f"{base}/v1/audio/jobs/{job_id}", timeout=30).status_code == 404


def test_bad_job_requests_are_refused_with_json(jobs_server):
    base, _ = jobs_server
    for body, status, words in [({"text": "Hola.", "format": "midi"}, 400, "'format'"),
                                ({"text": ""}, 400, "empty"),
                                ({"text": "Hola.", "language": "xx"}, 400, "language"),
                                ({"text": "## \n***"}, 400, "nothing speakable")]:
        response = requests.post(f"{base}/v1/audio/jobs", json=body, timeout=30)
        assert response.status_code == status and words in response.json()["error"]["message"], response.text


def test_cancel_stops_the_job_and_frees_the_engine(jobs_server):
    base, app = jobs_server
    job_id = submit(base, LONG)["id"]
    assert wait_until(lambda: job(base, job_id)["progress"]["pieces_done"] >= 1, 60, 0.05)
    deleted = requests.delete(f"{base}/v1/audio/jobs/{job_id}", timeout=30)
    assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"
    scheduler = app.extensions["tts_service"].router.route("es").scheduler
    assert wait_until(lambda: runner_of(app).current is None and scheduler.active == 0
                      and scheduler.queue_depth == 0, 5), "the job's piece still holds the engine"
    assert requests.get(f"{base}/v1/audio/jobs/{job_id}", timeout=30).status_code == 404
    assert not (runner_of(app).store.root / job_id).exists()
    live = requests.post(f"{base}/tts", json={"text": "Sigo aquí."}, timeout=60)
    assert live.status_code == 200


def test_a_live_stream_beside_a_running_job_gets_audio(jobs_server):
    base, _ = jobs_server
    job_id = submit(base, LONG)["id"]
    assert wait_until(lambda: job(base, job_id)["status"] == "running", 60, 0.05)
    started = time.monotonic()
    with requests.post(f"{base}/tts/stream", json={"text": "Hola, ¿me oyes bien?", "format": "pcm"},
                       stream=True, timeout=60) as response:
        assert response.status_code == 200
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)
        first_audio = time.monotonic() - started
        data = first + b"".join(chunks)
    samples, _ = decode_audio(data, "pcm")
    assert len(samples) > 24000 * 0.3 and rms(samples) > 1e-3
    assert first_audio < 10
    assert job(base, job_id)["status"] in ("running", "queued")  # the job went on beside it
    requests.delete(f"{base}/v1/audio/jobs/{job_id}", timeout=30)


def test_a_full_disk_fails_the_job_and_the_service_goes_on(jobs_server, monkeypatch):
    base, app = jobs_server
    store = runner_of(app).store

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_piece", full)
    failed = finished(base, submit(base, "Una frase.")["id"])
    assert failed["status"] == "failed" and "disk" in failed["error"] and "full" in failed["error"]
    monkeypatch.undo()
    assert finished(base, submit(base, "Otra frase.")["id"])["status"] == "done"
    assert requests.get(f"{base}/health", timeout=30).status_code == 200


def test_a_full_store_fails_the_job_and_refuses_new_ones_with_507(tiny_env, tmp_path):
    with running_app(pocket_env(tiny_env, tmp_path / "jobs", TTS_JOB_STORE_BYTES="20000")) as app:
        client = app.test_client()
        job_id = client.post("/v1/audio/jobs", json={"text": "Una frase corta."}).get_json()["id"]
        assert wait_until(lambda: client.get(f"/v1/audio/jobs/{job_id}").get_json()["status"] == "failed", 60, 0.05)
        assert "store is full" in client.get(f"/v1/audio/jobs/{job_id}").get_json()["error"]
        refused = client.post("/v1/audio/jobs", json={"text": "Palabra. " * 2500})
        assert refused.status_code == 507 and "full" in refused.get_json()["error"]["message"]
        assert client.get("/health").status_code == 200


def test_too_many_waiting_jobs_and_too_long_texts_are_refused(tiny_env, tmp_path):
    env = pocket_env(tiny_env, tmp_path / "jobs", TTS_JOB_MAX_QUEUED="1", TTS_JOB_MAX_CHARS="300",
                     TTS_PRELOAD="false")
    with running_app(env) as app:
        client = app.test_client()
        runner_of(app).stop(timeout=5)  # nothing starts: both jobs stay queued
        assert client.post("/v1/audio/jobs", json={"text": "Una."}).status_code == 202
        busy = client.post("/v1/audio/jobs", json={"text": "Dos."})
        assert busy.status_code == 429 and "waiting" in busy.get_json()["error"]["message"]
        assert client.post("/v1/audio/jobs", json={"text": "x" * 301}).status_code == 413


def test_jobs_off_answer_503(tiny_env, tmp_path):
    with running_app(pocket_env(tiny_env, "", TTS_PRELOAD="false")) as app:
        response = app.test_client().get("/v1/audio/jobs")
        assert response.status_code == 503 and "off" in response.get_json()["error"]["message"]


def test_one_replica_runs_a_job_whose_lock_another_holds(tmp_path):
    store = JobStore(tmp_path, 10 ** 9, 60).open()
    job_id = store.create("Hola.", {"status": "queued", "created": 0}, {"pieces": [], "chapters": []})
    assert store.claim(job_id) and not store.claim(job_id)
    store.release(job_id)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / job_id / "lock").write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout),
                                                        "token": "gone"}))
    assert store.claim(job_id), "a lock left by a dead process is taken over"
    (tmp_path / job_id / "lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "alive"}))
    assert not store.claim(job_id), "a fresh lock of another host is respected"


def test_a_job_survives_a_sigkill_and_makes_every_piece_once(tiny_env, tmp_path):
    """A real server killed mid-job; started again on the same store, it finishes the job."""
    store = tmp_path / "jobs"
    port = free_port()
    env = {**os.environ, **pocket_env(tiny_env, store), "PORT": str(port), "HOST": "127.0.0.1"}
    base = f"http://127.0.0.1:{port}"

    def start():
        process = subprocess.Popen([sys.executable, str(ROOT / "tts_server.py")], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: _healthy(base), 120, 0.1), "the server did not start"
        return process

    process = start()
    try:
        job_id = submit(base, LONG, format="wav")["id"]
        pieces = job(base, job_id)["progress"]["pieces"]
        assert pieces == 8
        assert wait_until(lambda: job(base, job_id)["progress"]["pieces_done"] >= 2, 120, 0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        made = JobStore(store, 10 ** 9, 60).made(job_id)
        assert 2 <= len(made) < pieces, "killed too late to show a resume"
        process = start()
        answer = finished(base, job_id)
        assert answer["status"] == "done", answer
        assert JobStore(store, 10 ** 9, 60).made(job_id) == list(range(pieces)), "a piece made twice or missing"
        assert sorted(p.name for p in (store / job_id / "pieces").glob("*.wav")) == \
            [f"{index:05d}.wav" for index in range(pieces)]
        samples, rate = decode_audio(requests.get(f"{base}{answer['audio_url']}", timeout=30).content, "wav")
        assert len(samples) / rate == pytest.approx(answer["progress"]["audio_seconds"], abs=0.01)
        assert rms(samples) > 1e-3
    finally:
        process.kill()
        process.wait(30)


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_the_command_line_makes_the_file_and_follows_a_job_it_already_started(jobs_server, book, tmp_path):
    base, _ = jobs_server
    source, output = tmp_path / "book.md", tmp_path / "book.wav"
    source.write_text(BOOK, encoding="utf-8")
    (tmp_path / "book.wav.job").write_text(book["id"])  # as an interrupted run leaves it
    run = subprocess.run([sys.executable, "-m", "tts_service.jobs", str(source), "-o", str(output), "--url", base],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"resuming job {book['id']}" in run.stderr and "%|" in run.stderr  # the same job, with a progress bar
    samples, rate = decode_audio(output.read_bytes(), "wav")
    assert len(samples) / rate == pytest.approx(book["progress"]["audio_seconds"], abs=0.01)
    assert not (tmp_path / "book.wav.job").exists()
