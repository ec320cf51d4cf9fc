"""compose.yaml (and compose.gpu.yaml): the production layout on one machine, as rendered by compose.

podman-compose (requirements-dev.txt) renders and merges the files as `podman compose` would;
the tests check that the rendered services fit deploy/nginx/ as shipped (the replicas listen
where its upstream points), the image (its volumes) and gunicorn (stop grace), and that the GPU
override reserves one GPU per replica. The nginx service's start command runs here against the
shipped site file, with IPv6 present and absent. Starting the containers needs a container
runtime; tests/system/test_container.py serves from the image instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT
from tts_service.config import Settings

SITE = ROOT / "deploy" / "nginx" / "kyutai-tts.conf"
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict:
    assert PODMAN_COMPOSE.exists(), "podman-compose is missing: ./run_tests.sh installs requirements-dev.txt"
    command = [str(PODMAN_COMPOSE)]
    for name in files:
        command += ["-f", str(ROOT / name)]
    result = subprocess.run(command + ["config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config("compose.yaml")


def replicas(config: dict) -> dict[str, dict]:
    return {name: s for name, s in config["services"].items() if name != "nginx"}


def upstream_servers() -> list[str]:
    block = re.search(r"upstream kyutai_tts \{(.*?)\}", SITE.read_text(), flags=re.S).group(1)
    return re.findall(r"^\s*server (\S+)", block, flags=re.M)


def test_replicas_listen_where_the_shipped_upstream_points(config):
    services = replicas(config)
    assert len(services) == 2
    addresses = sorted(f"{s['environment']['HOST']}:{s['environment']['PORT']}" for s in services.values())
    assert addresses == sorted(upstream_servers())
    for service in services.values():
        # nginx's network namespace: its 127.0.0.1 is theirs, and only nginx publishes ports.
        assert service["network_mode"] == "service:nginx" and "ports" not in service
        assert service["environment"]["TTS_TRUST_PROXY"] == "1"
        assert service["build"]["dockerfile"] == "Containerfile"
    assert {p.split(":")[-1] for p in config["services"]["nginx"]["ports"]} == {"80", "443"}


def test_replicas_share_the_model_and_voice_volumes_the_image_declares(config):
    declared = re.search(r'^VOLUME \[(.*)\]', (ROOT / "Containerfile").read_text(), flags=re.M).group(1)
    paths = {p.strip().strip('"') for p in declared.split(",")}
    mounts = [{v.split(":")[1]: v.split(":")[0] for v in s["volumes"]} for s in replicas(config).values()]
    assert set(mounts[0]) == paths and mounts[0] == mounts[1]
    assert set(mounts[0].values()) <= set(config["volumes"]), "named volumes, shared by both replicas"


def test_stop_grace_covers_gunicorns_drain(config):
    graceful = Settings.from_env({}).request_timeout + 10
    for service in replicas(config).values():
        assert int(service["stop_grace_period"].rstrip("s")) > graceful


def test_nginx_gets_the_shipped_files(config):
    nginx = config["services"]["nginx"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx["volumes"]}
    assert Path(ROOT, mounts["/etc/nginx/snippets"]).resolve() == (ROOT / "deploy/nginx/snippets").resolve()
    site_mount = next(inside for inside, host in mounts.items() if host.endswith("deploy/nginx/kyutai-tts.conf"))
    assert site_mount in " ".join(nginx["command"])
    # The certificate paths the site file names lie inside the mounted /etc/letsencrypt.
    for path in re.findall(r"ssl_certificate(?:_key)? (\S+);", SITE.read_text()):
        assert path.startswith("/etc/letsencrypt/") and "/etc/letsencrypt" in mounts


@pytest.mark.parametrize("ipv6", [True, False])
def test_nginx_start_command_keeps_the_site_file_and_drops_ipv6_only_without_it(config, tmp_path, ipv6):
    script = config["services"]["nginx"]["command"][-1]
    site_mount = next(v.split(":")[1] for v in config["services"]["nginx"]["volumes"] if "kyutai-tts.conf" in v)
    probe = tmp_path / "if_inet6"
    if ipv6:
        probe.write_text("")
    out = tmp_path / "default.conf"
    for old, new in ((site_mount, str(SITE)), ("/etc/nginx/conf.d/default.conf", str(out)),
                     ("/proc/net/if_inet6", str(probe)), ("exec nginx -g 'daemon off;'", "true")):
        assert old in script, f"{old!r} is no longer in the nginx command; update this test"
        script = script.replace(old, new)
    subprocess.run(["sh", "-c", script], check=True, timeout=30)
    rendered, shipped = out.read_text(), SITE.read_text()
    if ipv6:
        assert rendered == shipped
    else:
        assert "[::]" not in rendered and "listen 80;" in rendered and "listen 443 ssl;" in rendered
        assert len(rendered.splitlines()) == len(shipped.splitlines()) - shipped.count("listen [::]")


def test_gpu_override_reserves_one_gpu_per_replica():
    config = compose_config("compose.yaml", "compose.gpu.yaml")
    devices = []
    for service in replicas(config).values():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        devices += device["device_ids"]
        assert service["environment"]["TTS_DEVICE"] == "cuda"
        assert service["environment"]["PORT"]  # the base file's settings are kept
    assert sorted(devices) == ["0", "1"]
    shared = compose_config("compose.yaml", "compose.gpu.yaml", env={"TTS_GPU_0": "0", "TTS_GPU_1": "0"})
    assert {d for s in replicas(shared).values()
            for d in s["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]} == {"0"}
