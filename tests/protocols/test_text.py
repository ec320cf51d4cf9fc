"""Speakable text from LLM-style answers, sentence splitting, and long texts losing nothing."""

from __future__ import annotations

import re

import pytest

from tts_service.text.markdown import group_sentences, speakable, split_sentences

SPANISH_ANSWER = """## Cómo preparar café ☕

Para un buen café **necesitas**:

1. Agua a 93°C
2. Café molido & una cafetera
- Paciencia, al *100%*

Más detalles en [esta guía](https://cafe.example.com/guia) o en https://www.cafeteros.es/metodos.

```bash
brew coffee --strong
```

> Consejo: no hiervas el agua 😅"""

ENGLISH_ANSWER = """# Quick answer

Sure! Here's how to **list files**:

* Run `ls -la` in a terminal
* Or visit <https://docs.example.org/files> for more

| Command | Meaning |
|---------|---------|
| ls      | list    |

It costs $5 & saves ~50% of the time 🚀."""


@pytest.mark.parametrize("answer, language, expected, absent", [
    (SPANISH_ANSWER, "es",
     ["Cómo preparar café.", "Para un buen café necesitas:", "Agua a 93 grados C.", "Café molido y una cafetera.",
      "Paciencia, al 100 por ciento.", "esta guía", "enlace cafeteros.es", "(fragmento de código)",
      "Consejo: no hiervas el agua"],
     ["**", "##", "```", "https", "☕", "😅", "brew", ">"]),
    (ENGLISH_ANSWER, "en",
     ["Quick answer.", "Sure! Here's how to list files:", "Run ls -la in a terminal.",
      "link docs.example.org", "Command, Meaning.", "ls, list.", "5 dollars and saves", "50 percent"],
     ["#", "`", "|", "---", "🚀", "<", "**"]),
])
def test_llm_markdown_becomes_what_a_person_would_say(answer, language, expected, absent):
    spoken = speakable(answer, language)
    for phrase in expected:
        assert phrase in spoken, (phrase, spoken)
    for mark in absent:
        assert mark not in spoken, (mark, spoken)


def test_numbers_stay_digits():
    assert speakable("Tengo 3 gatos y 2.5 kilos de comida.", "es") == "Tengo 3 gatos y 2.5 kilos de comida."


@pytest.mark.parametrize("text, sentences", [
    ("El Sr. García llegó. Dijo «hola». ¿Qué tal? ¡Muy bien!",
     ["El Sr. García llegó.", "Dijo «hola».", "¿Qué tal?", "¡Muy bien!"]),
    ("Pi is 3.14159. Dr. Smith agrees, e.g. in his book. Really?",
     ["Pi is 3.14159.", "Dr. Smith agrees, e.g. in his book.", "Really?"]),
    ('He said "Stop." Then he left... and came back. The U.S. team won.',
     ['He said "Stop."', "Then he left... and came back.", "The U.S. team won."]),
    ("Sin punto final", ["Sin punto final"]),
])
def test_sentences_split_at_real_boundaries(text, sentences):
    assert split_sentences(text) == sentences


def test_groups_keep_order_and_every_sentence():
    sentences = [f"Frase número {i}." for i in range(10)]
    groups = group_sentences(sentences, groups=3)
    assert len(groups) <= 3
    assert " ".join(groups) == " ".join(sentences)


def test_a_long_text_makes_a_bounded_number_of_pieces():
    sentences = [f"Frase número {i} con unas cuantas palabras más para alargarla." for i in range(200)]
    assert len(group_sentences(sentences, groups=4)) > 20  # 600 characters a piece
    bounded = group_sentences(sentences, groups=4, max_pieces=8)
    assert len(bounded) <= 9 and " ".join(bounded) == " ".join(sentences)


def test_cleaning_can_be_switched_off(client):
    on = client.post("/tts", json={"text": "**Hello** there!", "language": "en", "words": True}).get_json()
    off = client.post("/tts", json={"text": "**Hello** there!", "language": "en", "words": True,
                                    "clean": False}).get_json()
    assert [w["word"] for w in on["words"]] == ["Hello", "there!"]
    assert [w["word"] for w in off["words"]] == ["**Hello**", "there!"]


def test_long_text_loses_no_sentence(make_app):
    client = make_app(max_batch_size=4).test_client()
    sentences = [f"Sentence number {n} is here." for n in ("one", "two", "three", "four", "five", "six")]
    body = client.post("/tts", json={"text": " ".join(sentences), "language": "en", "words": True}).get_json()
    assert [w["word"] for w in body["words"]] == " ".join(sentences).split()
    assert len(body["pieces"]) >= 2, "a long text is spoken as several pieces"
    starts = [w["start"] for w in body["words"]]
    assert starts == sorted(starts)
    assert body["duration"] >= sum(body["pieces"])


def test_comparisons_are_not_mistaken_for_html_but_tags_go():
    assert re.findall(r"\w+", speakable("if a<b and c>d then x", "en")) == "if a b and c d then x".split()
    assert speakable("Use Vector<int> here", "en") == "Use Vector int here"
    spoken = speakable("Texto <b>en negrita</b> y<br/>otra línea <!-- nota -->", "es")
    assert spoken == "Texto en negrita y. otra línea"


def test_an_amount_keeps_the_sentence_boundary_after_it():
    spoken = speakable("Precio: $5. Gracias", "es")
    assert spoken == "Precio: 5 dólares. Gracias"
    assert split_sentences(spoken) == ["Precio: 5 dólares.", "Gracias"]
    assert speakable("Son 12,50 € o 3.5%.", "es") == "Son 12,50 euros o 3.5 por ciento."


@pytest.mark.parametrize("text, sentences", [
    ('Dijo: hola. "', ['Dijo: hola. "']),
    ("Hola. »", ["Hola. »"]),
    ("Il a dit : « Bonjour. »", ["Il a dit : « Bonjour. »"]),
    ('"Fin." " Otra frase.', ['"Fin."', '" Otra frase.']),
    ("... ¡Hola! ?? ¿Qué tal? !!", ["... ¡Hola! ??", "¿Qué tal? !!"]),
    ("?! ...", []),
    ("", []),
])
def test_no_sentence_is_only_marks(text, sentences):
    assert split_sentences(text) == sentences


def test_invisible_and_control_characters_and_emoji_are_removed():
    assert speakable("a\u200bb\u200fc\u202ed\u2066e\ufefff\x00g\x07h\ud800i", "en") == "abcdefghi"
    assert speakable("Listo 🚀✅ 👍🏽 ok 1️⃣", "es") == "Listo ok 1"
    assert speakable("Error:\x1b[1;31m rojo\x1b[0m.", "es") == "Error: rojo."


def test_indented_prose_is_read_not_taken_for_code():
    assert speakable("Querido amigo:\n\n    te escribo hoy.", "es") == "Querido amigo: te escribo hoy."
