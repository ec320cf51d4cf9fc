"""engines/pocket/internals.py: its list of pocket-tts internals resolves, is exact, and is the only way in."""

from __future__ import annotations

import ast
import importlib
import re

import pytest
import torch

from helpers import ROOT
from tts_service.engines.pocket import internals

ENGINES = ROOT / "tts_service" / "engines"
POCKET = ENGINES / "pocket"
# The modules that may reach past the public API, each through a listed name: the list and its check,
# and the frame loop.
REACHING_IN = ("internals.py", "frames.py")
ENGINE_MODULES = sorted({*ENGINES.glob("*.py"), *ENGINES.glob("*/*.py")} - {POCKET / name for name in REACHING_IN})
LISTED = {**internals.INTERNALS, **dict.fromkeys(internals.PUBLIC, "public")}

# pocket-tts quantizes through torch.ao, which torch has deprecated (the engine filters it too).
pytestmark = pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")


@pytest.fixture(scope="module", params=[True, False], ids=["int8", "float"])
def tiny_model(request, tmp_path_factory):
    """The tiny Spanish model, built by the project's script and loaded as the engine loads it."""
    from pocket_tts import TTSModel

    from scripts.tiny_pocket import build_pocket

    out = build_pocket(tmp_path_factory.mktemp("pocket"), languages=("es",))
    return TTSModel.load_model(config=str(out / "es.yaml"), quantize=request.param)


# -- (a) the list resolves ------------------------------------------------------------------
def test_every_listed_name_resolves_in_the_installed_package():
    internals.check_installed(cached=False)


def test_every_listed_name_resolves_on_a_loaded_model(tiny_model):
    internals.check_installed(tiny_model, cached=False)
    assert internals.frame_loop_problem(tiny_model) is None


