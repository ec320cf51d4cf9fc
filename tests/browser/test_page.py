"""The demo page and web/tts-integration.js in Debian's Chromium, driven by Playwright, against the real service."""

from __future__ import annotations

import pytest

from helpers import CHROMIUM, ROOT, decode_audio, rms, running_app, served
ARTIFACTS = ROOT / "test-artifacts"

# Record what the page plays and what it asks the browser's own voice to say (headless Chromium
# has no speech voices, so speechSynthesis.speak is recorded and answered with start/end events).
INSTRUMENT = """
window.__played = [];
window.__stoppedSources = 0;
const realStart = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function (...args) {
  window.__played.push({ duration: this.buffer ? this.buffer.duration : 0 });
  return realStart.apply(this, args);
};
const realStop = AudioBufferSourceNode.prototype.stop;
AudioBufferSourceNode.prototype.stop = function (...args) {
  window.__stoppedSources += 1;
  return realStop.apply(this, args);
};
window.__spoken = [];
window.__cancelled = 0;
speechSynthesis.speak = function (utterance) {
  window.__spoken.push({ text: utterance.text, lang: utterance.lang });
  setTimeout(() => {
    utterance.onstart && utterance.onstart(new Event('start'));
    setTimeout(() => utterance.onend && utterance.onend(new Event('end')), 50);
  }, 10);
};
speechSynthesis.cancel = function () { window.__cancelled += 1; };
"""

@pytest.fixture(scope="module")
def service(tiny_env, tmp_path_factory):
    with running_app({**tiny_env, "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
                      "TTS_DEFAULT_LANGUAGE": "es", "TTS_MAX_AUDIO_SECONDS": "4",
                      "TTS_JOB_STORE": str(tmp_path_factory.mktemp("jobs"))}) as app, served(app) as base:
        yield base, app


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.goto(f"{service[0]}/web/")
    page.wait_for_function("() => window.KyutaiTTS !== undefined")
    yield page
    context.close()


def test_speaking_plays_the_services_audio_at_its_length(page):
    page.click("#speak")
    page.wait_for_function("() => document.getElementById('provider').textContent === 'Kyutai Pocket TTS'", timeout=60000)
    page.wait_for_function("() => document.getElementById('message').textContent.startsWith('Listo')", timeout=60000)
    played = page.evaluate("window.__played")
    answer = page.evaluate("""fetch('/tts', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({text: document.getElementById('text').value, language: 'es'})}).then(r => r.json())""")
    assert len(played) == 1
    assert played[0]["duration"] == pytest.approx(answer["duration"], abs=0.02)
    assert page.evaluate("window.__spoken") == []
    assert page.inner_text("#latency").endswith("ms")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)


def test_streaming_plays_chunks_as_they_arrive(page):
    result = page.evaluate("KyutaiTTS.speak('Hello there, this is streamed.', {language: 'en', stream: true})")
    assert result["provider"] == "Kyutai DSM TTS" and result["fallback"] is False
    played = page.evaluate("window.__played")
    assert len(played) > 5, "the stream was not played in pieces"
    assert sum(p["duration"] for p in played) == pytest.approx(result["duration"], abs=0.01)
    assert result["duration"] > 0.5


def test_text_arriving_in_pieces_is_spoken_over_the_websocket(page):
    result = page.evaluate("""async () => {
      const speech = KyutaiTTS.speakStream({language: 'en'});
      for (const word of 'Hello , the assistant is still writing this answer .'.split(' ')) {
        speech.write(word + ' ');
        await new Promise(r => setTimeout(r, 30));
      }
      speech.end();
      return await speech.done;
    }""")
    assert result["provider"] == "Kyutai DSM TTS"
    assert result["duration"] > 0.5
    assert sum(p["duration"] for p in page.evaluate("window.__played")) == pytest.approx(result["duration"], abs=0.01)


def test_unreachable_service_falls_back_to_the_browser_voice(page, service):
    from helpers import free_port

    page.evaluate(f"KyutaiTTS.configure({{endpoint: 'http://127.0.0.1:{free_port()}/tts'}})")
    events = page.evaluate("""async () => {
      const seen = [];
      KyutaiTTS.on('fallback', (e) => seen.push(e.detail.provider));
      const result = await KyutaiTTS.speak('Hola, ¿me oyes?', {language: 'es'});
      return {result, seen};
    }""")
    assert events["result"]["provider"] == "Web Speech API" and events["result"]["fallback"] is True
    assert events["seen"] == ["Web Speech API"]
    assert page.evaluate("window.__spoken") == [{"text": "Hola, ¿me oyes?", "lang": "es-ES"}]
    assert page.evaluate("window.__played") == []


