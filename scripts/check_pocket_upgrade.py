#!/usr/bin/env python3
"""Whether the Pocket engine's fast path still holds on another pocket-tts release, before the pin moves.

    python scripts/check_pocket_upgrade.py                  # the newest pocket-tts on the index
    python scripts/check_pocket_upgrade.py --version 4.1.0  # a given release
    python scripts/check_pocket_upgrade.py --keep DIR       # keep the scratch environment in DIR

The engine drives pocket-tts's internals (tts_service/engines/pocket_internals.py lists each one)
and is pinned to the release it was compared against. This installs the candidate release with
the rest of requirements.txt in a scratch virtual environment (its own packages only), and there:
resolves every listed name against the package, builds the tiny Spanish model with
scripts/tiny_pocket.py, resolves the names set on a loaded model, and compares the engine's
batched frame loop with the package's own `generate_audio` sample for sample, int8 and float32,
as tests/protocols/test_pocket_batching.py does (scripts/pocket_parity.py). It prints what it found and
exits 0 when the fast path holds, 1 when it does not, 2 when the release cannot be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- outside: the scratch environment ---------------------------------------------------------
def newest_version(python: str) -> str | None:
    """The newest pocket-tts release on the configured index, as pip sees it."""
    result = subprocess.run([python, "-m", "pip", "index", "versions", "pocket-tts"],
                            capture_output=True, text=True, timeout=300)
    found = re.search(r"^pocket-tts \(([^)]+)\)", result.stdout, re.MULTILINE)
    return found.group(1) if found else None


def requirements_without_pocket_tts() -> list[str]:
    """requirements.txt as it stands, less its pocket-tts pin."""
    lines = []
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and not re.match(r"pocket[-_]tts\b", requirement, re.IGNORECASE):
            lines.append(requirement)
    return lines


def pinned_version() -> str | None:
    found = re.search(r"^pocket-tts==(\S+)", (ROOT / "requirements.txt").read_text(encoding="utf-8"), re.MULTILINE)
    return found.group(1) if found else None


def install(workdir: Path, version: str | None) -> tuple[Path | None, str]:
    """A virtual environment in `workdir` with the candidate; (its python, or None, and pip's last words)."""
    env_dir = workdir / "venv"
    log(f"creating a virtual environment in {env_dir}")
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    requirements = workdir / "requirements.txt"
    candidate = f"pocket-tts=={version}" if version else "pocket-tts"
    requirements.write_text("\n".join(requirements_without_pocket_tts() + [candidate]) + "\n")
    log(f"installing {candidate} with the rest of requirements.txt (torch alone is large: minutes)")
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None, (result.stderr or result.stdout)[-3000:]
    return python, ""


def report(found: dict, newest: str | None, wanted: str | None) -> bool:
    """Print what the scratch environment found; True when the fast path holds."""
    version = found.get("version")
    print(f"pocket-tts: pinned {pinned_version()}, asked for {wanted or 'the newest'}"
          f"{f' (newest on the index: {newest})' if newest else ''}, installed {version}")
    holds = True
    if found.get("package_problems"):
        holds = False
        print(f"internals: {len(found['package_problems'])} listed name(s) missing or changed in the package:")
        for name, why in found["package_problems"]:
            print(f"  {name}: {why}")
    else:
        print(f"internals: all {found['listed']} listed names resolve in the package")
    if found.get("model_error"):
        holds = False
        print(f"tiny model: {found['model_error']}")
    elif found.get("model_problems"):
        holds = False
        print(f"internals on a loaded model: {len(found['model_problems'])} missing or changed:")
        for name, why in found["model_problems"]:
            print(f"  {name}: {why}")
    elif "model_problems" in found:
        print("internals on a loaded model: all resolve")
    for weights, parity in found.get("parity", {}).items():
        if "error" in parity:
            holds = False
            print(f"samples, {weights}: could not compare: {parity['error']}")
            continue
        holds &= parity["holds"]
        print(f"samples, {weights}: alone vs the package's generate_audio {parity['alone_vs_package']:.1e} "
              f"(allowed {parity['alone_tolerance']:.0e}); a row of a batch of 4 vs alone "
              f"{parity['batch_vs_alone']:.1e} (allowed {parity['batch_tolerance']:.0e}); lengths "
              f"{'agree' if parity['lengths_match'] else 'DIFFER'}: {'match' if parity['holds'] else 'NO MATCH'}")
    if not found.get("parity"):
        holds = False
        print("samples: not compared: the engine cannot run without the names above")
    if holds:
        print(f"verdict: the fast path holds on pocket-tts {version}.")
        if version != pinned_version():
            print(f"  To adopt it: pin pocket-tts=={version} in requirements.txt and set VERIFIED_VERSION in "
                  "tts_service/engines/pocket_internals.py, then run the test suite.")
    else:
        print(f"verdict: the fast path does NOT hold on pocket-tts {version}: keep the pin, or adapt "
              "tts_service/engines/pocket_internals.py to what changed.")
    return holds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="the pocket-tts release to check (default: the newest)")
    parser.add_argument("--keep", type=Path, help="build the scratch environment here and keep it")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # run in the scratch environment
    args = parser.parse_args(argv)
    if args.inside:
        return inside(args.inside)
    started = time.monotonic()
    newest = None if args.version else newest_version(sys.executable)
    wanted = args.version or newest
    workdir = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="pocket-upgrade-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        python, pip_error = install(workdir, wanted)
        if python is None:
            print(f"pocket-tts {wanted or '(newest)'} cannot be installed with the rest of requirements.txt:")
            print(pip_error.rstrip())
            return 2
        log("checking the internals and comparing samples in the scratch environment")
        result_file = workdir / "found.json"
        # The project's own code, run by the scratch environment's interpreter and packages only.
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        run = subprocess.run([str(python), str(Path(__file__).resolve()), "--inside", str(result_file)],
                             cwd=workdir, env={**env, "TTS_TORCH_COMPILE": "off"}, capture_output=True, text=True)
        if not result_file.exists():
            print("the check could not run in the scratch environment:")
            print((run.stderr or run.stdout)[-3000:].rstrip())
            return 1
        holds = report(json.loads(result_file.read_text()), newest, args.version)
        log(f"done in {time.monotonic() - started:.0f} s")
        return 0 if holds else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


