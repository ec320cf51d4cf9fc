"""The browser tier: Debian's Chromium driven by Playwright, against the service's own pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CHROMIUM, chromium


def pytest_collection_modifyitems(items):
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason="Debian's chromium is not installed")
    for item in items:
        if Path(item.fspath).parent.name == "browser":
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser
