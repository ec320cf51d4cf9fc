"""The demo page lights up each word as it is heard, in Chromium, on the whole-text and streamed paths."""

from __future__ import annotations

import pytest

from helpers import running_app, served, spoken_words
from tts_service.text.written import display

TEXT = "Hola, soy Capibara6 con voz natural de Kyutai."

# Every 40 ms until the page says it is done: the audio clock, which word is lit, and the clock
# reading and word count the page lit it by (it lights once per animation frame).
SAMPLE = """() => new Promise((resolve) => {
  const samples = [];
  const tick = () => {
    const words = [...document.querySelectorAll('#words .word')];
    const box = document.getElementById('words');
    samples.push({ heard: KyutaiTTS.heard(), current: words.findIndex((w) => w.classList.contains('current')),
                   litAt: box.dataset.heard ? Number(box.dataset.heard) : null,
                   known: Number(box.dataset.known || 0) });
    if (document.getElementById('message').textContent.startsWith('Listo')) resolve(samples);
    else setTimeout(tick, 40);
  };
  tick();
})"""


@pytest.fixture(scope="module")
def service(tiny_env):
    with running_app({**tiny_env, "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
                      "TTS_DEFAULT_LANGUAGE": "es", "TTS_MAX_AUDIO_SECONDS": "5",
                      "TTS_POCKET_WORD_HEADS": "1:0 1:3"}) as app, served(app) as base:
        yield base


@pytest.fixture
def page(browser, service):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{service}/web/")
    page.wait_for_function("() => window.KyutaiTTS !== undefined")
    page.evaluate("window.__words = []; KyutaiTTS.on('word', (e) => window.__words.push(e.detail))")
    yield page
    context.close()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_the_lit_word_follows_playback(page, streamed):
    page.fill("#text", TEXT)
    if streamed:
        page.check("#stream")
    page.click("#speak")
    samples = page.evaluate(SAMPLE)
    words = page.evaluate("window.__words")
    assert words and {w["word_times"] for w in words} == {"aligned"}
    assert page.get_attribute("#words", "data-word-times") == "aligned"
    assert [w["word"] for w in words] == spoken_words(TEXT, "es")[:len(words)]
    # The page shows what was written ("Capibara6" while "Capibara seis" is heard), one element each.
    shown = display(words)
    assert page.eval_on_selector_all("#words .word", "els => els.map(e => e.textContent)") == \
        [w["word"] for w in shown]
    words = shown
    lit = [s for s in samples if s["heard"] is not None and s["current"] >= 0 and s["litAt"] is not None]
    assert len(lit) > 10, samples
    indices = [s["current"] for s in lit]
    assert indices == sorted(indices), "the highlight went back"
    # It moves on to the last word started: not "two words seen lit", which under load hangs on
    # catching a first word that the tiny model says in one 80 ms frame.
    last_started = max(i for i, word in enumerate(words) if word["start"] <= lit[-1]["litAt"])
    assert last_started >= 1 and indices[-1] == last_started, "the highlight never moved on"
    for sample in lit:
        # The lit word is the last one started by the clock reading the page lit by...
        index, at = sample["current"], sample["litAt"]
        assert words[index]["start"] <= at, (sample, words[index])
        if index + 1 < sample["known"]:
            assert words[index + 1]["start"] > at, (sample, words[index + 1])
        # ...and that reading is playback's own clock: never ahead of it, and close behind (median).
        assert -0.01 <= sample["heard"] - at, sample
    lags = sorted(sample["heard"] - sample["litAt"] for sample in lit)
    assert lags[len(lags) // 2] <= 0.1, f"the highlight trails playback by {lags[len(lags) // 2]:.2f} s (median)"


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_figure_is_lit_as_written_while_its_words_are_heard(page, streamed):
    page.fill("#text", "1.500 € al mes.")
    if streamed:
        page.check("#stream")
    page.click("#speak")
    page.wait_for_function("() => document.getElementById('message').textContent.startsWith('Listo')")
    words = page.evaluate("window.__words")
    assert words[0]["word"] == "mil" and words[0]["written"] == "1.500 €"  # the event keeps the spoken word
    first = page.eval_on_selector("#words .word", "e => [e.textContent, e.title]")
    assert first[0] == "1.500 €" and first[1].startswith("mil")  # shown as written, heard as spoken