def test_fallback_when_the_service_answers_with_an_error(page):
    result = page.evaluate("KyutaiTTS.speak('Good evening.', {language: 'fr', voice: 'nobody'})")
    assert result["provider"] == "Web Speech API"
    assert page.evaluate("window.__spoken")[0]["lang"] == "fr-FR"


def test_stop_stops_playback(page):
    outcome = page.evaluate("""async () => {
      const speaking = KyutaiTTS.speak('Hola. ' + 'Esta frase es bastante larga para poder detenerla. '.repeat(3),
                                       {language: 'es'});
      await new Promise((resolve) => KyutaiTTS.on('start', resolve));
      KyutaiTTS.stop();
      return await speaking;
    }""")
    assert outcome["stopped"] is True
    assert page.evaluate("window.__stoppedSources") >= 1
    assert page.evaluate("window.__spoken") == [], "stopping must not fall back to another voice"


def test_the_client_also_loads_as_an_es_module(page):
    kinds = page.evaluate("""import('/web/tts-integration.mjs').then((m) =>
        [typeof m.speak, typeof m.default.TTSClient, m.TTS_CONFIG === window.KyutaiTTS.TTS_CONFIG])""")
    assert kinds == ["function", "function", True]


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: a service that hangs."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_a_service_that_never_answers_times_out_to_the_browser_voice(page, silent_port):
    outcome = page.evaluate(f"""async () => {{
      const errors = [];
      KyutaiTTS.on('error', (e) => errors.push(e.detail.message));
      const started = performance.now();
      const result = await KyutaiTTS.speak('¿Sigues ahí?', {{language: 'es', timeout: 500,
                                                            endpoint: 'http://127.0.0.1:{silent_port}/tts'}});
      return {{result, errors, elapsed: performance.now() - started}};
    }}""")
    assert outcome["result"]["provider"] == "Web Speech API"
    assert outcome["errors"] == [f"POST http://127.0.0.1:{silent_port}/tts timed out after 500 ms"]
    assert outcome["elapsed"] < 5000
    assert page.evaluate("window.__spoken") == [{"text": "¿Sigues ahí?", "lang": "es-ES"}]


def test_a_service_whose_model_failed_answers_fallback_and_is_obeyed(page, live, tmp_path):
    # A real service whose model could not load: POST /tts answers 503 {"fallback": true}.
    base, _ = live(dsm_model=str(tmp_path / "missing-model"))
    outcome = page.evaluate(f"""async () => {{
      const seen = [];
      KyutaiTTS.on('error', (e) => seen.push(['error', e.detail.error.status, e.detail.error.fallback]));
      KyutaiTTS.on('fallback', (e) => seen.push(['fallback', e.detail.provider]));
      const result = await KyutaiTTS.speak('Good morning.', {{language: 'en', endpoint: '{base}/tts'}});
      return {{result, seen}};
    }}""")
    assert outcome["seen"] == [["error", 503, True], ["fallback", "Web Speech API"]]
    assert outcome["result"]["provider"] == "Web Speech API"
    assert page.evaluate("window.__spoken") == [{"text": "Good morning.", "lang": "en-US"}]


def test_stop_silences_the_browser_voice_too(page, silent_port):
    # This browser voice speaks until it is cancelled.
    outcome = page.evaluate(f"""async () => {{
      speechSynthesis.speak = (utterance) => {{
        window.__spoken.push({{text: utterance.text, lang: utterance.lang}});
        setTimeout(() => utterance.onstart && utterance.onstart(new Event('start')), 10);
      }};
      const speaking = KyutaiTTS.speak('Una respuesta larga.', {{language: 'es',
                                       endpoint: 'http://127.0.0.1:{silent_port}/tts', timeout: 300}});
      await new Promise((resolve) => KyutaiTTS.on('start', resolve));
      const cancelledBefore = window.__cancelled;
      KyutaiTTS.stop();
      return {{result: await speaking, cancelledBefore, cancelledAfter: window.__cancelled}};
    }}""")
    assert outcome["result"]["provider"] == "Web Speech API" and outcome["result"]["stopped"] is True
    assert outcome["cancelledAfter"] > outcome["cancelledBefore"]


def test_streaming_uses_tts_when_the_service_has_no_stream_endpoint(page):
    page.route("**/tts/stream", lambda route: route.fulfill(
        status=404, content_type="application/json", body='{"error": "Not Found", "request_id": "x"}'))
    result = page.evaluate("KyutaiTTS.speak('Hello there.', {language: 'en', stream: true})")
    assert result["provider"] == "Kyutai DSM TTS" and result["fallback"] is False
    played = page.evaluate("window.__played")
    assert len(played) == 1 and played[0]["duration"] == pytest.approx(result["duration"])
    assert page.evaluate("window.__spoken") == []


