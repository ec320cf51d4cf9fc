#!/usr/bin/env python3
"""Text cleaning on adversarial input: worst time at TTS_MAX_CHARS, and how it grows at ten times that.

    .venv/bin/python bench/text_cleaning.py                      # the package's tts_service/text/markdown.py
    .venv/bin/python bench/text_cleaning.py --rev HEAD~3 --timeout 20 --no-scale   # an older one

Each shape (runs of every Markdown mark, unclosed fences, nested brackets, `3000 newlines + x`, ...)
is cleaned the way a request is: speakable, spoken forms (figures and abbreviations written out, in
Spanish), then sentences and pieces from the result, plus sentences of the raw text (what the service
does with "clean": false). Last, the time the spoken forms add to a 3000-character answer full of figures. Every shape runs in a child process with
a time limit, so a backtracking cleaner shows up as ">limit" instead of stalling the run. Prints the
time per shape at SIZE and 10 x SIZE characters and their ratio: about 10 means linear, about 100
quadratic.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = 3000  # TTS_MAX_CHARS's default


def _fill(unit: str, size: int, head: str = "", tail: str = "") -> str:
    """`head` + `unit` repeated + `tail`, `size` characters long."""
    body = size - len(head) - len(tail)
    return head + (unit * (body // len(unit) + 1))[:body] + tail


def shapes(size: int = SIZE) -> dict[str, str]:
    """Inputs that make backtracking patterns or naive parsers slow, each `size` characters long."""
    out = {
        "newlines + x": _fill("\n", size, tail="x"),
        "'# a' + spaces + 'b'": _fill(" ", size, head="# a", tail="b"),
        "spaces + x": _fill(" ", size, tail="x"),
        "tabs and newlines": _fill("\t\n ", size, tail="x"),
        "one long word": _fill("a", size),
        "'*_' alternation": _fill("*_", size),
        "'_*' alternation + x": _fill("_*", size, tail="x"),
        "'**a' unclosed": _fill("**a", size),
        "'*a' unclosed": _fill("*a", size),
        "'_a _' alternation": _fill("_a _", size),
        "'~~a' unclosed": _fill("~~a", size),
        "'* ' rule-like + x": _fill("* ", size, tail="x"),
        "'- ' nested lists + x": _fill("- ", size, tail="x"),
        "'-_*' rule-like + x": _fill("-_* ", size, tail="x"),
        "'> ' nested quotes + x": _fill("> ", size, tail="x"),
        "'1. ' nested lists": _fill("1. ", size),
        "nested brackets '['": _fill("[", size),
        "'[[..]]' balanced": "[" * (size // 2) + "]" * (size - size // 2),
        "'[a..](b)' long label": _fill("[a", size, tail="](b)"),
        "'*..a..*' nested": "*" * (size // 2) + "a" + "*" * (size - size // 2 - 1),
        "'* a' list lines": _fill("* a\n", size),
        "setext headings": _fill("a\n=\n", size),
        "one-column tables": _fill("|a|\n|-|\n", size),
        "'[a](' unclosed links": _fill("[a](", size),
        "'![' images": _fill("![", size),
        "'[a]: ' definitions": _fill("[a]:\n", size),
        "'<' run": _fill("<", size),
        "'<a ' unclosed tags": _fill("<a ", size),
        "'<a b=\"' quoted": _fill("<a b=\"", size),
        "'a<b and c>' prose": _fill("a<b and c>", size),
        "'<!--' comments": _fill("<!--", size),
        "'<http://' autolinks": _fill("<http://", size),
        "'(' run": _fill("(", size),
        "'`a' backticks": _fill("`a", size),
        "'``a`' backticks": _fill("``a`", size),
        "unclosed fence": _fill("x", size, head="```python\n"),
        "fences": _fill("```\n", size),
        "table": "| Command | Meaning |\n|---|---|\n" + _fill("| ls | list |\n", size - 34),
        "wide table, empty rows": _fill("|a", size // 3) + "|\n" + _fill("|-", size // 3) + "|\n"
                                  + _fill("|\n", size - 2 * (size // 3) - 4),
        "'$1' alternation": _fill("$1", size),
        "'1.' run": _fill("1.", size),
        "'1%' alternation": _fill("1%", size),
        "digits + '€'": _fill("1", size, tail=" €"),
        "'1°' alternation": _fill("1°", size),
        "'a&' alternation": _fill("a&", size),
        "' + ' alternation": _fill(" + ", size),
        "URL": _fill("a", size, head="http://"),
        "'www.' run": _fill("www.", size),
        "'http://' run": _fill("http://", size),
        "'a@' e-mails": _fill("a@", size),
        "'a.' + '@'": _fill("a.", size, tail="@"),
        "'a@b.' e-mails": _fill("a@b.", size),
        "'Dr. ' abbreviations": _fill("Dr. ", size),
        "'A. ' initials": _fill("A. ", size),
        "'. ' run": _fill(". ", size),
        "'.\" ' quotes": _fill(".\" ", size),
        "'» ' guillemets": _fill("» ", size),
        "'.' + spaces + 'a'": _fill(" ", size, head="Hola.", tail="a"),
        "emoji": _fill("😀", size),
        "zero-width and bidi": _fill("\u200b\u202e\u2066a", size),
        "lone surrogates": _fill("\ud800a", size),
        "combining marks": _fill("\u0301\u0316", size, head="a"),
        "'&#x202E;' entities": _fill("&#x202E;", size),
        "terminal escapes": _fill("\x1b[1;31", size, tail="m"),
        "'\\\\' escapes": _fill("\\", size),
        "'1,' run": _fill("1,", size),
        "'1:' run": _fill("1:", size),
        "'1/' run": _fill("1/", size),
        "'1-' run": _fill("1-", size),
        "'1 ' spaced digits": _fill("1 ", size),
        "'612 ' phone-like": _fill("612 ", size),
        "'+1 ' run": _fill("+1 ", size),
        "'-1' run": _fill("-1", size),
        "'$1,' run": _fill("$1,", size),
        "'1.º' ordinals": _fill("1.º", size),
        "'1 €' amounts": _fill("1 € ", size),
        "'Felipe ' + 'VI'": _fill("Felipe ", size, tail="VI"),
        "'I ' letters": _fill("I ", size),
        "'p. ej. ' abbreviations": _fill("p. ej. ", size),
        "digits": _fill("7", size),
        "'.,:/-' separators": _fill(".,:/-", size),
    }
    for mark in "*_#-+=|~`>[]<!\\$&%.:":
        out[f"'{mark}' run"] = _fill(mark, size)
    return out


ANSWER = ("Según el informe del 3/12/2026, el Sr. García pagó 1.500,25 € por 21 páginas y 200 licencias; "
          "el 25% de los 31.000 usuarios usa iOS 17 o Python 3.12. La reunión es a las 14:30 en la Avda. "
          "de la Paz, n.º 7 (tel. 612 345 678). El siglo XXI, Felipe VI y los años 80: 3-5 días, 2-1, "
          "120 km/h, -5 °C, 2,5 kg, 1/2 taza, 1.er lugar, 3.º piso, 2.ª vez, p. ej., etc. ")


def load(path: Path):
    """A text module loaded from `path` (the package's, or an older one out of git)."""
    sys.path.insert(0, str(ROOT))
    # In the package's text folder, so that its own relative imports (the spoken forms) resolve.
    spec = importlib.util.spec_from_file_location("tts_service.text.text_under_test", path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tts_service.text"
    spec.loader.exec_module(module)
    return module


def load_spoken():
    """The spoken-forms package, loaded on its own (without the service around it); None before it existed."""
    init = ROOT / "tts_service" / "text" / "spoken" / "__init__.py"
    if not init.exists():
        return None
    spec = importlib.util.spec_from_file_location("spoken_under_test", init,
                                                  submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["spoken_under_test"] = module
    spec.loader.exec_module(module)
    return module


def clean(module, text: str, spoken_forms=None) -> None:
    """What a request does with its text: speakable, spoken forms, sentences, pieces; and sentences of
    the raw text."""
    spoken = module.speakable(text, "es")
    if spoken_forms is not None:
        spoken = spoken_forms.say(spoken, "es")
    module.group_sentences(module.split_sentences(spoken), groups=4)
    module.split_sentences(text)


def time_answer(size: int = SIZE, repeat: int = 50) -> tuple[float, float] | None:
    """Best and median milliseconds the spoken forms take on a `size`-character answer full of figures."""
    spoken_forms = load_spoken()
    if spoken_forms is None:
        return None
    text = (ANSWER * (size // len(ANSWER) + 1))[:size]
    spoken_forms.say(text, "es")  # rules and number words loaded once, as in the running service
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        spoken_forms.say(text, "es")
        runs.append(time.perf_counter() - start)
    runs.sort()
    return runs[0] * 1000, runs[len(runs) // 2] * 1000


def time_transcript(size: int = SIZE, repeat: int = 50) -> tuple[float, float]:
    """Best and median milliseconds of the transcript a session keeps for the same answer's word events."""
    sys.path.insert(0, str(ROOT))
    from tts_service.text.checks import prepare_text
    from tts_service.text.written import Transcript

    text = (ANSWER * (size // len(ANSWER) + 1))[:size]
    replaced: list = []
    spoken = prepare_text(text, "es", True, replaced=replaced)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        Transcript().add(spoken, replaced)
        runs.append(time.perf_counter() - start)
    runs.sort()
    return runs[0] * 1000, runs[len(runs) // 2] * 1000


def time_one(path: Path, name: str, size: int, repeat: int) -> float:
    """Best of `repeat` runs (one when the first is already slow), in CPU seconds of this process.

    CPU time rather than wall time: on a shared machine other processes would otherwise blur the ratios.
    """
    module = load(path)
    spoken_forms = load_spoken()
    text = shapes(size)[name]
    clean(module, "# Warm **up** ☕ 1.500 €", spoken_forms)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        clean(module, text, spoken_forms)
        best = min(best, time.process_time() - start)
        if best > 1:
            break
    return best


def measure(path: Path, name: str, size: int, repeat: int, timeout: float) -> float | None:
    """Seconds in a child process; None when it ran past `timeout`."""
    command = [sys.executable, __file__, "--child", json.dumps([str(path), name, size, repeat])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(done.stdout.split()[-1])


def shown(seconds: float | None, timeout: float) -> str:
    return f">{timeout:g} s" if seconds is None else f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="bench tts_service/text.py as of this git revision instead")
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--timeout", type=float, default=60, help="seconds per shape before giving up")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-scale", action="store_true", help="skip the 10 x size run")
    parser.add_argument("--only", help="shapes whose name contains this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        path, name, size, repeat = json.loads(args.child)
        print(time_one(Path(path), name, size, repeat))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = ROOT / "tts_service" / "text" / "markdown.py"
        if args.rev:
            path = Path(folder) / "text.py"
            for old in ("tts_service/text/markdown.py", "tts_service/text.py"):  # before and after the split
                done = subprocess.run(["git", "show", f"{args.rev}:{old}"], cwd=ROOT, capture_output=True, text=True)
                if done.returncode == 0:
                    path.write_text(done.stdout)
                    break
            else:
                raise SystemExit(f"no text module at {args.rev}")
        names = [n for n in shapes(args.size) if not args.only or args.only in n]
        big = args.size * 10
        print(f"{'shape':<28} {f'{args.size} chars':>12} {f'{big} chars':>12} {'ratio':>7}")
        worst: dict[int, tuple[float, str]] = {}
        ratios = []
        for name in names:
            small = measure(path, name, args.size, args.repeat, args.timeout)
            large = None if args.no_scale or small is None else measure(path, name, big, args.repeat, args.timeout)
            ratio = f"{large / small:.1f}" if small and large else "-"
            if small and large and small > 1e-3:  # below a millisecond the ratio is mostly noise
                ratios.append((large / small, name))
            print(f"{name:<28} {shown(small, args.timeout):>12} "
                  f"{'-' if args.no_scale else shown(large, args.timeout):>12} {ratio:>7}", flush=True)
            for size, seconds in ((args.size, small), (big, large)):
                if size == big and args.no_scale:
                    continue
                seconds = float("inf") if seconds is None else seconds
                if seconds > worst.get(size, (-1.0, ""))[0]:
                    worst[size] = (seconds, name)
        for size, (seconds, name) in worst.items():
            print(f"worst at {size} chars: {shown(None if seconds == float('inf') else seconds, args.timeout)}"
                  f" ({name})")
        if ratios:
            ratio, name = max(ratios)
            print(f"largest 10x/1x ratio over shapes above 1 ms: {ratio:.1f} ({name}); 10 is linear")
        answer = time_answer(args.size)
        if answer:
            print(f"spoken forms on a {args.size}-character answer full of figures: best {answer[0]:.2f} ms, "
                  f"median {answer[1]:.2f} ms")
        if not args.rev:
            mapped = time_transcript(args.size)
            print(f"the same answer's words mapped back to what was written (text/written.py): "
                  f"best {mapped[0]:.2f} ms, median {mapped[1]:.2f} ms")


if __name__ == "__main__":
    main()
