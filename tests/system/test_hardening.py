"""The service opened to the internet, tried as a careless or hostile client would, on the tiny models.

Every loop here is bounded in count and in time. Each group of tests shares one live server (a
real socket, so that client addresses, disconnects and raw request lines are what a client sends).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from helpers import ROOT, decode_wav, dsm_only, rms, running_app, served, start_gunicorn, wait_until

KEY = "k3y-for-hardening-tests"
HELLO = {"text": "Hello there.", "language": "en"}
CHEAP = {"text": "Hello.", "language": "xx"}  # refused as a 400 after it was counted
LONG_TEXT = " ".join(["This sentence keeps the tiny model busy for a good while."] * 8)


@contextlib.contextmanager
def live_server(env, **overrides):
    with running_app(env, **overrides) as app:
        with served(app) as base:
            yield base, app


def forwarded(address: str, headers: dict | None = None) -> dict:
    return {"X-Forwarded-For": address, **(headers or {})}


def ws_status(url: str, headers: dict) -> int:
    """101 when the WebSocket session was accepted, else the HTTP status that refused it."""
    try:
        with connect(url, additional_headers=headers, open_timeout=20) as ws:
            ws.recv(timeout=20)
        return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def assert_speaks(base: str) -> None:
    """The service is healthy and answers a normal /tts with real audio."""
    assert requests.get(f"{base}/health", timeout=10).json()["status"] == "ok"
    response = requests.post(f"{base}/tts", json=HELLO, timeout=120)
    assert response.status_code == 200, response.text
    audio, rate = decode_wav(response.json()["audioContent"])
    assert rate == 24000 and len(audio) > rate * 0.1 and rms(audio) > 1e-4


# -- one budget per client -------------------------------------------------------------------
@pytest.fixture(scope="module")
def budget_server(tiny_env):
    with live_server(dsm_only(tiny_env), rate_limit="4/minute", trust_proxy=1) as started:
        yield started


def test_one_budget_across_every_synthesis_surface(budget_server):
    base, _ = budget_server
    ws = base.replace("http://", "ws://")
    a = forwarded("203.0.113.10")
    spent = [requests.post(f"{base}/tts", json=CHEAP, headers=a, timeout=30).status_code,
             requests.post(f"{base}/tts/stream", json=CHEAP, headers=a, timeout=30).status_code,
             requests.post(f"{base}/v1/audio/speech", json={"input": "Hi.", "language": "xx"}, headers=a,
                           timeout=30).status_code,
             ws_status(f"{ws}/api/tts_streaming", a)]
    assert spent == [400, 400, 400, 101]
    refused = requests.post(f"{base}/tts", json=HELLO, headers=a, timeout=30)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert requests.post(f"{base}/v1/audio/speech", json={"input": "Hi."}, headers=a, timeout=30).status_code == 429
    assert requests.post(f"{base}/tts/stream", json=HELLO, headers=a, timeout=30).status_code == 429
    assert ws_status(f"{ws}/ws/tts?language=en", a) == 429, "a session over budget is refused before the upgrade"
    assert requests.get(f"{base}/health", headers=a, timeout=10).status_code == 200


def test_websocket_sessions_are_counted(budget_server):
    base, _ = budget_server
    ws = base.replace("http://", "ws://")
    b = forwarded("203.0.113.11")
    statuses = [ws_status(f"{ws}/api/tts_streaming", b) for _ in range(6)]
    assert statuses == [101] * 4 + [429] * 2
    assert requests.post(f"{base}/tts", json=HELLO, headers=b, timeout=30).status_code == 429


def test_each_client_behind_the_proxy_has_its_own_budget(budget_server):
    base, _ = budget_server
    c, d = forwarded("198.51.100.1"), forwarded("198.51.100.2")
    assert [requests.post(f"{base}/tts", json=CHEAP, headers=c, timeout=30).status_code for _ in range(5)] \
        == [400] * 4 + [429]
    assert requests.post(f"{base}/tts", json=CHEAP, headers=d, timeout=30).status_code == 400
    # IPv6 clients by their /64: another address in the same network shares the budget.
    e1, e2 = forwarded("2001:db8:1:2::10"), forwarded("2001:db8:1:2:ffff::99")
    assert [requests.post(f"{base}/tts", json=CHEAP, headers=e1, timeout=30).status_code for _ in range(4)] \
        == [400] * 4
    assert requests.post(f"{base}/tts", json=CHEAP, headers=e2, timeout=30).status_code == 429
    fresh = forwarded("192.0.2.200")
    response = requests.post(f"{base}/tts", json=HELLO, headers=fresh, timeout=120)
    assert response.status_code == 200 and decode_wav(response.json()["audioContent"])[1] == 24000


# -- API key: guesses throttled, details behind the key --------------------------------------
@pytest.fixture(scope="module")
def keyed_server(tiny_env):
    with live_server(dsm_only(tiny_env), api_key=KEY, auth_fail_limit="3/minute", trust_proxy=1,
                     rate_limit="") as started:
        yield started


def test_wrong_keys_are_throttled_per_client(keyed_server):
    base, _ = keyed_server
    guesser = forwarded("203.0.113.20")
    statuses = [requests.post(f"{base}/tts", json=HELLO, timeout=30,
                              headers=forwarded("203.0.113.20", {"Authorization": f"Bearer guess-{i}"})).status_code
                for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    locked = requests.get(f"{base}/voices", timeout=30, headers={**guesser, "Authorization": f"Bearer {KEY}"})
    assert locked.status_code == 429, "once locked, even the right key is refused: a guess learns nothing"
    assert int(locked.headers["Retry-After"]) > 0
    ws = base.replace("http://", "ws://")
    assert ws_status(f"{ws}/api/tts_streaming", {**guesser, "kyutai-api-key": "another-guess"}) == 429
    health = requests.get(f"{base}/health", timeout=10, headers={**guesser, "Authorization": f"Bearer {KEY}"})
    assert health.json() == {"status": "ok"}, "/health is no oracle for a locked client"
    # Someone else is not locked out.
    other = forwarded("203.0.113.21", {"Authorization": f"Bearer {KEY}"})
    assert requests.get(f"{base}/voices", headers=other, timeout=30).status_code == 200


def test_wrong_keys_over_websocket_and_health_count_too(keyed_server):
    base, _ = keyed_server
    ws = base.replace("http://", "ws://")
    client = forwarded("203.0.113.22")
    # Refused before the upgrade (401) or in-protocol after it: counted either way.
    assert ws_status(f"{ws}/api/tts_streaming?auth_id=nope", client) in (101, 401)
    assert requests.get(f"{base}/health", timeout=10,
                        headers={**client, "Authorization": "Bearer nope-2"}).json() == {"status": "ok"}
    assert requests.get(f"{base}/voices", timeout=10,
                        headers={**client, "Authorization": "Bearer nope-3"}).status_code == 401
    assert requests.get(f"{base}/voices", timeout=10,
                        headers={**client, "Authorization": f"Bearer {KEY}"}).status_code == 429


def test_open_answers_say_little_without_the_key(keyed_server, tiny_env):
    base, _ = keyed_server
    client = forwarded("203.0.113.23")
    bare = requests.get(f"{base}/health", headers=client, timeout=10)
    assert bare.status_code == 200 and bare.json() == {"status": "ok"}
    with_key = requests.get(f"{base}/health", headers={**client, "Authorization": f"Bearer {KEY}"}, timeout=10)
    details = with_key.json()
    assert details["device"] == "cpu" and details["engines"][0]["name"] == "dsm"
    assert details["model"] == Path(tiny_env["TTS_DSM_MODEL"]).name, "a local model is named by its folder"

    voices = requests.get(f"{base}/voices", headers={**client, "Authorization": f"Bearer {KEY}"},
                          timeout=10).json()
    names = {name for entry in voices["languages"].values() for name in entry["voices"]}
    assert names
    spec_open = requests.get(f"{base}/openapi.json", headers=client, timeout=10).text
    spec_keyed = requests.get(f"{base}/openapi.json", headers={**client, "Authorization": f"Bearer {KEY}"},
                              timeout=10).text
    assert not any(f'"{name}"' in spec_open for name in names), "voice names leak from /openapi.json"
    assert all(f'"{name}"' in spec_keyed for name in names)

    local = str(Path(tiny_env["TTS_DSM_MODEL"]).parent)
    for text in (bare.text, with_key.text, spec_open, spec_keyed, json.dumps(voices)):
        assert local not in text, "a local path is shown"


def test_a_failed_local_model_is_named_without_its_path(make_app, tiny_env, tmp_path):
    env = dsm_only(tiny_env) | {"TTS_DSM_MODEL": str(tmp_path / "deep" / "missing-model")}
    body = make_app(env).test_client().get("/health").get_json()
    assert body["status"] == "error"
    assert "missing-model" in body["error"] and body["model"] == "missing-model"
    assert str(tmp_path) not in json.dumps(body)


# -- the plain service: disconnects, metrics, logs -------------------------------------------
@pytest.fixture(scope="module")
def plain_server(tiny_env):
    with live_server(dsm_only(tiny_env), rate_limit="", cache_bytes=0) as started:
        yield started


def raw_post(base: str, path: str, body: dict) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


@pytest.mark.parametrize("path, body", [
    ("/tts", {"text": LONG_TEXT, "language": "en"}),
    ("/v1/audio/speech", {"input": LONG_TEXT, "language": "en", "response_format": "wav"}),
], ids=["tts", "openai"])
def test_a_client_that_leaves_stops_costing(plain_server, path, body):
    base, app = plain_server
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    assert wait_until(lambda: scheduler.active == 0 and scheduler.queue_depth == 0, 30)
    cancelled_before = scheduler.stats.cancelled
    sock = raw_post(base, path, body)
    assert wait_until(lambda: scheduler.active > 0, 20), "the request never started"
    time.sleep(0.5)
    sock.close()
    left = time.monotonic()
    assert wait_until(lambda: scheduler.active == 0 and scheduler.queue_depth == 0, 1.5), \
        "the work of a client that left kept going"
    assert scheduler.stats.cancelled > cancelled_before
    assert time.monotonic() - left < 1.5


def test_metric_labels_come_from_a_fixed_set(plain_server):
    base, app = plain_server
    host, port = base.removeprefix("http://").split(":")

    def series() -> list[dict]:
        text = requests.get(f"{base}/metrics", timeout=10).text
        return [s.labels for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == "tts_http_requests_total"]

    before = len(series())
    for i in range(20):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(f"MADEUP{i}", f"/no/such/path/{i}")
        conn.getresponse().read()
        conn.request(f"BREW{i}", "/tts")
        conn.getresponse().read()
        conn.close()
    labels = series()
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert {entry["method"] for entry in labels} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                                                     "other"}
    assert {entry["endpoint"] for entry in labels} <= rules | {"other"}
    assert len(labels) - before <= 4, "made-up methods and paths made new series"


def test_access_log_escapes_control_characters(plain_server, caplog):
    base, _ = plain_server
    host, port = base.removeprefix("http://").split(":")
    caplog.set_level(logging.INFO, logger="tts_service.access")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /forged%0A2026-01-01%20INFO%20tts_service.access:%20fake%0D%1B%5B31m HTTP/1.1\r\n"
                     b"Host: x\r\nConnection: close\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404")
    assert wait_until(lambda: any("forged" in r.getMessage() for r in caplog.records), 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "tts_service.access" and "forged" in r.getMessage()]
    assert len(lines) == 1
    assert "\\x0a2026-01-01 INFO" in lines[0] and "\\x0d\\x1b[31m" in lines[0]
    assert not re.search(r"[\x00-\x1f\x7f]", lines[0])


def test_log_lines_cannot_be_forged_through_messages_or_tracebacks():
    from tts_service.logs import OneLineFormatter

    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError("bad\nINFO tts_service.access: forged")
    except ValueError:
        import sys

        record = logging.LogRecord("tts_service", logging.ERROR, __file__, 1, "failed on %s",
                                   ("/path\r\nINFO x: forged",), sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR tts_service: failed on /path\\x0d\\x0aINFO x: forged"
    assert all(line.startswith("  | ") for line in lines[1:]) and len(lines) > 2


def test_request_text_is_never_logged(plain_server, caplog):
    base, app = plain_server
    marker = "Quokkamarker"
    caplog.set_level(logging.DEBUG)
    with requests.Session() as session:
        assert session.post(f"{base}/tts", json={"text": f"{marker} says hi.", "language": "en"},
                            timeout=120).status_code == 200
        assert session.post(f"{base}/tts", json={"text": marker, "language": "en", "voice": marker},
                            timeout=60).status_code == 400
        assert session.post(f"{base}/tts", json={"text": marker, "language": "xx"}, timeout=30).status_code == 400
        assert session.post(f"{base}/tts", json={"text": marker * 500, "language": "en"},
                            timeout=30).status_code == 413
        assert session.post(f"{base}/tts", data=f'{{"text": "{marker}', timeout=30,
                            headers={"Content-Type": "application/json"}).status_code == 400
        stream = session.post(f"{base}/tts/stream", json={"text": f"{marker} streams.", "language": "en"},
                              timeout=120)
        assert stream.status_code == 200 and len(stream.content) > 44
        assert session.post(f"{base}/v1/audio/speech", json={"input": f"{marker}.", "language": "en",
                                                              "response_format": "wav"},
                            timeout=120).status_code == 200
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    sock = raw_post(base, "/tts", {"text": f"{marker} {LONG_TEXT}", "language": "en"})
    wait_until(lambda: scheduler.active > 0, 20)
    sock.close()
    wait_until(lambda: scheduler.active == 0, 5)
    assert caplog.records, "nothing was logged at all"
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info)
                                      if record.exc_info else "")
        assert marker not in text, f"request text in the log: {record.name}: {text[:200]}"


def test_api_answers_are_not_sniffed(plain_server):
    base, _ = plain_server
    for response in (requests.get(f"{base}/health", timeout=10), requests.post(f"{base}/tts", json=CHEAP, timeout=30)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_still_healthy_and_speaking_afterwards(plain_server, budget_server, keyed_server):
    base, _ = plain_server
    assert_speaks(base)
    keyed, _ = keyed_server
    response = requests.post(f"{keyed}/tts", json=HELLO, timeout=120,
                             headers=forwarded("192.0.2.50", {"Authorization": f"Bearer {KEY}"}))
    assert response.status_code == 200
    assert rms(decode_wav(response.json()["audioContent"])[0]) > 1e-4


# -- deployment files --------------------------------------------------------------------------
UNIT = ROOT / "deploy" / "kyutai-tts.service"


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_is_sandboxed():
    from gunicorn.config import Config

    unit = unit_settings(UNIT.read_text())
    expected = {"ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateDevices": "true",
                "PrivateTmp": "true", "NoNewPrivileges": "true", "ProtectKernelTunables": "true",
                "ProtectKernelModules": "true", "ProtectKernelLogs": "true", "ProtectControlGroups": "true",
                "RestrictNamespaces": "true", "LockPersonality": "true", "SystemCallArchitectures": "native",
                "SystemCallFilter": "@system-service", "UMask": "0077", "MemoryDenyWriteExecute": "false"}
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    writable = " ".join(unit["ReadWritePaths"])
    assert "/home/tts/kyutai-tts" in writable and ".cache/huggingface" in writable
    assert int(unit["LimitNOFILE"][0]) > Config().worker_connections + 1000


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    app = tmp_path / "app"
    app.mkdir()
    start = app / "start_kyutai.sh"
    start.write_text("#!/bin/sh\nexit 0\n")
    start.chmod(0o755)
    rendered = tmp_path / "kyutai-tts.service"
    rendered.write_text(UNIT.read_text().replace("/home/tts/kyutai-tts", str(app))
                        .replace("/home/tts/.cache", str(tmp_path / "cache")))
    verify = subprocess.run([analyze, "verify", str(rendered)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines() if "kyutai-tts" in line]
    assert verify.returncode == 0 and complaints == [], verify.stdout + verify.stderr
    security = subprocess.run([analyze, "security", "--offline=true", str(rendered)], capture_output=True,
                              text=True, timeout=60)
    level = re.search(r"Overall exposure level for kyutai-tts\.service: ([\d.]+)", security.stdout)
    if security.returncode != 0 or level is None:
        pytest.skip("this systemd-analyze cannot rate a unit file offline")
    assert float(level.group(1)) < 3.0, security.stdout[-400:]


def test_the_env_file_with_the_key_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for name in (".env", ".env.production"):
        check = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, timeout=30)
        assert check.returncode == 0, f"{name} is not ignored"


# -- the same under gunicorn, as deployed ----------------------------------------------------
def test_under_gunicorn_a_client_that_leaves_is_noticed_and_the_log_file_has_one_line_per_request(
        tiny_env, tmp_path):
    def gauge(base: str, name: str) -> float:
        text = requests.get(f"{base}/metrics", timeout=10).text
        return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == name and s.labels.get("engine") == "dsm")

    process, base = start_gunicorn({**dsm_only(tiny_env), "TTS_RATE_LIMIT": "", "TTS_CACHE_BYTES": "0"}, tmp_path)
    try:
        sock = raw_post(base, "/tts", {"text": LONG_TEXT, "language": "en"})
        assert wait_until(lambda: gauge(base, "tts_active_requests") > 0, 20, step=0.1), "the request never started"
        time.sleep(0.5)
        sock.close()
        assert wait_until(lambda: gauge(base, "tts_active_requests") == 0 and gauge(base, "tts_queue_depth") == 0,
                          1.5, step=0.1), "gunicorn kept generating for a client that left"

        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"GET /gforged%0AINFO%20x:%20y%1B%5B2J HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert raw.recv(4096).startswith(b"HTTP/1.1 404")
        assert_speaks(base)
    finally:
        process.send_signal(2)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    log = (tmp_path / "tts.log").read_text()
    assert "client left request" in log
    forged = [line for line in log.splitlines() if "gforged" in line]
    assert len(forged) == 1 and "\\x0aINFO x: y\\x1b[2J" in forged[0]
    assert not any(line.startswith("INFO x:") for line in log.splitlines())
