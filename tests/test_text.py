"""Speakable text from LLM-style answers, sentence splitting, and long texts losing nothing."""

from __future__ import annotations

import pytest

from tts_service.text import group_sentences, speakable, split_sentences

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
