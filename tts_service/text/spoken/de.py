"""German: "am 3. Oktober" → "am dritten Oktober" (the ordinal's ending from the word before), years
as "neunzehnhundertneunundachtzig", "14:30 Uhr", "2:1" as a score."""

from __future__ import annotations

import re

from .common import SPACE, Rules, spell

MONTHS = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
          "November", "Dezember"]
_DATIVE = re.compile(r"(?:^|[^\w])(?:am|im|vom|zum|beim|zur|dem|den|des|einem|einen|ab dem|seit dem|bis zum)\s*$",
                     re.IGNORECASE)
_DEFINITE = re.compile(r"(?:^|[^\w])(?:der|die|das)\s*$", re.IGNORECASE)


class German(Rules):
    code = "de"
    # Letter names, for what is spelt out (`<say-as interpret-as="characters">`).
    letter_names = dict(zip("abcdefghijklmnopqrstuvwxyzäöüß",
                            ("a|be|ze|de|e|eff|ge|ha|i|jott|ka|ell|emm|enn|o|"
                             "pe|ku|err|ess|te|u|vau|we|ix|üpsilon|zett|ä|ö|ü|eszett").split("|")))
    group, decimal = ".", ","
    year_words = True
    words = {"point": "Punkt", "comma": "Komma", "minus": "minus", "plus": "plus", "percent": "Prozent",
             "to": "bis", "of": "", "and_cents": "und", "over": "durch"}
    separators = {".": "Punkt", ",": "Komma", ":": "zu", "/": "durch", "-": "bis", "–": "bis"}
    cardinal_rules = {"n": "spellout-numbering", "m": "spellout-cardinal-masculine",
                      "f": "spellout-cardinal-feminine"}
    ordinal_rules = {"m": "spellout-ordinal", "f": "spellout-ordinal"}
    currencies = {
        "€": ("Euro", "Euro", "m", "Cent", "Cent"), "EUR": ("Euro", "Euro", "m", "Cent", "Cent"),
        "$": ("Dollar", "Dollar", "m", "Cent", "Cent"), "USD": ("Dollar", "Dollar", "m", "Cent", "Cent"),
        "CHF": ("Franken", "Franken", "m", "Rappen", "Rappen"), "£": ("Pfund", "Pfund", "m", "Penny", "Pence"),
    }
    units = {
        "km/h": ("Kilometer pro Stunde", "Kilometer pro Stunde", "m"), "km": ("Kilometer", "Kilometer", "m"),
        "m": ("Meter", "Meter", "m"), "cm": ("Zentimeter", "Zentimeter", "m"), "mm": ("Millimeter", "Millimeter", "m"),
        "kg": ("Kilogramm", "Kilogramm", "m"), "g": ("Gramm", "Gramm", "m"), "mg": ("Milligramm", "Milligramm", "m"),
        "l": ("Liter", "Liter", "m"), "L": ("Liter", "Liter", "m"), "ml": ("Milliliter", "Milliliter", "m"),
        "°C": ("Grad Celsius", "Grad Celsius", "m"), "°": ("Grad", "Grad", "m"),
        "MB": ("Megabyte", "Megabyte", "m"), "GB": ("Gigabyte", "Gigabyte", "m"), "TB": ("Terabyte", "Terabyte", "m"),
        "min": ("Minute", "Minuten", "f"), "Min.": ("Minute", "Minuten", "f"), "h": ("Stunde", "Stunden", "f"),
        "Std.": ("Stunde", "Stunden", "f"), "s": ("Sekunde", "Sekunden", "f"), "kWh": ("Kilowattstunde", "Kilowattstunden", "f"),
    }
    abbreviations = {
        "z. B.": "zum Beispiel", "Z. B.": "Zum Beispiel", "usw.": "und so weiter", "bzw.": "beziehungsweise",
        "d. h.": "das heißt", "ca.": "circa", "Nr.": "Nummer", "Dr.": "Doktor", "Hr.": "Herr", "Prof.": "Professor",
        "u. a.": "unter anderem", "etc.": "et cetera", "S.": "^Seite", "Str.": "Straße", "inkl.": "inklusive",
        "evtl.": "eventuell", "ggf.": "gegebenenfalls", "mind.": "mindestens", "max.": "maximal",
        "Mio.": "Millionen", "Mrd.": "Milliarden", "Tel.": "Telefon", "v. a.": "vor allem",
    }
    titles = frozenset({"Nr.", "Dr.", "Hr.", "Prof.", "S.", "Str.", "Mio.", "Mrd.", "ca."})
    ordinal_suffix = r"\.(?=[ \u00a0][A-ZÄÖÜ])"
    phone = r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\d{2,4}){2,5}(?![\w])"
    roman_context = r"\b(?:Ludwig|Friedrich|Wilhelm|Karl|Heinrich|Otto|Papst Johannes Paul|Benedikt|Elisabeth|Kapitel|Teil|Band)"
    versions = frozenset("version v python ios android windows macos java gpt php usb".split())
    stop_words = frozenset("und oder in im am an auf aus bei mit nach von vor zu zum zur für bis ist sind war der die das".split())
    feminine_words = frozenset("frau person stunde woche nacht stadt zeit zahl art welt hand uhr tür maus "
                               "milch kuh wand bank tasse seite".split())
    feminine_end = re.compile(r"(?:ung|heit|keit|schaft|ion|tät|e|ik)$")
    time_suffix = re.compile(rf"{SPACE}?Uhr(?![\w])")
    large_numbers = frozenset({"Millionen", "Million", "Milliarden", "Mio", "Mrd"})

    def gender_of(self, word):
        if not word or not word[:1].isupper():
            return None
        return super().gender_of(word)

    def read_roman(self, text, match):
        reading = super().read_roman(text, match)
        if reading and re.match(r"\.[ \u00a0][a-zäöüß]", text[reading.end:reading.end + 3]):
            reading = reading._replace(end=reading.end + 1)  # "Ludwig XIV. baute": the ordinal's dot
        return reading

    def roman_words(self, context, value, written):
        if context in ("Kapitel", "Teil", "Band"):
            return self.cardinal(value)
        return "der " + spell("de", value, "spellout-ordinal").capitalize()

    def year(self, n):
        return spell("de", n, "spellout-numbering-year")

    def is_year(self, n, noun, before):
        return 1100 <= n <= 1999 and not (noun and noun[:1].isupper() and noun not in MONTHS)

    def ordinal_inflected(self, n, before):
        if _DATIVE.search(before):
            return spell("de", n, "spellout-ordinal-n")
        if _DEFINITE.search(before):
            return spell("de", n, "spellout-ordinal")
        return spell("de", n, "spellout-ordinal-r")

    def ordinal_words(self, n, suffix, noun, before):
        if noun in MONTHS or _DATIVE.search(before) or _DEFINITE.search(before):
            return self.ordinal_inflected(n, before)
        return None

    def date_words(self, d, m, y, before=""):
        out = f"{self.ordinal_inflected(d, before)} {MONTHS[m - 1]}"
        return f"{out} {self.year(y)}" if y is not None else out

    def figure(self, text, start, end, written, pre, sign):
        match = re.fullmatch(r"(\d{1,2})\.(\d{2})", written)
        if match and self.time_suffix.match(text, end) and int(match.group(1)) <= 24 and int(match.group(2)) < 60:
            suffix = self.time_suffix.match(text, end)
            return self.time_words(int(match.group(1)), int(match.group(2)), None, "", suffix.group()), suffix.end()
        if written.isdigit() and not pre and not sign:
            suffix = self.time_suffix.match(text, end)
            if suffix and int(written) <= 24:
                return self.time_words(int(written), 0, None, "", suffix.group()), suffix.end()
        return super().figure(text, start, end, written, pre, sign)

    def time_words(self, h, m, s, before, suffixed):
        hour = self.cardinal(h, "f") if h != 1 else "ein"
        out = f"{hour} Uhr" + (f" {self.cardinal(m)}" if m else "")
        return out + (f" und {self.cardinal(s)} Sekunden" if s else "")

    def score_words(self, a, b):
        return f"{self.cardinal(a)} zu {self.cardinal(b)}"

    def range_words(self, first, second, before):
        return f"{first} bis {second}"

    def fraction_words(self, a, b, noun):
        name = "halb" if b == 2 else spell("de", b, "spellout-numbering") + ("tel" if b < 20 else "stel")
        if b == 3:
            name = "drittel"
        name = name.capitalize() if b != 2 else name
        return f"{'ein' if a == 1 else self.cardinal(a)} {name}"


RULES = German()
