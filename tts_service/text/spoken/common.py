"""The shared scanner and the rules every language reads figures with; each language module fills in
its words, its conventions and what differs.

One compiled pattern per language finds, left to right, the next figure, abbreviation, phone number
or Roman numeral in context; every quantifier runs over disjoint characters or is bounded, and each
look at the words around a figure reads a bounded slice, so the whole pass is linear in the text.
Number words come from CLDR's rule-based number formats (`unicode_rbnf`); the code here only decides
which form to ask for (gender, ordinal, year) and how the written shape is read.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from unicode_rbnf import RbnfEngine

MAX_DIGITS = 15  # longer digit runs are read digit by digit, up to MAX_SPELLED_DIGITS
MAX_SPELLED_DIGITS = 32
MAX_FIGURE_CHARS = 64  # a longer run of digits and separators is left as written
CONTEXT = 40  # characters looked at before a figure

LETTER = r"[^\W\d_]"
SPACE = r"[ \u00a0\u202f]"


_WORD_BEFORE = re.compile(rf"({LETTER}[\w+#-]*)[ \u00a0]?v?$")
_SPACES = re.compile(SPACE)


class Reading(NamedTuple):
    """One replaced stretch of the written text and the words spoken for it."""

    start: int
    end: int
    spoken: str


_ENGINES: dict[str, RbnfEngine] = {}


def _engine(language: str) -> RbnfEngine:
    engine = _ENGINES.get(language)
    if engine is None:
        engine = _ENGINES[language] = RbnfEngine.for_language(language)
    return engine


@lru_cache(maxsize=4096)
def spell(language: str, number: int, ruleset: str) -> str | None:
    """CLDR's words for `number` under `ruleset`, soft hyphens removed; None when CLDR has none."""
    try:
        words = "".join(_engine(language).iter_format_number(number, ruleset))
    except Exception:  # noqa: BLE001 - an unreadable figure stays as written
        return None
    return words.replace("\xad", "")


def apply(text: str, spans: list[Reading]) -> str:
    """`text` with each span replaced by its spoken words."""
    if not spans:
        return text
    out, at = [], 0
    for start, end, spoken in spans:
        out.append(text[at:start])
        out.append(spoken)
        at = end
    out.append(text[at:])
    return "".join(out)


def alternation(words) -> str:
    """A regex alternation of `words`, longest first, spaces inside them optional."""
    parts = []
    for word in sorted(set(words), key=len, reverse=True):
        pieces = [re.escape(piece) for piece in word.split(" ")]
        parts.append(rf"{SPACE}?".join(pieces))
    return "|".join(parts) or r"(?!x)x"


_SPACE_GROUP = re.compile(r"[ \u00a0\u202f](?=\d{3}(?!\d))")
_FIGURE = r"\d+(?:(?:[.,:/\-–]|[\u00a0\u202f](?=\d{3}(?!\d)))\d+)*"


class Number(NamedTuple):
    """A written number: integer part, fractional digits (or None), and how it was separated."""

    whole: int
    fraction: str | None
    point: bool = False  # a "." read as "point" (versions, English decimals in a comma language)


