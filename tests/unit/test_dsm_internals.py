"""engines/dsm/internals.py: moshi's private names the DSM engine uses resolve, and it is the only way in."""

from __future__ import annotations

import ast
import re

import pytest

from helpers import ROOT
from tts_service.engines.dsm import internals

DSM = ROOT / "tts_service" / "engines" / "dsm"


def _private_uses(path) -> set[str]:
    """Private attributes read on anything but `self` (the engine's own names are its business)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.add(node.attr)
    return found


def test_every_listed_name_resolves_in_the_installed_moshi():
    internals.check_installed()


def test_the_engine_reaches_no_private_moshi_name_itself():
    assert _private_uses(DSM / "engine.py") == set()


def test_every_private_name_internals_uses_is_listed_and_every_listed_one_used():
    listed = {name.rpartition(".")[2] for name in internals.INTERNALS}
    used = _private_uses(DSM / "internals.py") - {"_resolve", "_streaming_state"} | {"_streaming_state"}
    assert {name for name in used if name in listed or name.startswith("_")} <= listed
    source = (DSM / "internals.py").read_text(encoding="utf-8").split("class MoshiInternalsError")[1]
    assert all(re.search(rf"\.{re.escape(name)}\b", source) for name in listed), listed


def test_a_moved_name_is_named_with_the_installed_version(monkeypatch):
    monkeypatch.setitem(internals.INTERNALS, "moshi.modules.transformer:_MHAState.k_gone", "test")
    with pytest.raises(internals.MoshiInternalsError, match=r"moshi .* is installed.*_MHAState\.k_gone is gone"):
        internals.check_installed()
