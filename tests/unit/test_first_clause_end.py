"""Where a streamed session's first clause may end before its sentence does (engines that need whole texts)."""

from __future__ import annotations

import pytest

from tts_service.speech.session import FIRST_CLAUSE_MIN_WORDS, first_clause_end

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