class Rules:
    """Reading figures in one language; subclasses give the words and override what differs."""

    code = ""
    letter_names: dict[str, str] = {}
    group = "."  # thousands separator as written natively
    decimal = ","
    space_groups = False  # "1 500" with plain spaces (French)
    words: dict[str, str] = {}
    months: list[str] = []
    currencies: dict[str, tuple] = {}  # written -> (singular, plural, gender, cent singular, cent plural)
    units: dict[str, tuple] = {}  # written -> (singular, plural, gender)
    abbreviations: dict[str, str] = {}
    titles: frozenset[str] = frozenset()  # abbreviations that precede a name: no sentence end after them
    ordinal_suffix = r"(?!x)x"
    phone = r"(?!x)x"
    roman_context = r"(?!x)x"
    year_words = False  # plain four-digit numbers read as years ("nineteen eighty-nine")
    cardinal_rules = {"n": "spellout-numbering", "m": "spellout-cardinal-masculine",
                      "f": "spellout-cardinal-feminine"}
    ordinal_rules = {"m": "spellout-ordinal-masculine", "f": "spellout-ordinal-feminine"}
    versions = frozenset()  # words after which "3.12" is a version

    def __init__(self) -> None:
        figure = _FIGURE.replace(r"[\u00a0\u202f]", r"[ \u00a0\u202f]") if self.space_groups else _FIGURE
        symbols = "|".join(re.escape(s) for s in sorted(
            (c for c in self.currencies if not c.isalpha()), key=len, reverse=True)) or r"(?!x)x"
        self.master = re.compile(
            rf"(?P<phone>{self.phone})"
            rf"|(?P<fig>(?P<sign>(?<![\w.,\-/:+])[-−+](?=\d|(?:{symbols})\d))?"
            rf"(?:(?P<pre>{symbols}){SPACE}?)?(?P<num>{figure}))"
            rf"|(?P<abbr>(?<![\w.]){self.abbreviation_pattern()})"
            rf"|(?P<rctx>{self.roman_context}){SPACE}(?P<roman>[IVXLCDM]{{1,7}})(?![\w'’])",
        )
        self.suffix = re.compile(
            rf"(?P<ord>{self.ordinal_suffix})"
            rf"|{SPACE}?(?P<pct>%)"
            rf"|{SPACE}?(?P<cur>{alternation(self.currencies)})(?![\w])"
            rf"|{SPACE}?(?P<unit>{alternation(self.units)})(?![\w])"
        )
        self.currency_after = re.compile(rf"{SPACE}?(?P<cur>{alternation(self.currencies)})(?![\w])")
        self.next_word = re.compile(rf"{SPACE}{{1,3}}({LETTER}+)")
        self.letters_after = re.compile(rf"{LETTER}+")

    # --- words ---------------------------------------------------------------------------------

    def abbreviation_pattern(self) -> str:
        if not self.abbreviations:
            return r"(?!x)x"
        parts = []
        for key in sorted(self.abbreviations, key=len, reverse=True):
            pattern = rf"{SPACE}?".join(re.escape(piece) for piece in key.split(" "))
            parts.append(pattern + (r"(?![\w])" if key[-1].isalnum() else ""))
        return "(?:" + "|".join(parts) + ")"

    def cardinal(self, n: int, gender: str = "n") -> str | None:
        """`n` in words; gender "n" is the form used for counting ("uno"), "m"/"f" before a noun."""
        if n >= 10 ** MAX_DIGITS:
            return None
        rule = self.cardinal_rules.get(gender) or self.cardinal_rules["n"]
        return spell(self.code, n, rule) or spell(self.code, n, self.cardinal_rules["n"])

    def ordinal(self, n: int, gender: str = "m", before_noun: bool = False) -> str | None:
        rule = self.ordinal_rules.get(gender) or self.ordinal_rules["m"]
        return spell(self.code, n, rule) if n < 10 ** 9 else None

    def year(self, n: int) -> str | None:
        return self.cardinal(n)

    def digits(self, text: str) -> str:
        return " ".join(self.cardinal(int(d)) for d in text if d.isdigit())

    def fraction_digits(self, digits: str) -> str:
        """Digits after the decimal mark: leading zeros one by one, then the rest as a number."""
        stripped = digits.lstrip("0")
        zeros = [self.cardinal(0)] * (len(digits) - len(stripped))
        if stripped:
            zeros.append(self.cardinal(int(stripped)) if len(stripped) <= 3 else self.digits(stripped))
        return " ".join(zeros)

    def number_words(self, number: Number, gender: str = "n") -> str | None:
        whole = self.cardinal(number.whole, gender if number.fraction is None else "n")
        if whole is None:
            return None
        if number.fraction is None:
            return whole
        mark = self.words["point"] if number.point else self.words["comma"]
        return f"{whole} {mark} {self.fraction_digits(number.fraction)}"

    # --- reading written numbers -----------------------------------------------------------------

    def parse(self, written: str, money: bool = False) -> Number | None:
        """A written number in this language's style, or in the other style where unambiguous
        (two group marks, or both marks, or a currency symbol before it)."""
        if len(written) > MAX_FIGURE_CHARS:
            return None
        written = _SPACE_GROUP.sub("", written)
        if written.isdigit():
            return Number(int(written), None) if len(written) <= MAX_DIGITS else None
        styles = [(self.group, self.decimal, True), (self.decimal, self.group, False)]
        if money:  # "$1,250": a dollar amount grouped the English way
            styles.reverse()
        for group, decimal, native in styles:
            grouped, plain = self._number_shapes(group, decimal)
            match = grouped.fullmatch(written)
            if match and (native or match.group(2) is not None or written.count(group) > 1 or money):
                whole = match.group(1).replace(group, "")
                if len(whole) <= MAX_DIGITS:
                    return Number(int(whole), match.group(2), decimal == ".")
            match = plain.fullmatch(written)
            if match and len(match.group(1)) <= MAX_DIGITS and not (money and not native and len(match.group(2)) == 3):
                return Number(int(match.group(1)), match.group(2), decimal == ".")
        return None

    @staticmethod
    @lru_cache(maxsize=8)
    def _number_shapes(group: str, decimal: str) -> tuple[re.Pattern, re.Pattern]:
        """A number grouped by `group` with an optional `decimal` part, and one with a decimal part only."""
        g, d = re.escape(group), re.escape(decimal)
        return re.compile(rf"(\d{{1,3}}(?:{g}\d{{3}})+)(?:{d}(\d+))?"), re.compile(rf"(\d+){d}(\d+)")

    # --- context -------------------------------------------------------------------------------

    def before(self, text: str, start: int) -> str:
        return text[max(0, start - CONTEXT):start]

    def noun_after(self, text: str, end: int) -> tuple[str | None, int]:
        match = self.next_word.match(text, end)
        return (match.group(1), match.end(1)) if match else (None, end)

    feminine_words: frozenset[str] = frozenset()
    masculine_words: frozenset[str] = frozenset()
    feminine_end = re.compile(r"(?!x)x")

    def gender_of(self, word: str | None) -> str | None:
        """"m", "f", or None (no noun known to follow): a small lexicon, then the noun's ending."""
        if not word:
            return None
        low = word.lower()
        if low in self.stop_words:
            return None
        if low in self.feminine_words:
            return "f"
        if low in self.masculine_words:
            return "m"
        return "f" if self.feminine_end.search(low) else "m"

    def gender_before(self, before: str) -> str | None:
        return None

    # --- the scan --------------------------------------------------------------------------------

    def readings(self, text: str) -> list[Reading]:
        out: list[Reading] = []
        pos, size = 0, len(text)
        search = self.master.search
        while pos < size:
            match = search(text, pos)
            if match is None:
                break
            kind = match.lastgroup
            reading = None
            try:
                if match.group("fig") is not None:
                    reading = self.read_figure(text, match)
                elif match.group("phone") is not None:
                    reading = self.read_phone(text, match)
                elif match.group("abbr") is not None:
                    reading = self.read_abbreviation(text, match)
                elif match.group("roman") is not None:
                    reading = self.read_roman(text, match)
            except (ValueError, KeyError, IndexError, OverflowError, TypeError):
                reading = None
            del kind
            if reading is None or reading.start < pos or reading.end <= reading.start:
                pos = max(match.end(), pos + 1) if match.group("rctx") is None else match.start("roman")
                continue
            if out and out[-1].end == reading.start and out[-1].spoken and reading.spoken \
                    and not out[-1].spoken[-1].isspace() and reading.spoken[0].isalnum() \
                    and text[reading.start - 1:reading.start].isalnum():
                reading = Reading(reading.start, reading.end, " " + reading.spoken)
            out.append(reading)
            pos = reading.end
        return out

    def read_phone(self, text: str, match: re.Match) -> Reading | None:
        written = match.group("phone")
        groups = re.findall(r"\+|\d+", written)
        words = [self.words["plus"] if g == "+" else self.digits(g) for g in groups]
        return Reading(match.start("phone"), match.end("phone"), " ".join(words))

    def read_abbreviation(self, text: str, match: re.Match) -> Reading | None:
        written = match.group("abbr")
        key = _SPACES.sub("", written)
        spoken = self.abbreviation_lookup().get(key)
        if spoken is None:
            return None
        end = match.end("abbr")
        if spoken.startswith("^"):  # only before a capitalised name
            if not re.match(rf"{SPACE}[A-ZÁÉÍÓÚÑ]", text[end:end + 2]):
                return None
            spoken = spoken[1:]
        if written.endswith(".") and key not in self.titles:
            rest = text[end:end + 3]
            if rest.strip() == "" and end + len(rest) >= len(text) or re.match(r"\s+[A-ZÁÉÍÓÚÑ¿¡]", rest):
                spoken += "."
        start = match.start("abbr")
        if written[:1].isupper() and re.search(r"(?:^|[.!?¿¡:]\s*)$", text[max(0, start - 3):start]) \
                and (start < 3 or text[:start].strip() == "" or not text[:start].rstrip()[-1:].isalnum()):
            spoken = spoken[:1].upper() + spoken[1:]  # the first word of a sentence
        return Reading(start, end, spoken)

    @lru_cache(maxsize=None)  # noqa: B019 - one table per language object, which live for ever
    def abbreviation_lookup(self) -> dict[str, str]:
        return {re.sub(rf"{SPACE}", "", k): v for k, v in self.abbreviations.items()}

    def read_roman(self, text: str, match: re.Match) -> Reading | None:
        value = roman_value(match.group("roman"))
        if value is None:
            return None
        spoken = self.roman_words(match.group("rctx"), value, match.group("roman"))
        if spoken is None:
            return None
        return Reading(match.start("roman"), match.end("roman"), spoken)

    def roman_words(self, context: str, value: int, written: str) -> str | None:
        return self.cardinal(value)

    # --- figures ---------------------------------------------------------------------------------

    def read_figure(self, text: str, match: re.Match) -> Reading | None:
        written = match.group("num")
        start, end = match.start("fig"), match.end("fig")
        if len(written) > MAX_FIGURE_CHARS:
            return None
        sign = match.group("sign")
        pre = match.group("pre")
        prefix = ""
        if start > 0 and text[start - 1] in "-–" and start > 1 and text[start - 2].isalpha() and not sign:
            start -= 1  # "GPT-4", "COVID-19": the hyphen is not said
            prefix = " "
        elif start > 0 and text[start - 1].isalpha():
            prefix = " "  # "MP3"
        spoken, end = self.figure(text, start, end, written, pre, sign)
        if spoken is None:
            return None
        if end < len(text) and text[end].isalpha() and not spoken.endswith(" "):
            letters = self.letters_after.match(text, end)
            if letters and letters.group().isupper() or len(letters.group()) <= 2:
                spoken += " "  # "4K", "5G", "3D"
        return Reading(start, end, prefix + spoken)

    date_order = "dmy"
    stop_words: frozenset[str] = frozenset()  # words after a number that are not the noun it counts

    def figure(self, text: str, start: int, end: int, written: str, pre: str | None, sign: str | None):
        """Words for the figure `written` at text[start:end] and the end of what they cover."""
        before = self.before(text, start)
        minus = (self.words["minus"] + " ") if sign in ("-", "−") else (self.words["plus"] + " ") if sign else ""
        if not pre:
            match = _TIME.fullmatch(written)
            if match and not sign:
                hour, minute = int(match.group(1)), int(match.group(2))
                second = int(match.group(3)) if match.group(3) else None
                if hour <= 24 and minute < 60 and (second is None or second < 60):
                    suffix = self.time_suffix.match(text, end)
                    spoken = self.time_words(hour, minute, second, before, suffix.group() if suffix else "")
                    if spoken:
                        return spoken, suffix.end() if suffix else end
            date = self.parse_date(written, before)
            if date and not sign:
                spoken = self.date_words(*date, before=before)
                if spoken:
                    return spoken, end
            match = _PAIR.fullmatch(written)
            if match and not sign:
                spoken, end = self.pair(text, end, before, match)
                if spoken:
                    return spoken, end
            if self.is_version(before, written, start, text):
                return minus + self.version_words(written), end
        number = self.parse(written, money=bool(pre))
        if number is None:
            spoken = self.separated(written)
            return (minus + spoken if spoken else None), end
        suffix = self.suffix.match(text, end)
        kind = suffix.lastgroup if suffix else None
        if not pre and kind is None and self.words.get("of"):
            noun, noun_end = self.noun_after(text, end)
            if noun in self.large_numbers and noun not in self.thousands:
                money = self.currency_after.match(text, noun_end)
                if number.fraction is not None or money:  # "1,5 millones", "3 millones €"
                    spoken = self.large_words(number, noun)
                    if money:
                        currency = self.currencies.get(money.group("cur")) or self.currencies.get(
                            money.group("cur").replace(" ", ""))
                        if currency:
                            spoken, noun_end = f"{spoken} {self.words['of']} {currency[1]}", money.end()
                    return minus + spoken, noun_end
        if pre:
            currency = self.currencies[pre]
            noun, noun_end = self.noun_after(text, end)
            if noun in self.large_numbers and number.fraction is None or number.fraction and noun in self.large_numbers:
                words = self.number_words(number, "m")
                return f"{minus}{words} {noun} {self.words['of']} {currency[1]}".replace("  ", " "), noun_end
            return minus + self.money_words(number, currency), end
        if kind == "cur":
            return minus + self.money_words(number, self.currencies[suffix.group("cur")]), suffix.end()
        if kind == "pct":
            return f"{minus}{self.number_words(number, self.percent_gender)} {self.words['percent']}", suffix.end()
        if kind == "unit":
            unit = self.units[suffix.group("unit")]
            return minus + self.unit_words(number, unit), suffix.end()
        if kind == "ord" and number.fraction is None and not sign:
            noun, _ = self.noun_after(text, suffix.end())
            spoken = self.ordinal_words(number.whole, suffix.group("ord"), noun, before)
            if spoken:
                return spoken, suffix.end()
        noun, _ = self.noun_after(text, end)
        gender = self.gender_of(noun) or self.gender_before(before) or "n"
        if number.fraction is None and self.year_words and not sign and number.whole >= 1000 \
                and written.isdigit() and len(written) == 4 and self.is_year(number.whole, noun, before):
            return self.year(number.whole), end
        spoken = self.number_words(number, gender)
        return (minus + spoken if spoken else None), end

    large_numbers: frozenset[str] = frozenset()
    thousands: frozenset[str] = frozenset()  # of large_numbers, those that are no noun ("mil")

    def large_words(self, number: Number, noun: str) -> str:
        """A number of millions or more written with digits and a word ("1,5 millones")."""
        return f"{self.number_words(number, 'm')} {noun}"
    percent_gender = "n"
    time_suffix = re.compile(r"(?!x)x")

    def is_year(self, n: int, noun: str | None, before: str) -> bool:
        return 1100 <= n <= 2099 and (noun is None or noun in self.stop_words)

    def is_version(self, before: str, written: str, start: int, text: str) -> bool:
        if "." not in written or not re.fullmatch(r"\d+(?:\.\d+)+", written):
            return False
        word = _WORD_BEFORE.search(before)
        return bool(word and (word.group(1).lower() in self.versions or word.group(1)[:1].isupper()
                              and start > 0 and text[start - 1] == "v")) or bool(before.endswith("v"))

    def version_words(self, written: str) -> str:
        return f" {self.words['point']} ".join(self.cardinal(int(p)) or self.digits(p) for p in written.split("."))

    def separated(self, written: str) -> str | None:
        """A figure no rule reads: each digit run in words, each separator named."""
        out = []
        for piece in re.findall(r"\d+|\D", written):
            if piece.isdigit():
                words = self.cardinal(int(piece)) if len(piece) <= MAX_DIGITS else (
                    self.digits(piece) if len(piece) <= MAX_SPELLED_DIGITS else None)
                if words is None:
                    return None
                out.append(words)
            else:
                out.append(self.separators.get(piece, " "))
        return " ".join(p for p in out if p.strip())

    separators: dict[str, str] = {}

    def parse_date(self, written: str, before: str):
        match = _ISO.fullmatch(written)
        if match:
            y, m, d = (int(g) for g in match.groups())
            return (d, m, y) if 1 <= m <= 12 and 1 <= d <= 31 else None
        match = _DMY.fullmatch(written)
        if match:
            a, b, y = int(match.group(1)), int(match.group(3)), match.group(4)
            d, m = (b, a) if self.date_order == "mdy" else (a, b)
            if not (1 <= m <= 12 and 1 <= d <= 31):
                return None
            year = int(y) if len(y) == 4 else 2000 + int(y) if int(y) < 50 else 1900 + int(y)
            return d, m, year
        return None

    def pair(self, text: str, end: int, before: str, match: re.Match):
        """"a/b" and "a-b": a fraction, a day and month, a range or a score."""
        a_text, mark, b_text = match.groups()
        a, b = int(a_text), int(b_text)
        noun, noun_end = self.noun_after(text, end)
        if mark == "/":
            if 2 <= b <= 10 and a < 100 and not (self.article_before(before) and b <= 12 and 1 <= a <= 31):
                return self.fraction_words(a, b, noun), end
            d, m = (b, a) if self.date_order == "mdy" else (a, b)
            if 1 <= d <= 31 and 1 <= m <= 12:
                return self.date_words(d, m, None, before=before), end
            return None, end
        suffix = self.suffix.match(text, end)
        unit = self.units.get(suffix.group("unit")) if suffix and suffix.lastgroup == "unit" else None
        if len(a_text) == 4 and len(b_text) == 2 and int(b_text) > a % 100:  # "2023-24"
            b = a - a % 100 + b
        if a >= b and a < 100 and b < 100 and not unit and not (noun and noun not in self.stop_words):
            return self.score_words(a, b), end
        if a < b:
            gender = unit[2] if unit else (self.gender_of(noun) or "n")
            if len(a_text) == 4 and len(b_text) in (2, 4) and not unit:
                first, second = self.year(a), self.year(b)
            else:
                first, second = self.cardinal(a, gender), self.cardinal(b, gender)
            if unit:
                second = self.unit_words(Number(b, None), unit)
                end = suffix.end()
            return self.range_words(first, second, before), end
        return None, end

    def article_before(self, before: str) -> bool:
        return False

    def score_words(self, a: int, b: int) -> str:
        return f"{self.cardinal(a)} {self.words['to']} {self.cardinal(b)}"

    def range_words(self, first: str, second: str, before: str) -> str:
        return f"{first} {self.words['to']} {second}"

    def fraction_words(self, a: int, b: int, noun: str | None) -> str:
        return f"{self.cardinal(a)} {self.words['over']} {self.cardinal(b)}"

    def date_words(self, d: int, m: int, y: int | None, before: str = "") -> str | None:
        return None

    def time_words(self, h: int, m: int, s: int | None, before: str, suffixed: bool) -> str | None:
        return None

    def money_words(self, number: Number, currency: tuple) -> str:
        singular, plural, gender, cent, cents = currency
        whole = number.whole
        name = singular if whole == 1 else plural
        words = self.cardinal(whole, gender)
        if whole and whole % 1_000_000 == 0 and self.words.get("of"):
            name = f"{self.words['of']} {plural}"
        if not number.fraction:
            return f"{words} {name}"
        if len(number.fraction) > 2:
            return f"{self.number_words(number, gender)} {plural}"
        cent_value = int(number.fraction.ljust(2, "0"))
        if cent_value == 0:
            return f"{words} {name}"
        cent_words = f"{self.cardinal(cent_value, 'm')} {cent if cent_value == 1 else cents}"
        if whole == 0:
            return cent_words
        return f"{words} {name} {self.words['and_cents']} {cent_words}"

    def unit_words(self, number: Number, unit: tuple) -> str:
        singular, plural, gender = unit
        name = singular if number.whole == 1 and not number.fraction else plural
        return f"{self.number_words(number, gender)} {name}"

    def ordinal_words(self, n: int, suffix: str, noun: str | None, before: str) -> str | None:
        return self.ordinal(n)


_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DMY = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})")
_PAIR = re.compile(r"(\d{1,4})([/\-–])(\d{1,4})")


_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_value(written: str) -> int | None:
    """The value of a well-formed Roman numeral, or None."""
    if not written or not _ROMAN.fullmatch(written):
        return None
    total = 0
    for i, ch in enumerate(written):
        value = _ROMAN_VALUES[ch]
        if i + 1 < len(written) and _ROMAN_VALUES[written[i + 1]] > value:
            total -= value
        else:
            total += value
    return total
