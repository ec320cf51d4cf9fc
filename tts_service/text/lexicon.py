"""A pronunciation lexicon: written → spoken entries per language for brand names and acronyms
("Capibara6" → "Capibara seis", "SQL" → "ese cu ele"), read from an operator's file.

File format, UTF-8, one entry a line: `language<TAB>written<TAB>spoken`; `*` as language is every
language; `#` starts a comment line; blank lines are skipped. Every line is checked at load and the
first problem raised as a LexiconError naming the file and line, so a typo stops the start rather
than being spoken. Matching is whole words, case-sensitive, longest entry first, with one compiled
alternation per language (linear in the text).
"""

from __future__ import annotations

import hashlib
import re

from .spoken.common import Reading, apply

_LANGUAGE = re.compile(r"\*|[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")


class LexiconError(ValueError):
    """A lexicon file that cannot be used; the message names the file and line."""


def _code(language: str) -> str:
    return (language or "").lower().replace("_", "-").split("-")[0]


class Lexicon:
    """Written → spoken entries by language; `*` entries apply to every language."""

    def __init__(self, entries: dict[str, dict[str, str]] | None = None) -> None:
        self.entries = {language: dict(table) for language, table in (entries or {}).items()}
        self._patterns: dict[str, tuple[re.Pattern | None, dict[str, str]]] = {}

    @classmethod
    def load(cls, path: str) -> "Lexicon":
        """The lexicon in `path`; LexiconError on the first line that is not a valid entry."""
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise LexiconError(f"{path}: cannot read the lexicon ({error.__class__.__name__})") from None
        entries: dict[str, dict[str, str]] = {}
        seen: dict[tuple[str, str], int] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{path}, line {number}"
            fields = line.split("\t")
            if len(fields) != 3:
                raise LexiconError(f"{where}: expected 3 tab-separated fields (language, written, spoken), "
                                   f"found {len(fields)}")
            language, written, spoken = (field.strip() for field in fields)
            if not language or not written or not spoken:
                empty = "language" if not language else "written" if not written else "spoken"
                raise LexiconError(f"{where}: the {empty} field is empty")
            if not _LANGUAGE.fullmatch(language):
                raise LexiconError(f"{where}: {language!r} does not look like a language code (such as es, "
                                   f"en-US or *)")
            code = "*" if language == "*" else _code(language)
            if (code, written) in seen:
                raise LexiconError(f"{where}: {written!r} is already defined for {code} on line "
                                   f"{seen[(code, written)]}")
            seen[(code, written)] = number
            entries.setdefault(code, {})[written] = spoken
        return cls(entries)

    @property
    def fingerprint(self) -> str:
        """Changes whenever an entry does: part of the cache key of audio spoken with this lexicon."""
        listed = sorted((language, written, spoken) for language, table in self.entries.items()
                        for written, spoken in table.items())
        return hashlib.sha256(repr(listed).encode("utf-8")).hexdigest()[:16]

    def __len__(self) -> int:
        return sum(len(table) for table in self.entries.values())

    def _compiled(self, language: str) -> tuple[re.Pattern | None, dict[str, str]]:
        code = _code(language)
        cached = self._patterns.get(code)
        if cached is None:
            table = dict(self.entries.get("*", {}))
            table.update(self.entries.get(code, {}))
            if table:
                words = "|".join(re.escape(w) for w in sorted(table, key=len, reverse=True))
                pattern = re.compile(rf"(?<![\w])(?:{words})(?![\w])")
            else:
                pattern = None
            cached = self._patterns[code] = (pattern, table)
        return cached

    def readings(self, text: str, language: str) -> list[Reading]:
        """Each whole-word entry found in `text`, as spans to replace."""
        pattern, table = self._compiled(language)
        if pattern is None or not text:
            return []
        return [Reading(m.start(), m.end(), table[m.group()]) for m in pattern.finditer(text)]

    def apply(self, text: str, language: str) -> str:
        """`text` with every whole-word entry for `language` replaced by how it is spoken."""
        return apply(text, self.readings(text, language))


EMPTY = Lexicon()
