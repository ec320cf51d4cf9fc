"""Markup (say-as, sub) parsed leniently in linear time, and the pronunciation lexicon: whole words,
longest first, and load errors that name the file and line."""

from __future__ import annotations

import time

import pytest

from tts_service.text.lexicon import EMPTY, Lexicon, LexiconError
from tts_service.text.markup import Part, has_markup, split_markup, unfinished_markup
from tts_service.text.spoken import readings
from tts_service.text.spoken.common import apply


def test_say_as_and_sub_are_parsed():
    parts = split_markup('Código <say-as interpret-as="characters">SQL</say-as> y '
                         "<SUB alias='organización'>org.</SUB>.")
    assert parts == [Part("Código "), Part("SQL", "characters", None), Part(" y "),
                     Part("org.", None, "organización"), Part(".")]


def test_say_as_keeps_the_date_format():
    parts = split_markup('<say-as interpret-as="date" format="mdy">3/12/2026</say-as>')
    assert parts == [Part("3/12/2026", "date", None, "mdy")]


@pytest.mark.parametrize("text", [
    "<say-as interpret-as=\"cardinal\">12",  # unclosed
    "<say-as>12</say-as>",  # no interpret-as
    "<sub>x</sub>",  # no alias
    "3 < 5 y 6 > 2",
    "<say-as interpret-as='cardinal'>12</sub>",  # wrong closing tag
    "",
])
def test_malformed_markup_stays_plain_text(text):
    assert split_markup(text) == [Part(text)]
    assert not has_markup(text)


def test_nesting_is_not_supported_the_inner_tag_stays_text():
    text = '<sub alias="a"><say-as interpret-as="cardinal">1</say-as></sub>'
    assert split_markup(text) == [Part('<say-as interpret-as="cardinal">1</say-as>', None, "a")]


def test_unfinished_markup_in_a_stream():
    assert unfinished_markup("Hola") == 4
    assert unfinished_markup("Hola <say-as interpret-as=\"card") == 5
    assert unfinished_markup("Hola <say-as interpret-as=\"cardinal\">12</say-") == 5
    assert unfinished_markup("Hola <su") == 5
    assert unfinished_markup('Hola <sub alias="x">y</sub> fin') == len('Hola <sub alias="x">y</sub> fin')
    assert unfinished_markup("3 < 5 y más") == len("3 < 5 y más")


@pytest.mark.parametrize("unit", ['<say-as interpret-as="x">', "<sub alias='a'>", "</say-as>", "<say-as ",
                                  "<" , "<sub alias=\"", "</sub><sub alias='a'>"])
def test_markup_is_linear_on_hostile_input(unit):
    text = unit * (60_000 // len(unit))
    start = time.process_time()
    split_markup(text)
    has_markup(text)
    unfinished_markup(text)
    assert time.process_time() - start < 1.0


def write(tmp_path, content: str) -> str:
    path = tmp_path / "lexicon.tsv"
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_lexicon_whole_words_longest_first(tmp_path):
    lexicon = Lexicon.load(write(tmp_path, "# marcas\n\nes\tCapibara6\tCapibara seis\n"
                                           "es\tSQL\tese cu ele\n*\tSQL Server\tsequel server\n"
                                           "en\tSQL\tsequel\n"))
    assert len(lexicon) == 4
    assert lexicon.apply("Usa SQL y Capibara6, no SQLite ni sql.", "es") == \
        "Usa ese cu ele y Capibara seis, no SQLite ni sql."
    assert lexicon.apply("SQL Server y SQL", "es") == "sequel server y ese cu ele"
    assert lexicon.apply("SQL", "en-US") == "sequel"
    assert lexicon.apply("SQL", "fr") == "SQL"
    text = "Capibara6 cuesta 3 €"
    assert apply(text, lexicon.readings(text, "es")) == "Capibara seis cuesta 3 €"
    assert [r.start for r in lexicon.readings(text, "es")] == [0]
    assert readings("x", "es") == []


def test_empty_lexicon():
    assert len(EMPTY) == 0
    assert EMPTY.apply("SQL 3", "es") == "SQL 3"


@pytest.mark.parametrize("content, message", [
    ("es\tSQL\n", "line 1: expected 3 tab-separated fields"),
    ("# c\nes\tSQL\tese cu ele\tx\n", "line 2: expected 3"),
    ("es\t\tese\n", "line 1: the written field is empty"),
    ("es\tSQL\t \n", "line 1: the spoken field is empty"),
    ("spanish\tSQL\tese\n", "line 1: 'spanish' does not look like a language code"),
    ("es\tSQL\ta\nes\tSQL\tb\n", "line 2: 'SQL' is already defined for es on line 1"),
])
def test_lexicon_errors_name_the_file_and_line(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(LexiconError) as raised:
        Lexicon.load(path)
    assert str(raised.value).startswith(path)
    assert message in str(raised.value)


def test_lexicon_missing_file(tmp_path):
    with pytest.raises(LexiconError, match="cannot read"):
        Lexicon.load(str(tmp_path / "none.tsv"))


def test_lexicon_is_linear(tmp_path):
    lexicon = Lexicon.load(write(tmp_path, "".join(f"es\tw{i}\tpalabra {i}\n" for i in range(500))))
    text = "w1 w2 x " * 10_000
    start = time.process_time()
    lexicon.apply(text, "es")
    assert time.process_time() - start < 1.0