@pytest.mark.parametrize("stream", [False, True])
def test_speech_blocked_by_the_autoplay_policy_plays_at_the_first_click(browser, service, stream):
    """Chromium's default autoplay policy: a speak() with no user gesture waits, then plays on a click,
    however long the user takes (longer than the request timeout here)."""
    # The policy named, not left to the build's default for a site without media engagement.
    strict = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=document-user-activation-required"])
    try:
        page = strict.new_page()
        # Called from a timer, not from Playwright, and read from the console until the click:
        # Playwright's evaluate() and wait_for_function() count as user gestures, and one arriving
        # before the client's check would let the sound start unblocked.
        events: list[str] = []
        page.on("console", lambda message: events.append(message.text[len("tts-event "):])
                if message.text.startswith("tts-event ") else None)
        page.add_init_script(INSTRUMENT + """
          window.__events = [];
          document.addEventListener('DOMContentLoaded', () => setTimeout(() => {
            for (const type of ['blocked', 'start', 'end', 'error', 'fallback'])
              KyutaiTTS.on(type, (e) => {
                const event = type === 'error' ? e.detail.message : type;
                window.__events.push(event);
                console.log('tts-event ' + event);
              });
            KyutaiTTS.speak('Hello there.', {language: 'en', timeout: 5000, stream: %s})
              .then((r) => { window.__result = r; });
          }, 50));
        """ % ("true" if stream else "false"))
        path = "/tts/stream" if stream else "/tts"
        with page.expect_response(lambda r: r.url.endswith(path) and r.request.method == "POST", timeout=60000):
            page.goto(f"{service[0]}/web/")
        for _ in range(200):
            if events:
                break
            page.wait_for_timeout(100)
        page.wait_for_timeout(5500)
        assert events == ["blocked"], "sound must wait for the user"
        page.mouse.click(5, 5)
        page.wait_for_function("() => window.__result !== undefined", timeout=30000)
        assert page.evaluate("window.__events") == ["blocked", "start", "end"]
        assert page.evaluate("window.__result.provider") == "Kyutai DSM TTS"
        assert page.evaluate("window.__spoken") == []
    finally:
        strict.close()


def test_the_script_tag_and_module_forms_all_load(browser, service):
    # The inline module script below is the test's own: the served page's policy forbids inline
    # scripts, so this page (same origin, for the /web/ URLs) runs without it.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(f"{service[0]}/web/")
    page.set_content("""<!doctype html>
      <script src="/web/tts-integration.js"></script>
      <script type="module">
        import KyutaiTTS, { speak, stop, configure } from '/web/tts-integration.mjs';
        window.__module = { same: KyutaiTTS === window.KyutaiTTS,
                            kinds: [typeof speak, typeof stop, typeof configure] };
      </script>""")
    page.wait_for_function("() => window.__module !== undefined")
    assert page.evaluate("window.__module") == {"same": True, "kinds": ["function", "function", "function"]}
    # The classic file also runs as a module script (strict mode, no top-level `this`).
    page.set_content('<!doctype html><script type="module" src="/web/tts-integration.js"></script>')
    page.wait_for_function("() => window.KyutaiTTS !== undefined")
    assert page.evaluate("typeof KyutaiTTS.speak") == "function"
    context.close()


def test_the_page_shows_what_the_model_will_say(page):
    page.fill("#text", "El café cuesta 1,50 € desde el 3/5/2024.")
    page.select_option("#language", "es")
    page.click("#preview")
    page.wait_for_function("() => !document.getElementById('spoken').hidden")
    assert page.inner_text("#spoken") == ("El café cuesta un euro con cincuenta céntimos desde el tres de mayo de dos "
                                          "mil veinticuatro.")


def test_a_document_becomes_one_file_from_the_page(page, tmp_path):
    """A text file picked on the page is made into one audio file in the background, with its progress."""
    import requests

    document = tmp_path / "documento.md"
    document.write_text("# Uno\n\nHola, esta es la primera parte.\n\n# Dos\n\nY esta es la segunda.", encoding="utf-8")
    page.select_option("#language", "es")
    page.set_input_files("#job-file", str(document))
    page.click("#job-start")
    page.wait_for_function("() => !document.getElementById('job-audio').hidden", timeout=120000)
    assert page.inner_text("#job-status").startswith("Listo")
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    href = page.evaluate("document.getElementById('job-audio').href")
    audio = requests.get(href, timeout=30)
    assert audio.status_code == 200 and audio.headers["Content-Type"].startswith("audio/mpeg")
    samples, rate = decode_audio(audio.content, "mp3")
    assert rate == 24000 and len(samples) > 0.5 * rate and rms(samples) > 1e-3
