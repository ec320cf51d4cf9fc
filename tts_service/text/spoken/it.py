"""Italian: "1°" → "primo", regnal numbers as ordinals ("Luigi quattordicesimo"), "le 14:30" →
"le quattordici e trenta", "una" before feminine nouns."""

from __future__ import annotations

import re

from .common import Rules, spell

MONTHS = ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
          "ottobre", "novembre", "dicembre"]


class Italian(Rules):
    code = "it"
    # Letter names, for what is spelt out (`<say-as interpret-as="characters">`).
    letter_names = dict(zip("abcdefghijklmnopqrstuvwxyz",
                            ("a|bi|ci|di|e|effe|gi|acca|i|i lunga|cappa|elle|emme|"
                             "enne|o|pi|cu|erre|esse|ti|u|vu|doppia vu|ics|ipsilon|zeta").split("|")))
    group, decimal = ".", ","
    words = {"point": "punto", "comma": "virgola", "minus": "meno", "plus": "più", "percent": "per cento",
             "to": "a", "of": "di", "and_cents": "e", "over": "su"}
    separators = {".": "punto", ",": "virgola", ":": "", "/": "barra", "-": "trattino", "–": "a"}
    currencies = {
        "€": ("euro", "euro", "m", "centesimo", "centesimi"), "EUR": ("euro", "euro", "m", "centesimo", "centesimi"),
        "$": ("dollaro", "dollari", "m", "centesimo", "centesimi"), "USD": ("dollaro", "dollari", "m", "centesimo", "centesimi"),
        "£": ("sterlina", "sterline", "f", "penny", "pence"),
    }
    units = {
        "km/h": ("chilometro orario", "chilometri orari", "m"), "km": ("chilometro", "chilometri", "m"),
        "m": ("metro", "metri", "m"), "cm": ("centimetro", "centimetri", "m"), "kg": ("chilogrammo", "chilogrammi", "m"),
        "g": ("grammo", "grammi", "m"), "l": ("litro", "litri", "m"), "ml": ("millilitro", "millilitri", "m"),
        "°C": ("grado", "gradi", "m"), "°": ("grado", "gradi", "m"), "MB": ("megabyte", "megabyte", "m"),
        "GB": ("gigabyte", "gigabyte", "m"), "min": ("minuto", "minuti", "m"), "h": ("ora", "ore", "f"),
    }
    abbreviations = {
        "Sig.": "signor", "Sig.ra": "signora", "Dott.": "dottor", "Dott.ssa": "dottoressa", "ecc.": "eccetera",
        "p. es.": "per esempio", "es.": "ad esempio", "n.": "^numero", "pag.": "pagina", "ca.": "circa",
        "Prof.": "professor", "Avv.": "avvocato", "Ing.": "ingegner", "Sig.na": "signorina",
    }
    titles = frozenset({"Sig.", "Sig.ra", "Dott.", "Dott.ssa", "Prof.", "Avv.", "Ing.", "Sig.na", "pag."})
    ordinal_suffix = r"[°ºª](?![CF\w])"
    phone = r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\d{2,4}){2,5}(?![\w])|(?<![\w+.,])3\d{2} \d{3} \d{3,4}(?![\w])"
    roman_context = r"\b(?:Luigi|Carlo|Enrico|Vittorio Emanuele|Umberto|Federico|Giovanni Paolo|Benedetto|Pio|Leone|Gregorio|Elisabetta|Napoleone|capitolo|Capitolo|secolo)"
    versions = frozenset("versione v python ios android windows macos java gpt php usb".split())
    stop_words = frozenset("di del della e o in a al alla con per che è sono era il lo la le gli un una da su".split())
    feminine_words = frozenset("mano radio foto moto volta volte notte notti parte parti chiave chiavi "
                               "persone ore".split())
    masculine_words = frozenset("problema problemi sistema sistemi programma programmi tema temi clima "
                                "giorno giorni pianeta".split())
    feminine_end = re.compile(r"(?:a|ione|ioni|tà)$")

    def ordinal_words(self, n, suffix, noun, before):
        return spell("it", n, "spellout-ordinal-feminine" if suffix == "ª" else "spellout-ordinal-masculine")

    def roman_words(self, context, value, written):
        if context.lower() == "capitolo":
            return self.cardinal(value)
        return spell("it", value, "spellout-ordinal-feminine" if context == "Elisabetta"
                     else "spellout-ordinal-masculine")

    def date_words(self, d, m, y, before=""):
        day = "primo" if d == 1 else self.cardinal(d)
        out = f"{day} {MONTHS[m - 1]}"
        return f"{out} {self.cardinal(y)}" if y is not None else out

    def time_words(self, h, m, s, before, suffixed):
        hour = self.cardinal(h, "f")
        return f"{hour} e {self.cardinal(m)}" if m else hour

    def range_words(self, first, second, before):
        if re.search(r"(?:^|\W)(?:da|dal|tra|fra)\s*$", before):
            return f"{first} a {second}"
        return f"da {first} a {second}"

    def fraction_words(self, a, b, noun):
        name = {2: "mezzo", 3: "terzo", 4: "quarto"}.get(b) or spell("it", b, "spellout-ordinal-masculine")
        if a > 1:
            name = name[:-1] + "i"
        return f"{self.cardinal(a, 'm')} {name}"

    def money_words(self, number, currency):
        return super().money_words(number, currency).replace(" di ", " di ")


RULES = Italian()