# -- inside: the checks, run by the scratch environment's interpreter ---------------------------
def inside(result_file: Path) -> int:
    """Check the installed pocket-tts and write what was found to `result_file` as JSON."""
    sys.path.insert(0, str(ROOT))
    import logging

    logging.basicConfig(level=logging.ERROR)
    from tts_service.engines.pocket import internals as pocket_internals

    found: dict = {"version": pocket_internals.installed_version(), "listed": len(pocket_internals.INTERNALS)}
    try:
        pocket_internals.check_installed(cached=False)
        found["package_problems"] = []
    except pocket_internals.PocketInternalsError as exc:
        found["package_problems"] = exc.problems
    result_file.write_text(json.dumps(found))
    try:
        env = tiny_model_env(result_file.parent / "models")
    except Exception as exc:  # the builder reaches into the package too (scripts/tiny_pocket.py)
        found["model_error"] = f"scripts/tiny_pocket.py could not build it: {exc!r}"
        result_file.write_text(json.dumps(found))
        return 1
    found["model_problems"] = model_problems(pocket_internals, env)
    # The release under test is the one to verify: let the engine run its frame loop on it.
    pocket_internals.VERIFIED_VERSION = found["version"]
    found["parity"] = {}
    if not found["package_problems"] and not found["model_problems"]:
        from scripts import pocket_parity

        for weights, quantize in (("int8", "on"), ("float32", "off")):
            try:
                engine = pocket_parity.load_engine(env, "es", quantize=quantize)
                if not engine._frame_loop:
                    raise RuntimeError("the engine did not take the frame loop")
                found["parity"][weights] = pocket_parity.compare(engine, quantize)
            except Exception as exc:
                found["parity"][weights] = {"error": repr(exc)}
            result_file.write_text(json.dumps(found))
    result_file.write_text(json.dumps(found))
    return 0


def tiny_model_env(out: Path) -> dict[str, str]:
    """The tiny Spanish Pocket TTS model, and the settings that point the engine at it."""
    from scripts.tiny_pocket import build_pocket

    build_pocket(out, languages=("es",))
    return dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if line.strip())


def model_problems(pocket_internals, env: dict[str, str]) -> list:
    """The listed names set by constructors, and the state layouts, checked on the tiny model (int8)."""
    import warnings

    from pocket_tts import TTSModel

    warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
    model = TTSModel.load_model(config=env["TTS_POCKET_CONFIG"], quantize=True)
    on_instances = [name for name in pocket_internals.INTERNALS if "()" in name]
    try:
        pocket_internals.check_installed(model, on_instances, cached=False)
    except pocket_internals.PocketInternalsError as exc:
        return exc.problems
    return []


if __name__ == "__main__":
    raise SystemExit(main())
