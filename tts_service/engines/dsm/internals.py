"""Every use of moshi beyond its public API, in one place, listed, and checked at load.

The DSM engine writes each slot's voice into the batch's cross-attention state and holds back a
slot's audio until its own delay has passed; moshi's public API works on a whole batch at once.
Each private name it needs is listed here with why and reached only through the functions below;
`check_installed` resolves the list against the installed moshi when the model loads, so that a
moshi that moved one fails at load naming it (tests/unit/test_dsm_internals.py reads the engine and
this file and fails on a private name used anywhere else).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import re

# The release these were read from (requirements.txt pins it).
VERIFIED_VERSION = "0.2.13"

INTERNALS = {
    "moshi.modules.transformer:StreamingMultiheadAttention._compute_cross_attention":
        "a voice's cross-attention keys and values, computed for one slot instead of the whole batch",
    "moshi.modules.transformer:StreamingMultiheadAttention._streaming_state":
        "the batch's attention state, whose rows hold each slot's voice",
    "moshi.modules.transformer:_MHAState.k_cross": "a slot's cross-attention keys, written in place",
    "moshi.modules.transformer:_MHAState.v_cross": "a slot's cross-attention values, written in place",
    "moshi.models.lm:LMGen._streaming_state": "the generator's state, read for each slot's offset",
    "moshi.models.lm:_LMGenState.offsets": "each slot's step count, to hold back audio before its delay",
}


class MoshiInternalsError(RuntimeError):
    """The installed moshi lacks a name the DSM engine needs."""


def _resolve(name: str) -> str | None:
    """Why `name` does not resolve in the installed moshi; None when it does."""
    module_name, _, path = name.partition(":")
    owner_name, _, member = path.rpartition(".")
    try:
        owner = getattr(importlib.import_module(module_name), owner_name)
    except (ImportError, AttributeError):
        return f"{module_name}.{owner_name} is gone"
    if dataclasses.is_dataclass(owner):
        found = member in {field.name for field in dataclasses.fields(owner)}
    else:  # a method, or an attribute every instance sets in its class's (or a base's) __init__
        found = hasattr(owner, member) or any(
            re.search(rf"self\.{member}\b[^=\n]*=", inspect.getsource(base)) for base in owner.__mro__
            if base.__module__.startswith("moshi"))
    return None if found else f"{path} is gone"


def check_installed() -> None:
    """Every listed name resolves in the installed moshi, or one error names them all."""
    problems = [f"{name}: {problem}" for name in INTERNALS if (problem := _resolve(name))]
    if problems:
        version = importlib.metadata.version("moshi")
        raise MoshiInternalsError(f"moshi {version} is installed; the DSM engine was verified with "
                                  f"{VERIFIED_VERSION}, and these changed: " + "; ".join(problems))


def set_slot_cross(attention, index_rows, cross) -> None:
    """Write one slot's voice into a cross-attention layer's state (rows `index_rows`)."""
    k, v = attention._compute_cross_attention(cross, cross)
    state = attention._streaming_state
    state.k_cross.index_copy_(0, index_rows, k)
    state.v_cross.index_copy_(0, index_rows, v)


def slot_offsets(lm_gen):
    """Each slot's step count in the generator's state."""
    return lm_gen._streaming_state.offsets
