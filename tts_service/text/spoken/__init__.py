"""Spoken forms: numbers, money, dates, times, units and abbreviations written out as a person says
them, because the engines read figures badly or not at all.

    say("Cuesta 1.500 €.", "es")  -> "Cuesta mil quinientos euros."
    readings(text, language)      -> the same work as spans of `text`, to map spoken words back
    read_as(kind, text, language) -> one stretch read the way markup asks, or None

Pure Python over CLDR's number rules (`unicode_rbnf`); linear time; never raises.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re

from .common import Number, Reading, Rules, apply, roman_value

__all__ = ["LANGUAGES", "Reading", "apply", "ends_in_abbreviation", "not_sentence_ends", "read_as", "readings",
           "readings_after", "rules_for", "say"]

logger = logging.getLogger(__name__)

LANGUAGES = frozenset({"es", "en", "de", "fr", "it", "pt"})
_RULES: dict[str, Rules] = {}


def rules_for(language: str) -> Rules | None:
    """The rules for `language` ("es", "es-MX" and "es_419" alike), loaded once; None when it has none."""
    code = (language or "").lower().replace("_", "-").split("-")[0]
    if code not in LANGUAGES:
        return None
    rules = _RULES.get(code)
    if rules is None:
        rules = _RULES[code] = importlib.import_module(f"{__name__}.{code}").RULES
    return rules


@functools.cache
def not_sentence_ends() -> frozenset[str]:
    """Words (without their dot) after which a dot never ends a sentence, in any language: titles
    before a name ("Sr.", "Dr.") and the first parts of abbreviations written in several ("EE. UU.",
    "p. ej."), so that a stream is cut into sentences where the whole text would be."""
    words = set()
    for code in LANGUAGES:
        rules = rules_for(code)
        words |= {title.rstrip(".") for title in rules.titles}
        for key in rules.abbreviations:
            pieces = key.split(" ")
            words |= {piece.rstrip(".") for piece in pieces[:-1]}
    return frozenset(word for word in words if word)


@functools.cache
def _dotted_ends() -> frozenset[str]:
    return frozenset(key.split(" ")[-1] for code in LANGUAGES for key in rules_for(code).abbreviations
                     if key.endswith("."))


def ends_in_abbreviation(text: str) -> bool:
    """Whether `text`'s last word is an abbreviation's dotted end ("UU.", "etc.", "aprox."): its dot
    may end the sentence or not, which only the next word tells."""
    words = text.split()
    return bool(words) and words[-1] in _dotted_ends()


def readings(text: str, language: str) -> list[Reading]:
    """Each stretch of `text` that is read differently from how it is written, in order."""
    try:
        rules = rules_for(language)
        if rules is None or not text:
            return []
        return rules.readings(text)
    except Exception:  # noqa: BLE001 - a figure no rule reads stays as written, never an error
        logger.exception("spoken forms failed; text left as written")
        return []


def say(text: str, language: str) -> str:
    """`text` with its figures and abbreviations written out as they are spoken."""
    return apply(text, readings(text, language))


def readings_after(context: str, text: str, language: str) -> list[Reading]:
    """The readings of `text` (spans of it) when `context` came just before it (a stream's words
    already read), read for what it tells of `text` ("siglo" before "XXI", a sentence's start)."""
    if not context:
        return readings(text, language)
    shift = len(context)
    return [Reading(r.start - shift, r.end - shift, r.spoken) for r in readings(context + text, language)
            if r.start >= shift]


_TELEPHONE = re.compile(r"\+?[\d ().\-/]{3,40}")


def read_as(kind: str, text: str, language: str) -> str | None:
    """`text` read as `kind` ("characters", "cardinal", "ordinal", "date", "time", "telephone",
    "verbatim"); None when it cannot be read that way."""
    try:
        rules = rules_for(language)
        kind = (kind or "").strip().lower()
        stripped = (text or "").strip()
        if not stripped:
            return None
        if kind in ("characters", "spell-out", "verbatim", "letters"):
            return _characters(stripped, rules, verbatim=kind == "verbatim")
        if rules is None:
            return None
        if kind in ("cardinal", "number"):
            number = _number(stripped, rules)
            if number is None:
                return None
            sign = rules.words["minus"] + " " if stripped[:1] in "-−" else ""
            return sign + (rules.number_words(number) or "") or None
        if kind == "ordinal":
            digits = re.fullmatch(r"(\d{1,9})\.?\s*[ºª°]?(?:st|nd|rd|th|er|re|e|ème|o|a)?\.?", stripped)
            value = int(digits.group(1)) if digits else roman_value(stripped)
            if value is None:
                return None
            feminine = stripped.endswith(("ª", "a", "re"))
            return rules.ordinal(value, "f" if feminine else "m")
        if kind == "date":
            date = rules.parse_date(stripped, "")
            if date is None:
                return None
            return rules.date_words(*date)
        if kind == "time":
            match = re.fullmatch(r"(\d{1,2})(?:[:.h]\s?(\d{2}))?(?::(\d{2}))?\s*h?", stripped)
            if match is None:
                return None
            hour, minute = int(match.group(1)), int(match.group(2) or 0)
            second = int(match.group(3)) if match.group(3) else None
            if hour > 24 or minute > 59 or (second or 0) > 59:
                return None
            return rules.time_words(hour, minute, second, "", False)
        if kind in ("telephone", "phone"):
            if not _TELEPHONE.fullmatch(stripped) or not any(c.isdigit() for c in stripped):
                return None
            groups = re.findall(r"\+|\d+", stripped)
            return " ".join(rules.words["plus"] if g == "+" else rules.digits(g) for g in groups)
        return None
    except Exception:  # noqa: BLE001 - markup that cannot be read is said as written
        logger.exception("say-as failed; text left as written")
        return None


def _number(text: str, rules: Rules) -> Number | None:
    text = text.lstrip("-−+")
    return rules.parse(text) if text[:1].isdigit() else None


def _characters(text: str, rules: Rules | None, verbatim: bool) -> str:
    """One character at a time: letters by their names ("SQL": "ese cu ele"), digits as digit
    words, where the language has them; marks only when `verbatim`."""
    out = []
    for ch in text:
        if ch.isspace():
            continue
        if ch.isdigit() and rules is not None:
            out.append(rules.cardinal(int(ch)) or ch)
        elif ch.isalpha() and rules is not None and ch.lower() in rules.letter_names:
            out.append(rules.letter_names[ch.lower()])
        elif ch.isalnum() or verbatim:
            out.append(ch)
    return " ".join(out)
