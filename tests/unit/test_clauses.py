"""Where a streamed session's first clause may end before its sentence does (engines that need whole texts)."""

from __future__ import annotations

import pytest

from tts_service.speech.clauses import FIRST_CLAUSE_MIN_WORDS, ClauseCutter, first_clause_end

LONG = ("Claro que sí, te explico cómo funciona el registro en nuestra plataforma, que es bastante sencillo "
        "y solo te llevará unos minutos con tus documentos a mano.")


def first_clause(text: str, min_words: int) -> str:
    return text[:first_clause_end(text, min_words)]


@pytest.mark.parametrize("min_words, clause", [
    (1, "Claro que sí, "),
    (3, "Claro que sí, "),
    (4, "Claro que sí, te explico cómo funciona el registro en nuestra plataforma, "),  # words before earlier commas count
    (12, "Claro que sí, te explico cómo funciona el registro en nuestra plataforma, "),
    (13, ""),
])
def test_the_first_comma_after_enough_words_ends_the_clause(min_words, clause):
    assert first_clause(LONG, min_words) == clause


def test_the_clause_ends_at_whitespace_so_its_words_are_whole():
    end = first_clause_end(LONG, FIRST_CLAUSE_MIN_WORDS)
    assert end and LONG[end - 1].isspace()
    assert LONG[:end].split() + LONG[end:].split() == LONG.split()


@pytest.mark.parametrize("text", [
    "uno dos tres cuatro cinco seis siete ocho,",  # the next word has not come: the comma may not end it
    "Cuesta 1,5 euros o 2,75 con la tarifa de siempre",  # decimal commas
    "Hola, ¿qué tal?",  # too few words before the comma
    "— ¡ ¿ … « » —, hola",  # marks are not words
    "",
])
def test_no_clause_end_yet(text):
    assert first_clause_end(text, 3) == 0


@pytest.mark.parametrize("text, clause", [
    ("Te lo dije ayer; mañana lo vemos", "Te lo dije ayer; "),
    ("Lo que necesitas es esto: un correo", "Lo que necesitas es esto: "),
    ("Me dijo «hasta luego amigo», y se fue", "Me dijo «hasta luego amigo», "),
    ("uno dos tres,\ncuatro", "uno dos tres,\n"),
])
def test_semicolons_colons_quotes_and_newlines(text, clause):
    assert first_clause(text, 3) == clause


def test_the_threshold_keeps_short_sentences_whole():
    assert FIRST_CLAUSE_MIN_WORDS > 2
    assert first_clause_end("Buenos días, ¿cómo estás? ", FIRST_CLAUSE_MIN_WORDS) == 0
    assert first_clause_end("Por supuesto, con mucho gusto. ", FIRST_CLAUSE_MIN_WORDS) == 0


def test_time_is_linear_in_the_text():
    import time

    text = "palabra, " * 20000
    started = time.perf_counter()
    assert first_clause_end(text, 10 ** 6) == 0
    assert time.perf_counter() - started < 1.0


# -- the cutter ---------------------------------------------------------------------------------
def test_the_cutter_hands_out_sentences_as_they_end_and_holds_the_rest():
    cutter = ClauseCutter()
    assert cutter.feed("Hola. ¿Qué tal") == ["Hola. "]
    assert cutter.pending == "¿Qué tal"
    assert cutter.feed(" estás? Bien") == ["¿Qué tal estás? "]
    assert cutter.feed("", flush=True) == ["Bien"]
    assert cutter.pending == ""


def test_the_first_clause_may_end_at_a_comma_and_later_ones_wait_for_their_sentence():
    cutter = ClauseCutter(first_min_words=3)
    assert cutter.feed("Claro que sí, te lo explico ahora") == ["Claro que sí, "]
    cutter.first_done = True
    assert cutter.feed(" mismo, con calma") == []
    assert cutter.feed(". Luego") == ["te lo explico ahora mismo, con calma. "]


def test_a_clause_with_no_end_in_sight_is_cut_at_a_space():
    cutter = ClauseCutter(max_chars=20)
    cutter.first_done = True
    out = cutter.feed("palabra " * 10)
    assert out and all(len(clause) <= 80 for clause in out)
    assert cutter.pending and len(cutter.pending) <= 20 + len("palabra ")


def test_marks_alone_are_never_a_clause():
    cutter = ClauseCutter()
    assert cutter.feed("... ") == []
    assert cutter.feed("", flush=True) == []


# -- how much of a stream's text may be read before the rest arrives ---------------------------
@pytest.mark.parametrize("context, text, ready", [
    ("", "Quedan 21 ", "Quedan "),  # the noun decides "veintiún" or "veintiuna"
    ("", "Quedan 21 páginas y ", "Quedan 21 páginas "),  # a plain last word may still change
    ("", "Cuesta 1", ""),  # a figure still arriving, and the word before it
    ("", "Vive en EE. ", "Vive en "),  # an abbreviation in two parts
    ("", "Claro que sí, te lo explico, ", "Claro que sí, te lo explico,"),  # a clause's end goes at once
    ("", 'Hola <break time="1.5s"/> y luego más ', 'Hola <break time="1.5s"/> y luego '),
    ("", 'Di <say-as interpret-as="characters">SQL</say-as> ', "Di "),
    ("Subió un 25 % en el siglo ", "XXI. Luego ", "XXI. "),
])
def test_streamed_text_is_read_no_sooner_than_its_figures_allow(context, text, ready):
    from tts_service.text.checks import figures_cut

    assert text[:figures_cut(context, text, "es")] == ready
