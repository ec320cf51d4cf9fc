"""Fixtures: tiny random-weight checkpoints built once per session, and apps served from them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from helpers import ROOT, dsm_only, running_app, served, started, wait_ready  # noqa: F401 (ROOT: sys.path)
from tts_service import create_app
from tts_service.config import Settings

# moshi's torch.compile costs ~20 s per process on a CPU and buys nothing for tiny models.
os.environ.setdefault("TTS_TORCH_COMPILE", "off")


TIERS = {"unit": "unit", "protocols": "protocol", "system": "system", "browser": "system"}


def pytest_collection_modifyitems(items):
    """Each test carries its tier's marker, from its folder: `pytest -m unit` runs the fast ones."""
    for item in items:
        tier = TIERS.get(Path(item.fspath).parent.name)
        if tier is not None:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Build the tiny checkpoints with the project's own script, as the README says."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_models.py"), str(out)],
                   check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def tiny_env(tiny_models) -> dict[str, str]:
    """The NAME=VALUE settings written by make_tiny_models.py.

    Admission by real time is off: the tiny DSM runs near real time on a busy CPU, and the tests
    of batching need every slot; tests/unit/test_realtime.py and test_health's own app test it."""
    env = {"TTS_REALTIME_MARGIN": "0"}
    for line in (tiny_models / "env").read_text().splitlines():
        if line.strip():
            name, value = line.split("=", 1)
            env[name] = value
    return env


@pytest.fixture
def make_app(tiny_env) -> Iterator[Callable[..., object]]:
    """Build a started app from the tiny settings plus overrides; stopped after the test."""
    apps = []

    def factory(env: dict[str, str] | None = None, wait: bool = True, **overrides):
        settings = Settings.from_env({**(env if env is not None else dsm_only(tiny_env))}, **overrides)
        app = started(create_app(settings))
        apps.append(app)
        if wait:
            wait_ready(app.test_client())
        return app

    yield factory
    for app in apps:
        app.extensions["tts_service"].stop(timeout=30)


@pytest.fixture(scope="session")
def dsm_app(tiny_env):
    """One shared app on the tiny DSM model, for tests that only read from it."""
    with running_app(dsm_only(tiny_env)) as app:
        yield app


@pytest.fixture
def client(dsm_app):
    return dsm_app.test_client()


@pytest.fixture
def live(make_app):
    """Start an app with overrides on a real socket; yields start(**overrides) -> (base_url, app)."""
    with contextlib.ExitStack() as stack:
        def start(**overrides):
            app = make_app(**overrides)
            return stack.enter_context(served(app)), app

        yield start


