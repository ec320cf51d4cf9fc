"""Text handling: turning an LLM's Markdown into what a person would read aloud, and sentences."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlparse

# Words said for symbols and markers, per language (English is the fallback).
WORDS = {
    "es": {"and": "y", "percent": "por ciento", "euros": "euros", "dollars": "dólares", "at": "arroba",
           "code": "(fragmento de código)", "link": "enlace", "plus": "más", "degrees": "grados"},
    "en": {"and": "and", "percent": "percent", "euros": "euros", "dollars": "dollars", "at": "at",
           "code": "(code sample)", "link": "link", "plus": "plus", "degrees": "degrees"},
    "fr": {"and": "et", "percent": "pour cent", "euros": "euros", "dollars": "dollars", "at": "arobase",
           "code": "(extrait de code)", "link": "lien", "plus": "plus", "degrees": "degrés"},
    "de": {"and": "und", "percent": "Prozent", "euros": "Euro", "dollars": "Dollar", "at": "at",
           "code": "(Codebeispiel)", "link": "Link", "plus": "plus", "degrees": "Grad"},
    "it": {"and": "e", "percent": "per cento", "euros": "euro", "dollars": "dollari", "at": "chiocciola",
           "code": "(esempio di codice)", "link": "link", "plus": "più", "degrees": "gradi"},
    "pt": {"and": "e", "percent": "por cento", "euros": "euros", "dollars": "dólares", "at": "arroba",
           "code": "(exemplo de código)", "link": "link", "plus": "mais", "degrees": "graus"},
}

_CODE_BLOCK = re.compile(r"```.*?(?:```|$)|~~~.*?(?:~~~|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+", re.IGNORECASE)
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s*>+\s?", re.MULTILINE)
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE)
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$", re.MULTILINE)
_EMPHASIS = [re.compile(r"\*\*\*(.+?)\*\*\*"), re.compile(r"\*\*(.+?)\*\*"), re.compile(r"__(.+?)__"),
             re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"),
             re.compile(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])"), re.compile(r"~~(.+?)~~")]
_PERCENT = re.compile(r"(\d)\s*%")
_EURO = re.compile(r"(\d[\d.,]*)\s*€|€\s*(\d[\d.,]*)")
_DOLLAR = re.compile(r"\$\s*(\d[\d.,]*)|(\d[\d.,]*)\s*\$")
_DEGREES = re.compile(r"(\d)\s*°\s*([CF])?\b")
_STRAY = re.compile(r"[*_#|~^<>=\\{}\[\]`]+")
_TERMINAL = ".!?…:;,"


def _is_emoji(char: str) -> bool:
    if char in "\u200d\ufe0f\u20e3":
        return True
    category = unicodedata.category(char)
    code = ord(char)
    return category == "So" or 0x1F000 <= code <= 0x1FAFF or 0x2600 <= code <= 0x27BF


def _url_words(match: re.Match, words: dict) -> str:
    raw = match.group(0).rstrip(".,;:!?")
    host = urlparse(raw if "://" in raw else "http://" + raw).hostname or raw
    host = host.removeprefix("www.")
    return f"{words['link']} {host}" + match.group(0)[len(raw):]


def _end_line(line: str) -> str:
    line = line.strip()
    if line and line[-1] not in _TERMINAL:
        line += "."
    return line


def speakable(text: str, language: str = "en") -> str:
    """What a person would read aloud from an LLM's Markdown answer; numbers stay as digits."""
    words = WORDS.get(language, WORDS["en"])
    text = unicodedata.normalize("NFC", text)
    text = _CODE_BLOCK.sub(f"\n{words['code']}\n", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = re.sub(r"<((?:https?://|mailto:)[^>\s]+)>", r"\1", text)  # Markdown autolinks
    text = _URL.sub(lambda m: _url_words(m, words), text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)} {words['at']} {m.group(2)}", text)
    text = _HTML_TAG.sub(" ", text)
    text = _RULE.sub("\n", text)
    text = _TABLE_SEPARATOR.sub("", text)
    # Headings, list items and table rows become sentences of their own.
    text = _HEADING.sub(lambda m: _end_line(m.group(1)), text)
    lines = []
    for line in text.splitlines():
        is_item = bool(_LIST_ITEM.match(line))
        line = _QUOTE.sub("", _LIST_ITEM.sub("", line))
        if line.count("|") >= 2:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            line = ", ".join(c for c in cells if c)
            is_item = True
        lines.append(_end_line(line) if is_item else line)
    text = "\n".join(lines)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    text = _PERCENT.sub(rf"\1 {words['percent']}", text)
    text = _EURO.sub(lambda m: f"{m.group(1) or m.group(2)} {words['euros']}", text)
    text = _DOLLAR.sub(lambda m: f"{m.group(1) or m.group(2)} {words['dollars']}", text)
    text = _DEGREES.sub(lambda m: f"{m.group(1)} {words['degrees']}" + (f" {m.group(2)}" if m.group(2) else ""), text)
    text = "".join(" " if _is_emoji(c) else c for c in text)
    text = re.sub(r"(?<=\w)\s*&\s*(?=\w)", f" {words['and']} ", text)
    text = re.sub(r"(?<=\s)\+(?=\s)", words["plus"], text)
    text = _STRAY.sub(" ", text)
    # Paragraph breaks are pauses; single newlines inside a paragraph are spaces.
    paragraphs = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n|\n(?=\S)", text)]
    paragraphs = [p for p in paragraphs if p and any(ch.isalnum() for ch in p)]
    spoken = " ".join(_end_line(p) if i < len(paragraphs) - 1 else p for i, p in enumerate(paragraphs))
    spoken = re.sub(r"\s+([,.;:!?…])", r"\1", spoken)
    spoken = re.sub(r"([,;:])\1+", r"\1", spoken)
    spoken = re.sub(r"\.{2,}(?!\.)", ".", spoken) if "..." not in text else spoken
    return spoken.strip()


# A sentence ends at . ! ? … (and closing quotes) followed by space, unless the dot ends an abbreviation.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"'»”’)\]]*\s+(?=[^\sa-zà-ÿ])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:Sr|Sra|Srta|Sres|Dr|Dra|Mr|Mrs|Ms|Prof|St|etc|vs|approx|aprox|Ud|Uds|Vd|núm|No|pág|p|pp|"
    r"e\.g|i\.e|p\.ej|EE\.UU|a\.m|p\.m)|(?:^|\s)[A-ZÁÉÍÓÚÑ])\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences in order; abbreviations, initials, decimals, quotes and ¿…?/¡…! stay whole."""
    pieces, start = [], 0
    for match in _BOUNDARY.finditer(text):
        candidate = text[start:match.start()]
        if _ABBREVIATION.search(candidate.rstrip("\"'»”’)]")):
            continue
        pieces.append(text[start:match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def group_sentences(sentences: list[str], groups: int, max_chars: int = 600) -> list[str]:
    """Join consecutive sentences into at most `groups` pieces of similar length (each ≤ max_chars when possible)."""
    if not sentences:
        return []
    total = sum(len(s) for s in sentences)
    target = max(total / max(groups, 1), 1)
    pieces, current = [], ""
    for sentence in sentences:
        if current and (len(current) + len(sentence) > max_chars
                        or (len(current) >= target and len(pieces) < groups - 1)):
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    pieces.append(current)
    return pieces
