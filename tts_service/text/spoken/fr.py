"""French: "14 h 30" → "quatorze heures trente", "1er" → "premier", spaces as thousands marks,
"une" before feminine nouns."""

from __future__ import annotations

import re

from .common import SPACE, Rules, spell

MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre"]
_HOUR = re.compile(rf"{SPACE}?h{SPACE}?(\d{{2}})?(?![\w])")


class French(Rules):
    code = "fr"
    # Letter names, for what is spelt out (`<say-as interpret-as="characters">`).
    letter_names = dict(zip("abcdefghijklmnopqrstuvwxyz",
                            ("a|bé|cé|dé|e|effe|gé|ache|i|ji|ka|elle|emme|"
                             "enne|o|pé|qu|erre|esse|té|u|vé|double vé|ixe|i grec|zède").split("|")))
    group, decimal = ".", ","
    space_groups = True
    words = {"point": "point", "comma": "virgule", "minus": "moins", "plus": "plus", "percent": "pour cent",
             "to": "à", "of": "d'", "and_cents": "et", "over": "sur"}
    separators = {".": "point", ",": "virgule", ":": "", "/": "sur", "-": "à", "–": "à"}
    currencies = {
        "€": ("euro", "euros", "m", "centime", "centimes"), "EUR": ("euro", "euros", "m", "centime", "centimes"),
        "$": ("dollar", "dollars", "m", "cent", "cents"), "USD": ("dollar", "dollars", "m", "cent", "cents"),
        "£": ("livre", "livres", "f", "penny", "pence"), "CHF": ("franc suisse", "francs suisses", "m", "centime", "centimes"),
    }
    units = {
        "km/h": ("kilomètre heure", "kilomètres heure", "m"), "km": ("kilomètre", "kilomètres", "m"),
        "m": ("mètre", "mètres", "m"), "cm": ("centimètre", "centimètres", "m"), "mm": ("millimètre", "millimètres", "m"),
        "kg": ("kilogramme", "kilogrammes", "m"), "g": ("gramme", "grammes", "m"), "mg": ("milligramme", "milligrammes", "m"),
        "l": ("litre", "litres", "m"), "L": ("litre", "litres", "m"), "ml": ("millilitre", "millilitres", "m"),
        "°C": ("degré Celsius", "degrés Celsius", "m"), "°": ("degré", "degrés", "m"),
        "Mo": ("mégaoctet", "mégaoctets", "m"), "Go": ("gigaoctet", "gigaoctets", "m"), "To": ("téraoctet", "téraoctets", "m"),
        "MB": ("mégaoctet", "mégaoctets", "m"), "GB": ("gigaoctet", "gigaoctets", "m"),
        "min": ("minute", "minutes", "f"), "s": ("seconde", "secondes", "f"),
    }
    abbreviations = {
        "M.": "^Monsieur", "Mme": "Madame", "Mmes": "Mesdames", "Mlle": "Mademoiselle", "Dr": "docteur",
        "Pr": "professeur", "p. ex.": "par exemple", "etc.": "et cetera", "env.": "environ", "n°": "numéro",
        "N°": "numéro", "av. J.-C.": "avant Jésus-Christ", "apr. J.-C.": "après Jésus-Christ",
        "c.-à-d.": "c'est-à-dire", "cf.": "confer", "St": "Saint", "Ste": "Sainte", "bd": "boulevard",
    }
    titles = frozenset({"M.", "Mme", "Mlle", "Dr", "Pr", "n°", "N°", "St", "Ste"})
    ordinal_suffix = r"(?:er|re|ère|e|ème|nd|nde)(?![\w])"
    phone = (r"(?<![\w+.,])0[1-9](?:[ .]\d{2}){4}(?![\w])"
             r"|(?<![\w+])\+\d{1,3}(?:[ .\-]?\d{1,4}){2,5}(?![\w])")
    roman_context = r"\b(?:Louis|Henri|Charles|François|Napoléon|Jean-Paul|Benoît|Philippe|Léon|Pie|Élisabeth|chapitre|tome|acte)"
    versions = frozenset("version v python ios android windows macos java gpt php usb".split())
    stop_words = frozenset("de du des et ou en à au aux avec par pour que est sont était le la les un une sur".split())
    feminine_words = frozenset("heure heures minute minutes seconde secondes semaine semaines personne personnes "
                               "fois année années page pages journée journées voiture voitures femme femmes maison "
                               "maisons chose choses étape étapes tasse tasses cuillère cuillères ville villes place "
                               "places entreprise entreprises question questions raison raisons image images langue "
                               "langues règle règles tonne tonnes nuit nuits fleur fleurs part parts".split())
    feminine_end = re.compile(r"(?:tion|tions|sion|sions|té|tés|ette|ettes|ance|ances|ence|ences)$")

    def figure(self, text, start, end, written, pre, sign):
        if written.isdigit() and int(written) <= 24 and not pre and not sign:
            hour = _HOUR.match(text, end)
            if hour:
                minute = int(hour.group(1)) if hour.group(1) else 0
                if minute < 60:
                    return self.time_words(int(written), minute, None, "", "h"), hour.end()
        return super().figure(text, start, end, written, pre, sign)

    def time_words(self, h, m, s, before, suffixed):
        out = f"{self.cardinal(h, 'f')} heure{'s' if h > 1 else ''}"
        if m:
            out += f" {self.cardinal(m)}"
        return out

    def ordinal_words(self, n, suffix, noun, before):
        if n == 1:
            return "première" if suffix in ("re", "ère", "nde") else "premier"
        if n == 2 and suffix in ("nd", "nde"):
            return "second" if suffix == "nd" else "seconde"
        return spell("fr", n, "spellout-ordinal-masculine")

    def date_words(self, d, m, y, before=""):
        day = "premier" if d == 1 else self.cardinal(d)
        out = f"{day} {MONTHS[m - 1]}"
        return f"{out} {self.cardinal(y)}" if y is not None else out

    def roman_words(self, context, value, written):
        if context in ("chapitre", "tome", "acte"):
            return self.cardinal(value)
        return "premier" if value == 1 else self.cardinal(value)

    def range_words(self, first, second, before):
        return f"{first} à {second}" if not re.search(r"(?:^|\W)de\s*$", before) else f"{first} à {second}"

    def score_words(self, a, b):
        return f"{self.cardinal(a)} à {self.cardinal(b)}"

    def fraction_words(self, a, b, noun):
        name = {2: "demi", 3: "tiers", 4: "quart"}.get(b) or spell("fr", b, "spellout-ordinal-masculine")
        if a > 1 and b not in (3,):
            name += "s"
        return f"{self.cardinal(a, 'm')} {name}"

    def money_words(self, number, currency):
        words = super().money_words(number, currency)
        return words.replace("d' e", "d'e")


RULES = French()
