"""Spanish: gender agreement from the noun that follows, apocopated forms, Spain's and Latin
America's "1.500,25" with the English "1,250.50" where unambiguous, Roman numerals only in context."""

from __future__ import annotations

import re

from .common import LETTER, SPACE, Number, Rules, spell

# Nouns that are feminine without the endings the heuristic knows, and masculine ones that have them.
FEMININE = frozenset("""
vez veces mano manos foto fotos moto motos radio imagen imágenes noche noches tarde tardes clase clases
calle calles gente parte partes fuente fuentes llave llaves mente muerte suerte nube nubes leche carne
carnes sal miel flor flores ley leyes red redes pared paredes luz luces voz voces cruz cruces nariz
raíz raíces paz piel pieles cárcel señal señales catedral catedrales capital mujer mujeres madre madres
serie series especie especies base bases frase frases fase fases clave claves orden órdenes
muestra torre torres nave naves sede sedes cumbre costumbre lumbre hambre sangre tos crisis tesis
dosis hipótesis síntesis elipse fiebre fe
""".split())
MASCULINE = frozenset("""
día días mapa mapas problema problemas sistema sistemas programa programas idioma idiomas tema temas
clima climas planeta planetas poema poemas drama dramas esquema esquemas dilema dilemas enigma enigmas
diploma diplomas dogma dogmas lema lemas síntoma síntomas teorema teoremas aroma aromas fantasma
fantasmas crucigrama diagrama diagramas panorama pijama pijamas carisma prisma trauma traumas
paradigma paradigmas plasma magma holograma organigrama telegrama cometa cometas sofá sofás papá
papás tranvía tranvías mediodía guardia guardias pirata piratas atleta atletas turista turistas
artista artistas dentista dentistas periodista periodistas futbolista futbolistas deportista
deportistas especialista especialistas policía policías colega colegas
dálmata dálmatas koala koalas panda pandas gorila gorilas puma pumas yoga karma tequila tequilas
pentagrama pentagramas
kilogramo kilogramos gramo gramos
millón millones billón billones mil
""".split())
_FEMININE_END = re.compile(r"(?:a|as|ción|ciones|sión|siones|dad|dades|tad|tades|tud|tudes|umbre|umbres"
                           r"|ie|ies|triz|trices|ez)$")
_MASCULINE_END = re.compile(r"(?:ez)$")
_ARTICLE_F = re.compile(rf"(?:^|[^\w])(?:la|las|una|unas|esas|estas|aquellas|otras|sus|a\s+la|a\s+las)\s*$",
                        re.IGNORECASE)
_ARTICLE = re.compile(r"(?:^|[^\w])(?:el|la|del|al|desde\s+el|hasta\s+el|para\s+el)\s*$", re.IGNORECASE)
_RANGE_OPEN = re.compile(r"(?:^|[^\w])(de|del|entre|desde|en)\s*$", re.IGNORECASE)

MONTHS = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
          "octubre", "noviembre", "diciembre"]
# Names of monarchs and popes: their number is an ordinal up to X ("Felipe sexto"), a cardinal
# above ("Luis catorce"). After any other capitalised word the number is a sequel's or a part's,
# always a cardinal ("Rocky dos", "Final Fantasy siete").
REGNAL = ("Felipe|Carlos|Juan|Luis|Fernando|Alfonso|Enrique|Pedro|Jaime|Pío|Pablo|Benedicto|León|"
          "Gregorio|Eduardo|Jorge|Guillermo|Napoleón|Francisco|Clemente|Urbano|Inocencio|Sixto|"
          "Alejandro|Federico|Ricardo|Amadeo|Ramiro|Sancho|Isabel|María|Catalina|Juana|"
          "Victoria|Ana|Leonor|Cristina|Urraca|Carlota|Margarita|Ramsés|Tutmosis|Amenhotep|Ptolomeo|"
          "Cleopatra|Darío|Ciro|Jerjes|Antíoco|Herodes|Constantino|Justiniano|Teodosio|Otón|Nicolás|"
          "Iván|Gustavo|Cristián|Leopoldo|Alberto|Balduino|Humberto|Manuel|Sebastián|Miguel|Basilio|"
          "Andrés|Casimiro|Segismundo|Ladislao|Wenceslao|Rodolfo|Maximiliano|Harald|Olaf|Haakon|Magnus|"
          "Canuto|Jacobo|Bonifacio|Julio|Adriano|Marcelo|Celestino|Esteban|Martín|Calixto|Honorio|"
          "Eugenio|Félix|Silvestre|Abderramán|Solimán|Mehmed|Selim|Murad|Guillermina|Beatriz|Juliana")
