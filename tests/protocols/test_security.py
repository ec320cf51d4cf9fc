"""API key, CORS, body limits and rate limiting, on the real app."""

from __future__ import annotations

import pytest

HELLO = {"text": "Hello there.", "language": "en"}


@pytest.fixture
def keyed(make_app):
    return make_app(api_key="s3cret-key").test_client()


def test_health_stays_open_and_reveals_no_secret(keyed):
    response = keyed.get("/health")
    assert response.status_code == 200
    assert "s3cret" not in response.get_data(as_text=True)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "s3cret-key"},
    {"Authorization": "Basic czNjcmV0LWtleQ=="},
    {"Authorization": "Bearer s3cret-key-and-more"},
])
def test_synthesis_needs_the_key(keyed, headers):
    for path in ("/tts", "/tts/stream"):
        response = keyed.post(path, json=HELLO, headers=headers)
        assert response.status_code == 401, path
        assert "API key" in response.get_json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert keyed.get("/metrics", headers=headers).status_code == 401


def test_the_key_opens_synthesis(keyed):
    response = keyed.post("/tts", json=HELLO, headers={"Authorization": "Bearer s3cret-key"})
    assert response.status_code == 200
    assert keyed.get("/metrics", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200


def test_cors_allows_configured_origins_only(make_app):
    client = make_app(cors_origins="https://chat.example.com").test_client()
    allowed = client.options("/tts", headers={"Origin": "https://chat.example.com",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "Content-Type, Authorization"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://chat.example.com"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    other = client.post("/tts", json=HELLO, headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_default_cors_is_open_like_the_original(client):
    response = client.get("/health", headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_oversized_body_is_413_json(make_app):
    client = make_app(max_body_bytes=1024).test_client()
    response = client.post("/tts", data='{"text": "' + "a" * 5000 + '"}', content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]


def test_rate_limit_answers_429_with_retry_after(make_app):
    client = make_app(rate_limit="3/minute").test_client()
    statuses = [client.post("/tts", json={"text": "", "language": "en"}).status_code for _ in range(5)]
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3:] == [429, 429]
    limited = client.post("/tts", json=HELLO)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "error" in limited.get_json()
    assert client.get("/health").status_code == 200, "health is never rate limited"


def test_retry_after_only_on_refusals(make_app):
    client = make_app(rate_limit="100/minute").test_client()
    ok = client.post("/tts", json=HELLO)
    assert ok.status_code == 200 and "Retry-After" not in ok.headers


@pytest.mark.parametrize("said, sent", [("0", "1"), ("-3", "1"), ("2", "2"),
                                        ("Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT")])
def test_retry_after_never_tells_a_client_to_retry_at_once(tiny_env, said, sent):
    from flask import Response

    from tts_service import create_app
    from tts_service.config import Settings

    app = create_app(Settings.from_env(tiny_env, rate_limit=""))  # configured, not started: no model needed
    # As the limiter answers at the very end of its window.
    app.add_url_rule("/edge", "edge", lambda: Response("{}", status=429, headers={"Retry-After": said}))
    assert app.test_client().get("/edge").headers["Retry-After"] == sent


@pytest.mark.parametrize("message, shown", [
    ("model failed to load: /home/tts/models/dsm not found", "model failed to load: dsm not found"),
    ("no config in '/srv/tts/pocket/pocket_tiny.yaml'", "no config in 'pocket_tiny.yaml'"),
    ("cache at ~/.cache/huggingface/hub is read-only", "cache at hub is read-only"),
    ("repo kyutai/tts-1.6b-en_fr not found on https://huggingface.co/kyutai/x", None),
    ("and/or 1/2 of it", None),
])
def test_local_paths_are_shortened_in_open_messages(message, shown):
    from tts_service.logs import redact_paths

    assert redact_paths(message) == (message if shown is None else shown)


@pytest.mark.parametrize("model_id, shown", [
    ("kyutai/tts-1.6b-en_fr", "kyutai/tts-1.6b-en_fr"),
    ("/home/tts/models/dsm", "dsm"),
    ("/home/tts/models/dsm/", "dsm"),
    ("~/models/pocket.yaml", "pocket.yaml"),
    ("hf://kyutai/pocket-tts/config.yaml", "hf://kyutai/pocket-tts/config.yaml"),
    ("kyutai/pocket-tts (spanish)", "kyutai/pocket-tts (spanish)"),
])
def test_model_ids_hide_local_folders(model_id, shown):
    from tts_service.logs import public_model_id

    assert public_model_id(model_id) == shown


def test_a_closed_client_socket_is_told_from_an_open_one():
    import socket

    from tts_service.routes.disconnect import client_gone

    server, client = socket.socketpair()
    with server, client:
        assert not client_gone(server), "open and quiet"
        client.sendall(b"GET / HTTP/1.1\r\n")
        assert not client_gone(server), "a pipelined request is still a client"
        assert server.recv(100)  # nothing was consumed by the peek
        client.close()
        assert client_gone(server)