def test_the_verified_version_is_the_pinned_one():
    pins = re.findall(r"^pocket-tts==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pins == [internals.VERIFIED_VERSION] == [internals.installed_version()]


def test_the_list_is_consistent():
    assert not set(internals.SERVING) & set(internals.FRAME_LOOP)
    assert set(internals.SIGNATURES) <= set(internals.INTERNALS)
    assert set(internals._MODEL_CHECKS) <= set(internals.INTERNALS)
    for name, reason in internals.INTERNALS.items():
        assert name.startswith("pocket_tts") and ":" in name, name
        assert reason.strip() and "\n" not in reason, name
        assert name not in internals.PUBLIC, name


# -- (b) the source: every reach-in is listed, listed names are used, nothing else reaches in --
def _parse(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _pocket_imports(tree) -> dict[str, str]:
    """Local name -> listed form ("module:Name") of every `from pocket_tts... import` in `tree`."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(alias.name.split(".")[0] == "pocket_tts" for alias in node.names), \
                f"line {node.lineno}: import names from pocket_tts (`from ... import ...`), not modules"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pocket_tts":
            for alias in node.names:
                found[alias.asname or alias.name] = f"{node.module}:{alias.name}"
    return found


def _owners() -> dict[str, type]:
    """Every class the list names members of, by its listed form."""
    owners = {}
    for name in LISTED:
        module, path, member = internals._parse(name)
        owner = path if member is not None else path.rpartition(".")[0]
        if owner:
            owners[f"{module}:{owner}"] = internals._lookup(module, owner)
    return owners


def _entry(owner: str, attr: str, owners: dict[str, type]) -> str | None:
    """The listed name that `attr` of an object of class `owner` is, through the class's bases."""
    cls = owners.get(owner) or internals._lookup(*owner.split(":"))
    for listed_owner, listed_cls in owners.items():
        if listed_cls in cls.__mro__:
            for candidate in (f"{listed_owner}.{attr}", f"{listed_owner}().{attr}"):
                if candidate in LISTED:
                    return candidate
    return None


def _typed_names(function, imports: dict[str, str]) -> dict[str, str]:
    """Names a function annotates with a pocket_tts class: its parameters and annotated locals."""
    annotated = [(arg.arg, arg.annotation) for arg in function.args.posonlyargs + function.args.args
                 + function.args.kwonlyargs]
    annotated += [(node.target.id, node.annotation) for node in ast.walk(function)
                  if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    typed = {}
    for name, annotation in annotated:
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            annotation = ast.parse(annotation.value, mode="eval").body
        if isinstance(annotation, ast.Name) and annotation.id in imports:
            typed[name] = imports[annotation.id]
    return typed


def _internals_reach_ins() -> tuple[set[str], list[str]]:
    """(listed names the reaching-in modules use, what they use without a listed name) from their source."""
    owners = _owners()
    members = {internals._parse(name)[2] or name.rsplit(".", 1)[-1] for name in internals.INTERNALS}
    used, unlisted = set(), []
    for module in REACHING_IN:
        tree = _parse(POCKET / module)
        imports = _pocket_imports(tree)
        used |= set(imports.values())
        unlisted += [f"{module}: import {name}" for name in imports.values() if name not in LISTED]
        _reach_ins(module, tree, imports, owners, members, used, unlisted)
    return used, unlisted


def _reach_ins(module, tree, imports, owners, members, used, unlisted) -> None:
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        typed = _typed_names(function, imports)
        for node in ast.walk(function):
            if not isinstance(node, ast.Attribute):
                continue
            where = f"{module}: {function.name}, line {node.lineno}: .{node.attr}"
            base = node.value
            if isinstance(base, ast.Name) and base.id in typed:
                entry = _entry(typed[base.id], node.attr, owners)
                if entry:
                    used.add(entry)
                elif not hasattr(torch.nn.Module, node.attr):
                    unlisted.append(f"{where} of {typed[base.id]}")
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id in typed:
                unlisted.append(f"{where}: hold {base.value.id}.{base.attr} in a name annotated with its class")
            elif node.attr.startswith("_") and not node.attr.startswith("__"):
                unlisted.append(f"{where} on an object not annotated with its class")
            elif node.attr in members and not hasattr(torch.Tensor, node.attr):
                unlisted.append(f"{where} looks like a listed member: annotate what it is read on")


def test_every_reach_in_of_pocket_internals_is_listed():
    _, unlisted = _internals_reach_ins()
    assert not unlisted, "\n".join(unlisted)


def test_every_listed_name_is_used():
    """The list is exact: a name no code reads is not checked at load either."""
    used, _ = _internals_reach_ins()
    layouts = {name for name in internals.INTERNALS if "init_state()[" in name}
    assert set(internals.INTERNALS) - layouts - used == set()


@pytest.mark.parametrize("path", ENGINE_MODULES, ids=lambda path: str(path.relative_to(ENGINES)))
def test_other_engine_modules_use_only_public_pocket_tts_names(path):
    tree = _parse(path)
    imports = _pocket_imports(tree)
    assert set(imports.values()) <= set(internals.PUBLIC), imports
    public_members = {name.rpartition(".")[2] for name in internals.PUBLIC if name.startswith("pocket_tts:TTSModel.")}
    # A module that uses pocket-tts holds its model in `self._model` (other engines hold their own).
    holds_pocket_model = bool(imports) or path.parent.name == "pocket"
    reach_ins = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        # The engine holds the package's model in `self._model`, and in names bound to it.
        holders = {target.id for node in ast.walk(function) if isinstance(node, ast.Assign)
                   and ast.unparse(node.value) == "self._model" for target in node.targets
                   if isinstance(target, ast.Name)}
        for node in ast.walk(function):
            if not isinstance(node, ast.Attribute):
                continue
            base = ast.unparse(node.value)
            on_model = holds_pocket_model and (base == "self._model" or base in holders)
            on_class = isinstance(node.value, ast.Name) and node.value.id in imports
            if (on_model or on_class) and node.attr not in public_members:
                reach_ins.append(f"{function.name}, line {node.lineno}: {base}.{node.attr}")
    assert not reach_ins, "go through engines/pocket/internals.py:\n" + "\n".join(reach_ins)


# -- (c) what a missing or changed name looks like -------------------------------------------
def test_a_missing_package_name_is_named_with_the_installed_version(monkeypatch):
    from pocket_tts import TTSModel

    monkeypatch.delattr(TTSModel, "_estimate_max_gen_len")
    with pytest.raises(internals.PocketInternalsError) as raised:
        internals.check_installed(cached=False)
    message = str(raised.value)
    assert "pocket_tts:TTSModel._estimate_max_gen_len" in message
    assert f"pocket-tts {internals.installed_version()} lacks" in message
    assert raised.value.missing == ["pocket_tts:TTSModel._estimate_max_gen_len"]


def test_a_missing_module_is_named(monkeypatch):
    real = importlib.import_module

    def without_text_chunking(name, *args, **kwargs):
        if name == "pocket_tts.models.text_chunking":
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_text_chunking)
    with pytest.raises(internals.PocketInternalsError, match="no module pocket_tts.models.text_chunking") as raised:
        internals.check_installed(cached=False)
    assert set(raised.value.missing) == {name for name in internals.INTERNALS
                                         if name.startswith("pocket_tts.models.text_chunking:")}


def test_a_changed_signature_is_named(monkeypatch):
    from pocket_tts.models import text_chunking

    monkeypatch.setattr(text_chunking, "prepare_text_prompt", lambda text, rules: (text, 1))
    with pytest.raises(internals.PocketInternalsError, match=r"prepare_text_prompt \(takes \(text, rules\)"):
        internals.check_installed(cached=False)


def test_a_missing_model_attribute_is_named(tiny_model, monkeypatch):
    monkeypatch.delattr(tiny_model.flow_lm, "ldim")
    with pytest.raises(internals.PocketInternalsError) as raised:
        internals.check_installed(tiny_model, cached=False)
    assert raised.value.missing == ["pocket_tts.models.flow_lm:FlowLMModel().ldim"]
    # Only the frame loop reads it: the engine would speak a sentence per step instead.
    internals.check_installed(tiny_model, internals.SERVING, cached=False)
    assert "FlowLMModel().ldim" in internals.frame_loop_problem(tiny_model)


def test_a_changed_state_layout_is_named(tiny_model, monkeypatch):
    from pocket_tts.modules.attention import StreamingMultiheadAttention

    real = StreamingMultiheadAttention.init_state
    monkeypatch.setattr(StreamingMultiheadAttention, "init_state",
                        lambda self, batch_size, sequence_length: {
                            **real(self, batch_size, sequence_length),
                            "cache": torch.zeros(2, sequence_length, batch_size, 1, 1)})
    with pytest.raises(internals.PocketInternalsError, match=r"init_state\(\)\['cache'\] \(a KV cache"):
        internals.check_installed(tiny_model, cached=False)


def test_a_flow_type_without_a_decoder_is_named(tiny_model, monkeypatch):
    monkeypatch.setattr(tiny_model.flow_lm, "flow_type", "new_sampler")
    assert "no decoder here for flow_type 'new_sampler'" in internals.frame_loop_problem(tiny_model)


def test_nothing_of_the_model_is_there_on_something_else():
    problem = internals.frame_loop_problem(object())
    assert "lacks" in problem and "no TTSModel in the model" in problem
