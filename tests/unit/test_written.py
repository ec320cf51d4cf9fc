"""Spoken words mapped back to what was written: word events keep the spoken words, subtitles and
the demo page show "1.500 €" over the time "mil quinientos euros" is heard."""

from __future__ import annotations

import pytest

from tts_service.audio import subtitles
from tts_service.text.checks import Reading, prepare_text
from tts_service.text.lexicon import Lexicon
from tts_service.text.written import Transcript, display


def heard(text: str, language: str, reading: Reading = Reading(), clean: bool = True,
          drop: frozenset = frozenset()) -> list[dict]:
    """The words of `text` as an engine would report them (one per spoken word, a second each),
    each with its written form, as the session attaches it; `drop`: words the engine never reports."""
    replaced: list = []
    spoken = prepare_text(text, language, clean, reading, replaced=replaced)
    transcript = Transcript()
    transcript.add(spoken, replaced)
    words = []
    for index, word in enumerate(spoken.split()):
        if word in drop:
            continue
        written = transcript.written(word)
        words.append({"word": word, "start": float(index), "end": index + 1.0,
                      **({"written": written} if written is not None else {})})
    return words


def shown(words: list[dict]) -> list[str]:
    return [entry["word"] for entry in display(words)]


@pytest.mark.parametrize("language, text, expected", [
    ("es", "Cuesta 1.500 € al mes.", ["Cuesta", "1.500 €", "al", "mes."]),
    ("es", "El Sr. García llega el 3/5/2024 a las 14:30.",
     ["El", "Sr.", "García", "llega", "el", "3/5/2024", "a", "las", "14:30."]),
    ("es", "¿Son 21 páginas?", ["¿Son", "21", "páginas?"]),
    ("de", "Am 3. Oktober kostet es 12,50 €.", ["Am", "3.", "Oktober", "kostet", "es", "12,50 €."]),
    ("en", "It costs $1,250.50 today.", ["It", "costs", "$1,250.50", "today."]),
    ("fr", "Rendez-vous à 14 h 30.", ["Rendez-vous", "à", "14 h 30."]),
])
def test_figures_are_shown_as_written_over_their_spoken_words(language, text, expected):
    words = heard(text, language)
    assert shown(words) == expected
    figure = next(entry for entry in display(words) if any(c.isdigit() for c in entry["word"]))
    first = next(w for w in words if w.get("written") and any(c.isdigit() for c in w["written"]))
    assert figure["start"] == first["start"]  # lit from its first spoken word...
    group = [first]
    for word in words[words.index(first) + 1:]:
        if word.get("written") != "":
            break
        group.append(word)
    assert figure["end"] == group[-1]["end"]  # ...to its last


def test_the_words_events_carry_stay_the_spoken_ones():
    words = heard("Cuesta 1.500 €.", "es")
    assert [w["word"] for w in words] == ["Cuesta", "mil", "quinientos", "euros."]
    assert [w.get("written") for w in words] == [None, "1.500 €", "", ""]


def test_a_lexicon_entry_and_markup_are_shown_as_written():
    lexicon = Lexicon({"es": {"SQL": "ese cu ele"}})
    words = heard('Uso SQL y <sub alias="Kubernetes">k8s</sub> con <say-as interpret-as="characters">ABC</say-as>.',
                  "es", Reading(True, lexicon))
    assert shown(words) == ["Uso", "SQL", "y", "k8s", "con", "ABC"]
    assert [w["word"] for w in words] == ["Uso", "ese", "cu", "ele", "y", "Kubernetes", "con", "a", "be", "ce"]


def test_as_written_nothing_is_mapped():
    words = heard("Cuesta 1.500 €.", "es", Reading(normalize=False))
    assert all("written" not in w for w in words)


def test_a_word_the_engine_never_reports_does_not_shift_the_rest():
    words = heard("Hoy, el 3/5/2024, pagué 1.500 €.", "es", drop=frozenset({"mayo"}))
    assert shown(words) == ["Hoy,", "el", "3/5/2024,", "pagué", "1.500 €."]


def test_a_word_said_twice_maps_to_the_right_one():
    # "mil" is spoken plainly first, then as part of a figure: each is matched in order.
    words = heard("Dijo mil veces que costaba 1.000 €.", "es")
    assert shown(words) == ["Dijo", "mil", "veces", "que", "costaba", "1.000 €."]


def test_text_added_before_its_words_are_heard_keeps_its_order():
    transcript = Transcript()
    first, second = [], []
    transcript.add(prepare_text("Son 2 gatos.", "es", True, replaced=first), first)
    transcript.add(prepare_text("Y 3 perros.", "es", True, replaced=second), second)
    said = [(word, transcript.written(word)) for word in "Son dos gatos. Y tres perros.".split()]
    assert said == [("Son", None), ("dos", "2"), ("gatos.", None), ("Y", None), ("tres", "3"), ("perros.", None)]


def test_subtitles_show_a_figure_whole_in_one_cue():
    words = heard("El total es 1.500.000 € más 21 % de IVA.", "es")
    texts = [cue.text for cue in subtitles.cues(words)]
    assert " ".join(texts) == "El total es 1.500.000 € más 21 % de IVA."
    assert any("1.500.000 €" in text for text in texts)
    vtt = subtitles.webvtt(words)
    assert "1.500.000 €" in vtt and "millón" not in vtt


def test_display_of_words_without_written_forms_is_unchanged():
    words = [{"word": "hola", "start": 0.0, "end": 0.5}, {"word": "amigo.", "start": 0.5, "end": 1.0}]
    assert display(words) == words
    # A stray continuation (its first word lost) is shown as spoken, never dropped.
    assert shown([{"word": "euros", "start": 0.0, "end": 1.0, "written": ""}]) == ["euros"]