_REGNAL_NAMES = frozenset(REGNAL.split("|"))
REGNAL_FEMININE = frozenset("Isabel María Catalina Juana Victoria Ana Leonor Cristina Urraca Carlota "
                            "Margarita Cleopatra Guillermina Beatriz Juliana".split())
ROMAN_CARDINAL = frozenset("siglo siglos capítulo capítulos tomo tomos volumen volúmenes parte libro "
                           "acto título canto lección fase nivel".split())


class Spanish(Rules):
    code = "es"
    # Letter names, for what is spelt out (`<say-as interpret-as="characters">`).
    letter_names = dict(zip("abcdefghijklmnñopqrstuvwxyz",
                            ("a|be|ce|de|e|efe|ge|hache|i|jota|ka|ele|eme|"
                             "ene|eñe|o|pe|cu|erre|ese|te|u|uve|uve doble|equis|i griega|zeta").split("|")))
    group, decimal = ".", ","
    words = {"point": "punto", "comma": "coma", "minus": "menos", "plus": "más", "percent": "por ciento",
             "to": "a", "of": "de", "and_cents": "con", "over": "entre", "and": "y"}
    separators = {".": "punto", ",": "coma", ":": "", "/": "barra", "-": "guion", "–": "guion"}
    currencies = {
        "€": ("euro", "euros", "m", "céntimo", "céntimos"),
        "EUR": ("euro", "euros", "m", "céntimo", "céntimos"),
        "$": ("dólar", "dólares", "m", "centavo", "centavos"),
        "US$": ("dólar", "dólares", "m", "centavo", "centavos"),
        "USD": ("dólar", "dólares", "m", "centavo", "centavos"),
        "£": ("libra", "libras", "f", "penique", "peniques"),
        "GBP": ("libra", "libras", "f", "penique", "peniques"),
        "MXN": ("peso mexicano", "pesos mexicanos", "m", "centavo", "centavos"),
        "ARS": ("peso argentino", "pesos argentinos", "m", "centavo", "centavos"),
        "COP": ("peso colombiano", "pesos colombianos", "m", "centavo", "centavos"),
        "CLP": ("peso chileno", "pesos chilenos", "m", "centavo", "centavos"),
        "¥": ("yen", "yenes", "m", "sen", "sen"),
        "JPY": ("yen", "yenes", "m", "sen", "sen"),
    }
    units = {
        "km/h": ("kilómetro por hora", "kilómetros por hora", "m"),
        "m/s": ("metro por segundo", "metros por segundo", "m"),
        "km²": ("kilómetro cuadrado", "kilómetros cuadrados", "m"),
        "m²": ("metro cuadrado", "metros cuadrados", "m"),
        "m³": ("metro cúbico", "metros cúbicos", "m"),
        "km": ("kilómetro", "kilómetros", "m"), "m": ("metro", "metros", "m"),
        "cm": ("centímetro", "centímetros", "m"), "mm": ("milímetro", "milímetros", "m"),
        "kg": ("kilogramo", "kilogramos", "m"), "g": ("gramo", "gramos", "m"),
        "mg": ("miligramo", "miligramos", "m"), "t": ("tonelada", "toneladas", "f"),
        "l": ("litro", "litros", "m"), "L": ("litro", "litros", "m"),
        "ml": ("mililitro", "mililitros", "m"), "mL": ("mililitro", "mililitros", "m"),
        "cl": ("centilitro", "centilitros", "m"),
        "°C": ("grado centígrado", "grados centígrados", "m"), "ºC": ("grado centígrado", "grados centígrados", "m"),
        "° C": ("grado centígrado", "grados centígrados", "m"),
        "°F": ("grado Fahrenheit", "grados Fahrenheit", "m"), "°": ("grado", "grados", "m"),
        "KB": ("kilobyte", "kilobytes", "m"), "kB": ("kilobyte", "kilobytes", "m"),
        "MB": ("megabyte", "megabytes", "m"), "GB": ("gigabyte", "gigabytes", "m"),
        "TB": ("terabyte", "terabytes", "m"), "Mbps": ("megabit por segundo", "megabits por segundo", "m"),
        "GHz": ("gigahercio", "gigahercios", "m"), "MHz": ("megahercio", "megahercios", "m"),
        "Hz": ("hercio", "hercios", "m"), "kW": ("kilovatio", "kilovatios", "m"),
        "kWh": ("kilovatio hora", "kilovatios hora", "m"), "W": ("vatio", "vatios", "m"),
        "V": ("voltio", "voltios", "m"), "mAh": ("miliamperio hora", "miliamperios hora", "m"),
        "min": ("minuto", "minutos", "m"), "h": ("hora", "horas", "f"), "s": ("segundo", "segundos", "m"),
        "ms": ("milisegundo", "milisegundos", "m"), "seg": ("segundo", "segundos", "m"),
        "mph": ("milla por hora", "millas por hora", "f"), "px": ("píxel", "píxeles", "m"),
        "pts": ("punto", "puntos", "m"), "kcal": ("kilocaloría", "kilocalorías", "f"),
    }
    abbreviations = {
        "Sr.": "señor", "Sra.": "señora", "Srta.": "señorita", "Sres.": "señores", "Dr.": "doctor",
        "Dra.": "doctora", "Dres.": "doctores", "Ud.": "usted", "Uds.": "ustedes", "Vd.": "usted",
        "Vds.": "ustedes", "D.": "^don", "Dña.": "doña", "Prof.": "profesor", "Profa.": "profesora",
        "Lic.": "licenciado", "Ing.": "ingeniero", "Arq.": "arquitecto", "Sto.": "santo", "Sta.": "santa",
        "pág.": "página", "págs.": "páginas", "Pág.": "página", "p.": "^página",
        "n.º": "número", "nº": "número", "n.°": "número", "Nº": "número", "N.º": "número", "núm.": "número",
        "Núm.": "número", "nro.": "número", "Avda.": "avenida", "Av.": "avenida", "avda.": "avenida",
        "c/": "calle", "C/": "calle", "p. ej.": "por ejemplo", "P. ej.": "por ejemplo", "etc.": "etcétera",
        "aprox.": "aproximadamente", "máx.": "máximo", "mín.": "mínimo", "EE. UU.": "Estados Unidos",
        "EE.UU.": "Estados Unidos", "S. A.": "sociedad anónima", "S. L.": "sociedad limitada",
        "a. C.": "antes de Cristo", "d. C.": "después de Cristo", "tel.": "teléfono", "Tel.": "teléfono",
        "tlf.": "teléfono", "vs.": "contra", "ej.": "ejemplo", "Ej.": "ejemplo", "admón.": "administración",
        "dcha.": "derecha", "izq.": "izquierda", "izqda.": "izquierda", "cap.": "capítulo", "art.": "artículo",
        "Art.": "artículo", "depto.": "departamento", "Dpto.": "departamento", "aprox": "aproximadamente",
        "km/h": "kilómetros por hora", "h.": "^horas",
    }
    titles = frozenset({"Sr.", "Sra.", "Srta.", "Sres.", "Dr.", "Dra.", "Dres.", "D.", "Dña.", "Prof.",
                        "Profa.", "Lic.", "Ing.", "Arq.", "Sto.", "Sta.", "pág.", "Pág.", "págs.", "n.º",
                        "N.º", "núm.", "Núm.", "nro.", "Avda.", "Av.", "avda.", "art.", "Art.", "cap."})
    ordinal_suffix = r"\.?(?:er|[ºª°](?![CF]))(?![\w])|\.?(?:os|as)(?![\w])"
    phone = (r"(?<![\w.,+])(?:\+\d{2,3}" + SPACE + r"?)?[6789]\d{2}(?:" + SPACE + r"\d{3}" + SPACE + r"\d{3}|"
             + SPACE + r"\d{2}" + SPACE + r"\d{2}" + SPACE + r"\d{2})(?![\w,.]\d)(?!\d)"
             r"|(?<![\w+])\+\d{1,3}(?:[ .\-]?\d{2,4}){2,5}(?![\w])")
    roman_context = (rf"\b(?:siglos?|[Ss]iglos?|capítulos?|[Cc]apítulo|[Tt]omos?|volumen|[Vv]olumen|parte|"
                     rf"[Pp]arte|libro|[Ll]ibro|acto|[Aa]cto|título|[Tt]ítulo|canto|lección|fase|[Ff]ase|nivel|"
                     rf"{REGNAL}|[A-ZÁÉÍÓÚ][a-záéíóúñ]+)")
    versions = frozenset("versión version versiones v python ios android windows macos java node html css "
                         "gpt php bluetooth usb wifi wi-fi ubuntu debian linux chrome firefox safari "
                         "excel office angular react vue django flask kotlin swift go rust ruby perl "
                         "llama claude gemini mistral qwen gemma phi".split())
    stop_words = frozenset("de del y o u e en a al con por para que es fue son era se lo la las los el "
                           "un una hasta desde entre sobre como más menos".split())
    large_numbers = frozenset({"millón", "millones", "billón", "billones", "mil"})
    thousands = frozenset({"mil"})
    percent_gender = "n"
    time_suffix = re.compile(rf"{SPACE}?(?:h|hs|hrs|horas)(?![\w])")

    def gender_of(self, word: str | None) -> str | None:
        if not word:
            return None
        low = word.lower()
        if low in self.stop_words:
            return None
        if low in FEMININE:
            return "f"
        if low in MASCULINE or not low[:1].isalpha():
            return "m"
        if low.endswith("ez") and low not in ("vez", "nuez", "tez", "sordidez", "rapidez", "vejez", "niñez",
                                               "madurez", "validez", "timidez", "fluidez", "lucidez"):
            return "m"
        return "f" if _FEMININE_END.search(low) else "m"

    def large_words(self, number: Number, noun: str) -> str:
        """"1,5 millones" as a Spanish speaker says it: "un millón y medio"; "2,5 millones": "dos
        millones y medio"; other fractions as decimals ("dos coma tres millones")."""
        if number.fraction == "5" and number.point is False:
            singular = {"millones": "millón", "billones": "billón"}.get(noun, noun)
            plural = {"millón": "millones", "billón": "billones"}.get(noun, noun)
            whole = self.cardinal(number.whole, "m")
            if whole is not None:
                return f"{whole} {singular if number.whole == 1 else plural} y medio"
        return super().large_words(number, noun)

    def gender_before(self, before: str) -> str | None:
        return "f" if _ARTICLE_F.search(before) else None

    def article_before(self, before: str) -> bool:
        return bool(_ARTICLE.search(before))

    def ordinal(self, n: int, gender: str = "m", before_noun: bool = False) -> str | None:
        if n >= 10 ** 9:
            return None
        if gender == "f":
            return spell(self.code, n, "spellout-ordinal-feminine")
        return spell(self.code, n, "spellout-ordinal-masculine-adjective" if before_noun
                     else "spellout-ordinal-masculine")

    def ordinal_words(self, n: int, suffix: str, noun: str | None, before: str) -> str | None:
        mark = suffix.lstrip(".")
        feminine = mark in ("ª", "as")
        noun_follows = bool(noun) and noun.lower() not in self.stop_words
        words = self.ordinal(n, "f" if feminine else "m", before_noun=mark == "er" or noun_follows)
        if words and mark in ("os", "as"):
            words = " ".join(w + "s" for w in words.split())
        return words

    def roman_words(self, context: str, value: int, written: str) -> str | None:
        low = context.lower()
        if low in ROMAN_CARDINAL:
            return self.cardinal(value)
        known = context in _REGNAL_NAMES
        if not known and (len(written) < 2 or set(written) - set("IVX") or value > 39):
            return None
        if known and value <= 10:
            return self.ordinal(value, "f" if context in REGNAL_FEMININE else "m")
        return self.cardinal(value)

    def date_words(self, d: int, m: int, y: int | None, before: str = "") -> str | None:
        day = self.cardinal(d)
        out = f"{day} de {MONTHS[m - 1]}"
        return f"{out} de {self.year(y)}" if y is not None else out

    def time_words(self, h: int, m: int, s: int | None, before: str, suffixed: bool) -> str | None:
        hour = self.cardinal(h, "f")
        if s is not None:
            return f"{hour} horas, {self.cardinal(m)} minutos y {self.cardinal(s)} segundos"
        if m == 0:
            return f"{hour} horas" if suffixed and h != 1 else f"{hour} hora" if suffixed else hour
        if m < 10:
            return f"{hour} y {self.cardinal(m)}"
        return f"{hour} {self.cardinal(m)}"

    def range_words(self, first: str, second: str, before: str) -> str:
        opened = _RANGE_OPEN.search(before)
        if opened:
            return f"{first} {'y' if opened.group(1).lower() == 'entre' else 'a'} {second}"
        return f"de {first} a {second}"

    def fraction_words(self, a: int, b: int, noun: str | None) -> str:
        gender = self.gender_of(noun)
        if a == 1 and b == 2 and gender:
            return "media" if gender == "f" else "medio"
        if b == 2:
            name = "medio"
        elif b == 3:
            name = "tercio"
        else:
            name = spell(self.code, b, "spellout-ordinal-masculine")
        return f"{self.cardinal(a, 'm')} {name}{'s' if a != 1 else ''}"

    def number_words(self, number: Number, gender: str = "n") -> str | None:
        if number.fraction is None and number.whole >= 1_000_000 and number.whole % 1_000_000 == 0 \
                and gender in ("m", "f"):
            return self.cardinal(number.whole, gender) + " de"  # "dos millones de personas"
        return super().number_words(number, gender)

    def unit_words(self, number: Number, unit: tuple) -> str:
        singular, plural, gender = unit
        name = singular if number.whole == 1 and not number.fraction else plural
        return f"{Rules.number_words(self, number, gender)} {name}"


RULES = Spanish()
_ = LETTER
