"""Portuguese: "2 horas" → "duas horas", "1º"/"1ª", "14h30", "R$ 5,99" → "cinco reais e noventa e
nove centavos", "3 de maio de 2024"."""

from __future__ import annotations

import re

from .common import SPACE, Rules, spell

MONTHS = ["janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro",
          "outubro", "novembro", "dezembro"]
_HOUR = re.compile(rf"{SPACE}?h{SPACE}?(\d{{2}})?(?![\w])")


class Portuguese(Rules):
    code = "pt"
    # Letter names, for what is spelt out (`<say-as interpret-as="characters">`).
    letter_names = dict(zip("abcdefghijklmnopqrstuvwxyz",
                            ("á|bê|cê|dê|é|efe|gê|agá|i|jota|cá|ele|eme|"
                             "ene|ó|pê|quê|erre|esse|tê|u|vê|dáblio|xis|ípsilon|zê").split("|")))
    group, decimal = ".", ","
    words = {"point": "ponto", "comma": "vírgula", "minus": "menos", "plus": "mais", "percent": "por cento",
             "to": "a", "of": "de", "and_cents": "e", "over": "sobre"}
    separators = {".": "ponto", ",": "vírgula", ":": "", "/": "barra", "-": "hífen", "–": "a"}
    currencies = {
        "R$": ("real", "reais", "m", "centavo", "centavos"), "BRL": ("real", "reais", "m", "centavo", "centavos"),
        "€": ("euro", "euros", "m", "cêntimo", "cêntimos"), "EUR": ("euro", "euros", "m", "cêntimo", "cêntimos"),
        "US$": ("dólar", "dólares", "m", "centavo", "centavos"), "$": ("dólar", "dólares", "m", "centavo", "centavos"),
        "USD": ("dólar", "dólares", "m", "centavo", "centavos"), "£": ("libra", "libras", "f", "péni", "pénis"),
    }
    units = {
        "km/h": ("quilômetro por hora", "quilômetros por hora", "m"), "km": ("quilômetro", "quilômetros", "m"),
        "m": ("metro", "metros", "m"), "cm": ("centímetro", "centímetros", "m"), "kg": ("quilo", "quilos", "m"),
        "g": ("grama", "gramas", "m"), "l": ("litro", "litros", "m"), "ml": ("mililitro", "mililitros", "m"),
        "°C": ("grau Celsius", "graus Celsius", "m"), "°": ("grau", "graus", "m"), "MB": ("megabyte", "megabytes", "m"),
        "GB": ("gigabyte", "gigabytes", "m"), "min": ("minuto", "minutos", "m"), "s": ("segundo", "segundos", "m"),
    }
    abbreviations = {
        "Sr.": "senhor", "Sra.": "senhora", "Dr.": "doutor", "Dra.": "doutora", "p. ex.": "por exemplo",
        "etc.": "etcétera", "nº": "número", "n.º": "número", "Nº": "número", "pág.": "página", "aprox.": "aproximadamente",
        "Av.": "avenida", "R.": "^Rua", "Prof.": "professor", "Profa.": "professora", "máx.": "máximo", "mín.": "mínimo",
    }
    titles = frozenset({"Sr.", "Sra.", "Dr.", "Dra.", "nº", "n.º", "Nº", "pág.", "Av.", "R.", "Prof.", "Profa."})
    ordinal_suffix = r"\.?[ºª°](?![CF\w])"
    phone = r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\d{2,5}){2,5}(?![\w])|(?<![\w+.,])9\d{3,4}-\d{4}(?![\w])"
    roman_context = r"\b(?:Pedro|João|Manuel|Dom Pedro|Luís|Carlos|Afonso|Sebastião|Maria|Isabel|século|Século|capítulo)"
    versions = frozenset("versão v python ios android windows macos java gpt php usb".split())
    stop_words = frozenset("de do da dos das e ou em no na a ao à com por para que é são era o os as um uma".split())
    feminine_words = frozenset("mão mãos foto fotos tarde tardes noite noites vez vezes parte partes gente "
                               "cidade cidades imagem imagens viagem viagens".split())
    masculine_words = frozenset("dia dias mapa mapas problema problemas sistema sistemas programa programas "
                                "tema temas idioma idiomas planeta clima".split())
    feminine_end = re.compile(r"(?:a|as|ção|ções|dade|dades|agem|agens)$")
    time_suffix = re.compile(rf"{SPACE}?h(?![\w])")

    def figure(self, text, start, end, written, pre, sign):
        if written.isdigit() and int(written) <= 24 and not pre and not sign:
            hour = _HOUR.match(text, end)
            if hour:
                minute = int(hour.group(1)) if hour.group(1) else 0
                if minute < 60:
                    return self.time_words(int(written), minute, None, "", "h"), hour.end()
        return super().figure(text, start, end, written, pre, sign)

    def ordinal_words(self, n, suffix, noun, before):
        return spell("pt", n, "spellout-ordinal-feminine" if "ª" in suffix else "spellout-ordinal-masculine")

    def roman_words(self, context, value, written):
        if context.lower() in ("século", "capítulo"):
            return self.cardinal(value)
        return spell("pt", value, "spellout-ordinal-feminine" if context in ("Maria", "Isabel")
                     else "spellout-ordinal-masculine")

    def date_words(self, d, m, y, before=""):
        day = "primeiro" if d == 1 else self.cardinal(d)
        out = f"{day} de {MONTHS[m - 1]}"
        return f"{out} de {self.cardinal(y)}" if y is not None else out

    def time_words(self, h, m, s, before, suffixed):
        hour = self.cardinal(h, "f")
        if m:
            return f"{hour} e {self.cardinal(m)}"
        return f"{hour} hora{'s' if h != 1 else ''}" if suffixed or True else hour

    def range_words(self, first, second, before):
        if re.search(r"(?:^|\W)(?:de|do|da|entre)\s*$", before):
            return f"{first} a {second}"
        return f"de {first} a {second}"

    def fraction_words(self, a, b, noun):
        name = {2: "meio", 3: "terço", 4: "quarto"}.get(b) or spell("pt", b, "spellout-ordinal-masculine")
        return f"{self.cardinal(a, 'm')} {name}{'s' if a > 1 else ''}"


RULES = Portuguese()
