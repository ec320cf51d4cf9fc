"""Text handling: turning an LLM's Markdown into what a person would read aloud, and sentences.

Markdown is read by markdown-it-py, a CommonMark parser, and its token stream is walked (the way
markdown_it/renderer.py walks it to write HTML), so no pattern of ours guesses where emphasis, links,
code or tables end. What is left to do by hand runs in time linear in the input: character maps, one
pass over the words, and a few regular expressions that each match either a fixed-length string or
one run of a character class that nothing after it can also match, so the engine never backtracks
over more than that run (bench/text_cleaning.py times the adversarial shapes).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it import rules_block as markdown_rules

from .spoken import not_sentence_ends

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



def _bounded_table(state, start: int, end: int, silent: bool) -> bool:
    """GitHub's table rule, but a table never gets more cells than the whole text has characters.

    Rows shorter than the header are filled with empty cells, so a wide header over many `|` lines
    would make hundreds of thousands of tokens from 3000 characters; the rows given to the rule are
    capped by what is left of that budget (kept in the parse's env).
    """
    header = state.src[state.bMarks[start]:state.eMarks[start]]
    budget = state.env.setdefault("table_cells", len(state.src))
    rows = budget // (header.count("|") + 1)
    if rows < 1:
        return False
    before = len(state.tokens)
    found = markdown_rules.table(state, start, min(end, start + 2 + rows), silent)
    state.env["table_cells"] = budget - (len(state.tokens) - before) // 3
    return found


# CommonMark plus GitHub's tables and strikethrough, as LLMs write them. Indented code is off: an
# indented line in a chat answer is prose far more often than code (code comes fenced).
_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).disable("code")
_MARKDOWN.block.ruler.at("table", _bounded_table, {"alt": ["paragraph", "reference"]})

# markdown-it reports anything shaped like a tag as HTML, `<b and c>` in `a<b and c>d` included; a
# tag is only dropped when it names a real element and its attributes look like attributes.
_HTML_ELEMENTS = frozenset(
    "a abbr address article aside audio b bdi bdo big blockquote body br button caption center cite code col "
    "colgroup dd del details dfn div dl dt em embed fieldset figcaption figure font footer form h1 h2 h3 h4 h5 "
    "h6 head header hr html i iframe img input ins kbd label legend li link main mark meta nav noscript object "
    "ol option p picture pre q s samp script section select small source span strike strong style sub summary "
    "sup svg table tbody td textarea tfoot th thead time title tr tt u ul var video wbr".split())
_HTML_BREAKS = frozenset("address article aside blockquote br div dd dl dt footer h1 h2 h3 h4 h5 h6 header hr "
                         "li main nav ol p pre section table tbody tfoot thead tr ul".split())
_HTML_BOOLEAN_ATTRIBUTES = frozenset("allowfullscreen async autofocus autoplay checked controls default defer "
                                     "disabled hidden loop multiple muted novalidate open readonly required "
                                     "reversed selected".split())
_HTML_SILENT_BLOCKS = ("<script", "<style", "<!--")

# Each pattern below matches a fixed string, or one run of a class that what follows cannot continue.
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w.-]+")
_NUMBER = re.compile(r"\d[\d.,]*")
_AMPERSAND = re.compile(r"(?<=\w) ?& ?(?=\w)")
_PLUS = re.compile(r"(?<= )\+(?= )")
_SPACE_BEFORE_MARK = re.compile(r" ([,.;:!?…])")
_REPEATED_MARK = re.compile(r"([,;:])\1+")
_DOTS = re.compile(r"\.\.+")
_WORD = re.compile(r"\S+")
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-?]{0,64}[ -/]{0,16}[@-~]")  # colours pasted from a terminal

_STRAY = frozenset("*_#|~^<>=\\{}[]`")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_MAX_MARKS = 4  # combining marks kept after one base character: more is "zalgo" text, never speech
_TERMINAL = frozenset(".!?…:;,")
_SENTENCE_ENDS = ".!?…"
_CLOSERS = "\"'»”’›)]"
_OPENERS = "\"'«“‘‹([¿¡"


def _is_emoji(char: str) -> bool:
    if char in "\u200d\ufe0e\ufe0f\u20e3":
        return True
    code = ord(char)
    return unicodedata.category(char) == "So" or 0x1F000 <= code <= 0x1FAFF or 0x2600 <= code <= 0x27BF


@lru_cache(maxsize=8192)
def _input_char(char: str) -> str:
    """Before parsing: control, format (zero-width, bidi), private and unassigned characters go; breaks are \\n."""
    if char == "\n" or char == "\t":
        return char
    if char in _LINE_BREAKS:
        return "\n"
    category = unicodedata.category(char)
    if category == "Zs":
        return " "
    return "" if category[0] == "C" else char


@lru_cache(maxsize=8192)
def _spoken_char(char: str) -> str:
    """After parsing: Markdown punctuation left over, emoji, and whatever entities brought back become spaces."""
    if char in _STRAY or _is_emoji(char):
        return " "
    category = unicodedata.category(char)
    if category[0] == "C":
        return " " if char in _LINE_BREAKS or char == "\t" else ""
    return " " if category == "Zs" else char


def _sanitize(text: str) -> str:
    """Drop what nobody reads aloud, cap runs of combining marks, then NFC."""
    text = _TERMINAL_ESCAPE.sub("", text.replace("\r\n", "\n")) if "\x1b" in text else text.replace("\r\n", "\n")
    text = "".join(map(_input_char, text))
    if any(unicodedata.combining(c) for c in text):
        kept, run = [], 0
        for char in text:
            run = run + 1 if unicodedata.combining(char) else 0
            if run <= _MAX_MARKS:
                kept.append(char)
        text = "".join(kept)
    return unicodedata.normalize("NFC", text)


def _html_tag(raw: str) -> str | None:
    """The element named by inline HTML such as `<br/>` or `</b>` ("!" for comments), or None for prose."""
    if raw.startswith(("<!", "<?")):
        return "!"
    body = raw[1:-1].rstrip("/").strip()
    if body.startswith("/"):
        body = body[1:]
    parts = body.split(None, 1)
    if not parts or parts[0].lower() not in _HTML_ELEMENTS:
        return None
    attributes = parts[1] if len(parts) > 1 else ""
    if attributes and "=" not in attributes and not all(
            a.lower() in _HTML_BOOLEAN_ATTRIBUTES for a in attributes.split()):
        return None
    return parts[0].lower()


def _inline_lines(children: list) -> list[str]:
    """The text of one inline token as lines: emphasis and link marks go, link and image texts stay."""
    lines, current = [], []
    stack = list(reversed(children))
    autolink = False
    while stack:
        token = stack.pop()
        kind = token.type
        if kind in ("text", "text_special", "code_inline"):
            content = token.content
            if autolink and content[:7].lower() == "mailto:":
                content = content[7:]
            current.append(content)
        elif kind in ("softbreak", "hardbreak"):
            lines.append("".join(current))
            current = []
        elif kind == "image":
            stack.extend(reversed(token.children or []))
        elif kind == "html_inline":
            tag = _html_tag(token.content)
            if tag is None:
                current.append(token.content)
            elif tag in _HTML_BREAKS:
                lines.append("".join(current))
                current = []
            else:
                current.append(" ")
        autolink = kind == "link_open" and token.markup == "autolink"
    lines.append("".join(current))
    return lines


def _html_block_lines(content: str) -> list[str]:
    """Text between the tags of an HTML block; scripts, styles and comments are not read."""
    if content.lstrip().lower().startswith(_HTML_SILENT_BLOCKS):
        return []
    tokens = _MARKDOWN.parseInline(content)
    return _inline_lines(tokens[0].children or []) if tokens else []


def _markdown_lines(text: str, words: dict) -> list[tuple[str | list[str], bool]]:
    """(line or table cells, stands alone) in reading order; headings, list items and rows stand alone."""
    lines: list[tuple[str | list[str], bool]] = []
    heading, items, row = False, 0, None
    for token in _MARKDOWN.parse(text):
        kind = token.type
        if kind == "inline":
            parts = _inline_lines(token.children or [])
            if row is not None:
                row.append(" ".join(parts))
            else:
                lines.extend((part, heading or items > 0) for part in parts)
        elif kind == "heading_open" or kind == "heading_close":
            heading = kind == "heading_open"
        elif kind == "list_item_open":
            items += 1
        elif kind == "list_item_close":
            items -= 1
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close":
            lines.append((row or [], True))
            row = None
        elif kind == "fence" or kind == "code_block":
            lines.append((words["code"], False))
        elif kind == "html_block":
            lines.extend((part, False) for part in _html_block_lines(token.content))
    return lines


def _url_words(url: str, words: dict) -> str:
    """`https://www.example.com/a?b` is said as "link example.com"; the host is found by hand, never raising."""
    raw = url.rstrip(".,;:!?")
    rest = raw.split("://", 1)[1] if "://" in raw else raw
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
    host = host.lower().removeprefix("www.")
    return (f"{words['link']} {host}" if host else words["link"]) + url[len(raw):]


def _email_words(match: re.Match, words: dict) -> str:
    local, _, domain = match.group().partition("@")
    name = domain.rstrip(".-")
    labels = name.split(".")
    if len(labels) < 2 or not all(labels) or not any(c.isalnum() for c in local):
        return match.group()
    return f"{local} {words['at']} {name}{domain[len(name):]}"


def _number_words(line: str, words: dict) -> str:
    """`$5`, `5 €`, `50%` and `93°C` said in words; the number stays digits and keeps the stop after it."""
    out, last, size = [], 0, len(line)
    for match in _NUMBER.finditer(line):
        start = match.start()
        number = match.group().rstrip(".,")
        end = start + len(number)
        before = start - 1 if start - 1 >= last and line[start - 1] != " " else start - 2
        after = end + 1 if end < size and line[end] == " " else end
        mark_before = line[before] if before >= last else ""
        mark_after = line[after] if after < size else ""
        if mark_before in ("$", "€"):
            out += [line[last:before], number, " ", words["dollars" if mark_before == "$" else "euros"]]
            last = end
        elif mark_after in ("%", "$", "€"):
            word = {"%": "percent", "$": "dollars", "€": "euros"}[mark_after]
            out += [line[last:start], number, " ", words[word], " "]
            last = after + 1
        elif mark_after == "°":
            unit = after + 2 if after + 1 < size and line[after + 1] == " " else after + 1
            scale = line[unit] if unit < size and line[unit] in "CF" else ""
            if scale and unit + 1 < size and (line[unit + 1].isalnum() or line[unit + 1] == "_"):
                scale = ""
            out += [line[last:start], number, " ", words["degrees"]] + ([" ", scale] if scale else [])
            last = unit + 1 if scale else after + 1
    out.append(line[last:])
    return "".join(out)


def _say(line: str, words: dict, figures=None) -> str:
    """One line of parsed Markdown as words: links, e-mails, figures and symbols spoken, the rest dropped.

    `figures` reads numbers, money, dates and abbreviations in the language (spoken forms); what it
    leaves as digits still gets its currency, percent and degree signs said."""
    line = " ".join(line.split())
    if not line:
        return line
    line = _URL.sub(lambda m: _url_words(m.group(), words), line)
    line = _EMAIL.sub(lambda m: _email_words(m, words), line)
    if figures is not None:
        line = figures(line)
    line = _number_words(line, words)
    line = _AMPERSAND.sub(f" {words['and']} ", line)
    line = _PLUS.sub(words["plus"], line)
    return " ".join("".join(map(_spoken_char, line)).split())


def has_speech(text: str) -> bool:
    """Words to say: a letter or a digit. Marks, emoji and symbols alone are never spoken."""
    return any(char.isalnum() for char in text)


def _end_line(line: str) -> str:
    line = line.strip()
    if line and line.rstrip(_CLOSERS)[-1:] not in _TERMINAL:
        line += "."
    return line


def speakable(text: str, language: str = "en", figures=None) -> str:
    """What a person would read aloud from an LLM's Markdown answer; numbers stay as digits unless
    `figures` (a line's text -> its figures read aloud) is given."""
    words = WORDS.get(language, WORDS["en"])
    said: list[tuple[str, bool]] = []
    for line, alone in _markdown_lines(_sanitize(text), words):
        if isinstance(line, list):
            line = ", ".join(cell for cell in (_say(c, words, figures) for c in line) if has_speech(cell))
        else:
            line = _say(line, words, figures)
        if has_speech(line):
            said.append((line, alone))
    # Every line but the last ends with a stop, so that line breaks are heard as pauses.
    spoken = " ".join(_end_line(line) if alone or i < len(said) - 1 else line
                      for i, (line, alone) in enumerate(said))
    spoken = _SPACE_BEFORE_MARK.sub(r"\1", spoken)
    spoken = _REPEATED_MARK.sub(r"\1", spoken)
    if "..." not in text:
        spoken = _DOTS.sub(".", spoken)
    return spoken.strip()


_ABBREVIATIONS = frozenset(
    "Sr Sra Srta Sres Dr Dra Mr Mrs Ms Prof St etc vs approx aprox Ud Uds Vd núm No pág p pp "
    "e.g i.e p.ej EE.UU a.m p.m".split())


def _is_abbreviation(word: str) -> bool:
    """`Dr`, `e.g`, an initial `J` or `U.S`: the word before a dot that does not end a sentence."""
    start = len(word)
    while start and (word[start - 1].isalnum() or word[start - 1] == "."):
        start -= 1
    core = word[start:]
    if core in _ABBREVIATIONS or core in not_sentence_ends():
        return True
    return bool(core) and all(len(part) == 1 and part.isupper() for part in core.split("."))


def split_sentences(text: str) -> list[str]:
    """Sentences in order; abbreviations, initials, decimals, quotes and ¿…?/¡…! stay whole.

    A sentence ends after a word ending in . ! ? … (closing quotes and brackets included) when the next
    word does not start in lower case and the dot does not end an abbreviation. A piece with no letter
    or digit (a lone closing quote, a run of marks) is joined to its neighbour.
    """
    words = list(_WORD.finditer(text))
    cuts = []
    for word, following in zip(words, words[1:]):
        core = word.group().rstrip(_CLOSERS)
        if not core or core[-1] not in _SENTENCE_ENDS or following.group()[0].islower():
            continue
        if core[-1] == "." and _is_abbreviation(core[:-1]):
            continue
        cuts.append(word.end())
    spans: list[list[int]] = []
    start = previous = 0  # marks before the first sentence join it: `start` stays at 0 until then
    for cut in cuts + [len(text)]:
        if has_speech(text[previous:cut]):
            spans.append([start, cut])
            start = cut
        elif spans:
            spans[-1][1] = start = cut
        previous = cut
    return [text[a:b].strip() for a, b in spans]


def group_sentences(sentences: list[str], groups: int, max_chars: int = 600,
                    max_pieces: int | None = None) -> list[str]:
    """Join consecutive sentences into at most `groups` pieces of similar length (each ≤ max_chars when possible).

    `max_pieces` bounds how many pieces a long text makes: past it, pieces grow beyond `max_chars`
    (cut at sentence ends, one piece more at most)."""
    if not sentences:
        return []
    total = sum(len(s) for s in sentences)
    if max_pieces:
        max_chars = max(max_chars, -(-total // max_pieces))
    target = max(total / max(groups, 1), 1)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in sentences:
        sentence = sentence.strip()
        if current and (size + len(sentence) > max_chars or (size >= target and len(pieces) < groups - 1)):
            pieces.append(" ".join(current))
            current, size = [], 0
        if sentence:
            size += len(sentence) + (1 if current else 0)
            current.append(sentence)
    pieces.append(" ".join(current))
    return pieces
