"""English: "1,250.50" and "$5.99", years read in pairs ("nineteen eighty-nine"), "3rd", month-first
dates ("March 3, 2024", "3/15/2024")."""

from __future__ import annotations

import re

from .common import SPACE, Number, Rules, spell

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
_MONTH_BEFORE = re.compile(rf"(?:{'|'.join(MONTHS)}|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.?{SPACE}$")
_MONTH_AFTER = re.compile(rf"{SPACE}(?:of{SPACE})?(?:{'|'.join(MONTHS)})\b")
REGNAL = "Henry|Edward|George|William|Elizabeth|Charles|Richard|James|Louis|Mary|Victoria|Anne|John|Paul|Pius|Benedict|Leo|Gregory|Philip|Peter|Catherine|Napoleon"


class English(Rules):
    code = "en"
    # Letter names, for what is spelt out (`<say-as interpret-as="characters">`).
    letter_names = dict(zip("abcdefghijklmnopqrstuvwxyz",
                            ("ay|bee|see|dee|ee|eff|gee|aitch|eye|jay|kay|el|em|"
                             "en|oh|pee|cue|ar|ess|tee|you|vee|double you|ex|why|zee").split("|")))
    group, decimal = ",", "."
    date_order = "mdy"
    year_words = True
    words = {"point": "point", "comma": "comma", "minus": "minus", "plus": "plus", "percent": "percent",
             "to": "to", "of": "", "and_cents": "and", "over": "over"}
    separators = {".": "dot", ",": "comma", ":": "", "/": "slash", "-": "dash", "–": "to"}
    cardinal_rules = {"n": "spellout-numbering", "m": "spellout-numbering", "f": "spellout-numbering"}
    ordinal_rules = {"m": "spellout-ordinal", "f": "spellout-ordinal"}
    currencies = {
        "$": ("dollar", "dollars", "m", "cent", "cents"), "US$": ("dollar", "dollars", "m", "cent", "cents"),
        "USD": ("dollar", "dollars", "m", "cent", "cents"), "€": ("euro", "euros", "m", "cent", "cents"),
        "EUR": ("euro", "euros", "m", "cent", "cents"), "£": ("pound", "pounds", "m", "penny", "pence"),
        "GBP": ("pound", "pounds", "m", "penny", "pence"), "¥": ("yen", "yen", "m", "sen", "sen"),
    }
    units = {
        "km/h": ("kilometer per hour", "kilometers per hour", "m"), "mph": ("mile per hour", "miles per hour", "m"),
        "km": ("kilometer", "kilometers", "m"), "m": ("meter", "meters", "m"), "cm": ("centimeter", "centimeters", "m"),
        "mm": ("millimeter", "millimeters", "m"), "kg": ("kilogram", "kilograms", "m"), "g": ("gram", "grams", "m"),
        "mg": ("milligram", "milligrams", "m"), "lb": ("pound", "pounds", "m"), "lbs": ("pound", "pounds", "m"),
        "oz": ("ounce", "ounces", "m"), "ft": ("foot", "feet", "m"), "mi": ("mile", "miles", "m"),
        "l": ("liter", "liters", "m"), "L": ("liter", "liters", "m"), "ml": ("milliliter", "milliliters", "m"),
        "mL": ("milliliter", "milliliters", "m"), "°C": ("degree Celsius", "degrees Celsius", "m"),
        "°F": ("degree Fahrenheit", "degrees Fahrenheit", "m"), "°": ("degree", "degrees", "m"),
        "KB": ("kilobyte", "kilobytes", "m"), "MB": ("megabyte", "megabytes", "m"),
        "GB": ("gigabyte", "gigabytes", "m"), "TB": ("terabyte", "terabytes", "m"),
        "GHz": ("gigahertz", "gigahertz", "m"), "MHz": ("megahertz", "megahertz", "m"),
        "kWh": ("kilowatt hour", "kilowatt hours", "m"), "kW": ("kilowatt", "kilowatts", "m"),
        "W": ("watt", "watts", "m"), "min": ("minute", "minutes", "m"), "h": ("hour", "hours", "m"),
        "hrs": ("hour", "hours", "m"), "s": ("second", "seconds", "m"), "ms": ("millisecond", "milliseconds", "m"),
    }
    abbreviations = {
        "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Dr.": "Doctor", "Prof.": "Professor",
        "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "approx.": "approximately",
        "No.": "^number", "Jr.": "Junior", "Sr.": "Senior", "Inc.": "Incorporated", "Ltd.": "Limited",
        "Ave.": "Avenue", "U.S.": "U S", "a.m.": "a m", "p.m.": "p m", "min.": "minimum", "max.": "maximum",
    }
    titles = frozenset({"Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "No."})
    ordinal_suffix = r"(?:st|nd|rd|th)(?![\w])"
    phone = (rf"(?<![\w+])\(?\d{{3}}\)?[ .\-]\d{{3}}[ .\-]\d{{4}}(?![\w])"
             rf"|(?<![\w+])\+\d{{1,3}}(?:[ .\-]?\d{{2,4}}){{2,5}}(?![\w])")
    roman_context = rf"\b(?:{REGNAL}|World War|Chapter|chapter|Part|part|Volume|Act|Phase|Super Bowl)"
    versions = frozenset("version v python ios android windows macos java node html css gpt php bluetooth "
                         "usb ubuntu chrome firefox excel angular react vue django kotlin swift rust".split())
    stop_words = frozenset("of and or in on at to by for from with is was are were the a an than as".split())
    time_suffix = re.compile(rf"{SPACE}?(?:[ap]m|[AP]M|[ap]\.m|[AP]\.M)(?![\w])")

    def gender_of(self, word):
        return None

    def is_year(self, n, noun, before):
        return 1100 <= n <= 2099 and not (noun and noun not in self.stop_words) and not before.rstrip().endswith("$")

    def year(self, n):
        return spell("en", n, "spellout-numbering-year")

    def figure(self, text, start, end, written, pre, sign):
        if written.isdigit() and len(written) <= 2 and not pre and not sign:
            before = self.before(text, start)
            after = text[end:end + 20]
            if (_MONTH_BEFORE.search(before) or _MONTH_AFTER.match(after)) and 1 <= int(written) <= 31:
                suffix = re.match(r"(?:st|nd|rd|th)(?![\w])", after)
                return self.ordinal(int(written)), end + (suffix.end() if suffix else 0)
        if len(written) == 4 and written.endswith("0") and not pre and not sign:
            decade = re.match(r"['’]?s(?![\w])", text[end:end + 3])
            if decade:  # "the 1990s"
                words = self.year(int(written))
                words = words[:-1] + "ies" if words.endswith("y") else words + "s"
                return words, end + decade.end()
        return super().figure(text, start, end, written, pre, sign)

    def roman_words(self, context, value, written):
        if context in REGNAL.split("|"):
            return f"the {self.ordinal(value)}"
        return self.cardinal(value)

    def date_words(self, d, m, y, before=""):
        out = f"{MONTHS[m - 1]} {self.ordinal(d)}"
        return f"{out}, {self.year(y)}" if y is not None else out

    def time_words(self, h, m, s, before, suffixed):
        hour = self.cardinal(h)
        if s is not None:
            return f"{hour} {self.cardinal(m)} and {self.cardinal(s)} seconds"
        if m == 0:
            words = hour if suffixed else f"{hour} o'clock"
        elif m < 10:
            words = f"{hour} oh {self.cardinal(m)}"
        else:
            words = f"{hour} {self.cardinal(m)}"
        return f"{words} {_ampm(suffixed)}" if suffixed else words

    def fraction_words(self, a, b, noun):
        name = "half" if b == 2 else "quarter" if b == 4 else self.ordinal(b)
        if a != 1:
            name = "halves" if b == 2 else name + "s"
        return f"{self.cardinal(a) if a != 1 else 'one'} {name}"

    def ordinal_words(self, n, suffix, noun, before):
        return self.ordinal(n)

    def number_words(self, number: Number, gender="n"):
        return super().number_words(number, "n")

    def read_figure(self, text, match):
        reading = super().read_figure(text, match)
        if reading and match.group("pre") is None:
            tail = self.time_suffix.match(text, reading.end)
            if tail and re.fullmatch(r"\d{1,2}", match.group("num") or "") and int(match.group("num")) <= 12:
                return reading._replace(end=tail.end(), spoken=reading.spoken + " " + _ampm(tail.group()))
        return reading


def _ampm(written: str) -> str:
    return "a m" if "a" in written.lower() else "p m"


RULES = English()
