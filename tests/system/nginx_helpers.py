"""Debian's nginx rendered from deploy/nginx/ in front of real service replicas, all on loopback.

The shipped files are used as they are, with only the settings their header names as the ones to
edit (ports, certificate paths, snippet paths, the upstream's server list) replaced; every
replacement must match, so a change to those files cannot slip past the tests unnoticed.
Learned from nginx's documentation (ngx_http_upstream_module, ngx_http_proxy_module, WebSocket
proxying) and Debian's /etc/nginx layout (sites-available, snippets).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests

from helpers import ROOT, dsm_only, free_port, wait_until

DEPLOY = ROOT / "deploy" / "nginx"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
SHIPPED_SERVERS = ("127.0.0.1:5010", "127.0.0.1:5011")


def wait_for(check, timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll check() until it returns something true, and return that; fail naming what never happened."""
    result = None

    def done():
        nonlocal result
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        with contextlib.suppress(OSError, requests.RequestException):
            result = check()
        return result

    wait_until(done, timeout, step=0.1, message=f"{what}: not within {timeout:.0f} s")
    return result


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is no longer in the shipped nginx config; update the tests"
    return text.replace(old, new)


def render_site(tmp: Path, upstreams: list[str], http_port: int, https_port: int, redirect_port: int,
                cert: Path, key: Path) -> Path:
    """deploy/nginx/kyutai-tts.conf and its snippets with this run's ports, paths and replicas."""
    snippets = tmp / "snippets"
    snippets.mkdir(exist_ok=True)
    for snippet in (DEPLOY / "snippets").glob("kyutai-tts-*.conf"):
        shutil.copy(snippet, snippets / snippet.name)
    site = (DEPLOY / "kyutai-tts.conf").read_text()
    site = _replace(site, "/etc/nginx/snippets/", f"{snippets}/")
    for path in snippets.iterdir():
        path.write_text(path.read_text().replace("/etc/nginx/snippets/", f"{snippets}/"))
    site = _replace(site, "/etc/letsencrypt/live/tts.example.com/fullchain.pem", str(cert))
    site = _replace(site, "/etc/letsencrypt/live/tts.example.com/privkey.pem", str(key))
    site = _replace(site, "root /var/www/html;", f"root {tmp};")
    site = _replace(site, "    listen [::]:80;\n", "")
    site = _replace(site, "    listen [::]:443 ssl;\n", "")
    site = _replace(site, "    listen 80;\n", f"    listen 127.0.0.1:{redirect_port};\n")
    # The same server also answers plain HTTP here, so most tests need no TLS client.
    site = _replace(site, "    listen 443 ssl;\n",
                    f"    listen 127.0.0.1:{https_port} ssl;\n    listen 127.0.0.1:{http_port};\n")
    lines = [m for m in re.finditer(r"^ *server (\S+)( [^;]*);\n", site, flags=re.M)]
    assert [m.group(1) for m in lines] == list(SHIPPED_SERVERS), "the shipped upstream changed; update the tests"
    parameters = lines[0].group(2)
    servers = "".join(f"    server {address}{parameters};\n" for address in upstreams)
    site = site[:lines[0].start()] + servers + site[lines[-1].end():]
    path = tmp / "sites-enabled" / "kyutai-tts"
    path.parent.mkdir(exist_ok=True)
    path.write_text(site)
    return path


def main_config(tmp: Path, site: Path) -> Path:
    """A stand-in for Debian's /etc/nginx/nginx.conf with every path inside tmp."""
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must reach files under tmp
    temp = "".join(f"    {kind}_temp_path {tmp}/temp-{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 2;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log info;\n"
        "events {\n    worker_connections 2048;\n}\n"
        "http {\n    default_type application/octet-stream;\n"
        f"    access_log {tmp}/access.log;\n{temp}    include {site};\n}}\n")
    return conf


@dataclass
class Front:
    """A running nginx; http, https and redirect are its loopback base URLs."""
    process: subprocess.Popen
    http: str
    https: str
    redirect: str
    error_log: Path
    cert: Path

    @property
    def ws(self) -> str:
        return self.http.replace("http://", "ws://")


@contextlib.contextmanager
def nginx_front(tmp: Path, upstreams: list[str], cert: Path, key: Path):
    """Run Debian's nginx as a foreground process in front of the given replica addresses."""
    assert NGINX, "nginx is not installed"
    tmp.mkdir(parents=True, exist_ok=True)
    http_port, https_port, redirect_port = free_port(), free_port(), free_port()
    site = render_site(tmp, upstreams, http_port, https_port, redirect_port, cert, key)
    conf = main_config(tmp, site)
    check = subprocess.run([NGINX, "-t", "-p", str(tmp), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    front = Front(process, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}",
                  f"http://127.0.0.1:{redirect_port}", tmp / "error.log", cert)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", http_port), timeout=1).close() or True,
                 20, "nginx listening", process)
        yield front
    finally:
        process.terminate()
        process.wait(10)


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made with openssl now."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Replica:
    """One service process (gunicorn, as start_kyutai.sh runs it) on its own loopback port."""
    process: subprocess.Popen
    port: int
    log: Path
    address: str = field(init=False)

    def __post_init__(self):
        self.address = f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]

    def kill(self) -> None:
        """kill -9 the whole replica, master and worker, as a crashed machine would go."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_replica(env: dict[str, str], tmp: Path, name: str, **overrides: str) -> Replica:
    """Start a replica the way deploy/kyutai-tts@.service does: gunicorn with --bind, behind a proxy."""
    port = free_port()
    log = tmp / f"{name}.log"
    full_env = {**os.environ, **dsm_only(env), "TTS_TRUST_PROXY": "1", "TTS_LOG_FILE": str(log),
                "TTS_HTTP_THREADS": "16", "TTS_RATE_LIMIT": "",
                # Replicas here share one small machine: one core's worth of math each.
                "OMP_NUM_THREADS": "1", **overrides}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                "--bind", f"127.0.0.1:{port}", "tts_server:create_app()"],
                               cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    return Replica(process, port, log)


def wait_ready(replica: Replica, timeout: float = 120) -> None:
    wait_for(lambda: requests.get(f"{replica.base}/health", timeout=2).status_code == 200, timeout,
             f"replica on {replica.address} ready", replica.process)


class Refuser:
    """A replica stand-in that is always full: 503 with Retry-After, counting what it refused."""

    def __init__(self):
        refuser = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                refuser.hits += 1
                body = b'{"error": "The server is busy (queue full); try again shortly.", "fallback": true}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "7")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _refuse

            def log_message(self, *args):
                pass

        self.hits = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
