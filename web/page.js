// The demo page's own script (a file, so that the Content-Security-Policy allows no inline script).
// Everything that comes from a server (which ?endpoint= may name) is written as text, never as HTML.
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var endpoint = params.get('endpoint') || new URL('tts', new URL('/', location.href)).pathname;
  var base = endpoint.replace(/\/(tts|api\/tts-proxy)\/?$/, '');
  var tts = window.KyutaiTTS;
  tts.configure({ endpoint: endpoint, timeout: Number(params.get('timeout') || 20000) });
  var $ = function (id) { return document.getElementById(id); };
  $('endpoint').textContent = endpoint;
  var voicesByLanguage = {};

  function text(value) { return value == null ? '' : String(value); }

  function option(value, label) {
    var element = document.createElement('option');
    element.value = value;
    element.textContent = label;
    return element;
  }

  function setHealth(kind, message) {
    var dot = document.createElement('i');
    dot.className = 'dot ' + kind;
    $('health').replaceChildren(dot, document.createTextNode(message));
  }

  fetch(base + '/health').then(function (r) { return r.json(); }).then(function (h) {
    // With an API key set, the open /health says only its status; the device needs the key.
    var ready = h && h.status === 'ok';
    setHealth(ready ? 'ok' : 'warn', ready ? 'Listo' + (h.device ? ' · ' + text(h.device) : '') : 'Cargando…');
  }).catch(function () { setHealth('err', 'Sin conexión'); });

  fetch(base + '/voices').then(function (r) {
    if (!r.ok) throw new Error('GET ' + base + '/voices failed with ' + r.status);
    return r.json();
  }).then(function (data) {
    var languages = data && data.languages;
    voicesByLanguage = languages && typeof languages === 'object' ? languages : {};
    fillLanguages();
    fillVoices();
  }).catch(function () {
    // Through a proxy that only forwards speech, the service's default voices still speak.
    $('voice').title = 'Lista de voces no disponible: se usa la voz predeterminada';
  });

  function languageName(names, code) {
    try {
      var name = names ? names.of(code) : code;
      return name.charAt(0).toUpperCase() + name.slice(1);
    } catch (e) {
      return code; // not a language code Intl knows: shown as it came
    }
  }

  // The languages the service speaks, named in Spanish; the static list stays when /voices is missing.
  function fillLanguages() {
    var codes = Object.keys(voicesByLanguage);
    if (!codes.length) return;
    var select = $('language');
    var current = select.value;
    var names = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['es'], { type: 'language' }) : null;
    select.replaceChildren.apply(select, codes.map(function (code) {
      var element = option(code, languageName(names, code));
      element.selected = code === current;
      return element;
    }));
  }

  function fillVoices() {
    var entry = voicesByLanguage[$('language').value];
    var select = $('voice');
    select.replaceChildren(option('', 'Predeterminada'));
    if (!entry || !Array.isArray(entry.voices)) return;
    entry.voices.forEach(function (name) {
      select.appendChild(option(text(name), text(name) + (name === entry.default ? ' (predeterminada)' : '')));
    });
  }
  $('language').addEventListener('change', fillVoices);

  tts.on('start', function (e) {
    $('provider').textContent = text(e.detail.provider) || '—';
    $('latency').textContent = e.detail.firstSoundMs != null ? text(e.detail.firstSoundMs) + ' ms' : '—';
    $('message').textContent = 'Hablando…';
  });
  tts.on('fallback', function (e) { $('message').textContent = 'Usando la voz del navegador: ' + text(e.detail.reason); });
  tts.on('blocked', function () {
    $('message').textContent = 'El navegador bloquea el sonido: haz clic en la página para escucharlo.';
  });
  tts.on('end', function (e) {
    var seconds = typeof e.detail.duration === 'number' && e.detail.duration
      ? ' · ' + e.detail.duration.toFixed(1).replace('.', ',') + ' s de audio' : '';
    $('message').textContent = e.detail.stopped ? 'Detenido.' : 'Listo' + seconds + '.';
  });
  $('text').addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) $('speak').click();
  });

  // Played while it is generated: over the WebSocket, whose word events light the words up as they come.
  function speakText(value, options) {
    if (!$('stream').checked) return tts.speak(value, options);
    if (!tts.features.webSocket) return tts.speak(value, Object.assign({ stream: true }, options));
    var stream = tts.speakStream(options);
    stream.write(value);
    stream.end();
    return stream.done;
  }

  $('speak').addEventListener('click', function () {
    tts.unlock();
    $('stop').disabled = false;
    $('message').textContent = 'Generando…';
    speakText($('text').value, { language: $('language').value, voice: $('voice').value || null, words: true })
      .catch(function (error) { $('message').textContent = 'Error: ' + text(error && error.message); })
      .then(function () { $('stop').disabled = true; });
  });
  $('stop').addEventListener('click', function () { tts.stop(); $('stop').disabled = true; });

  // A whole document as one file: POST /v1/audio/jobs, its progress polled once a second, then the file.
  function jobStatus(message) { $('job-status').textContent = message; }
  function pollJob(url) {
    fetch(url).then(function (r) { return r.json(); }).then(function (job) {
      var progress = (job && job.progress) || {};
      $('job-progress').hidden = false;
      $('job-progress').value = Number(progress.fraction) || 0;
      if (job.status === 'done') {
        jobStatus('Listo: ' + Math.round(Number(progress.audio_seconds) || 0) + ' s de audio.');
        $('job-audio').href = url + '/audio';
        $('job-audio').hidden = false;
      } else if (job.status === 'failed' || job.status === 'cancelled') {
        jobStatus('No se pudo: ' + text(job.error || job.status));
      } else {
        var left = progress.seconds_left != null ? ' · quedan unos ' + Math.ceil(Number(progress.seconds_left)) + ' s' : '';
        jobStatus('Generando… ' + Math.round(100 * (Number(progress.fraction) || 0)) + ' %' + left);
        setTimeout(function () { pollJob(url); }, 1000);
      }
    }).catch(function (error) { jobStatus('Error: ' + text(error && error.message)); });
  }
  $('job-start').addEventListener('click', function () {
    var file = $('job-file').files && $('job-file').files[0];
    if (!file) { jobStatus('Elige primero un archivo de texto.'); return; }
    $('job-audio').hidden = true;
    file.text().then(function (content) {
      return fetch(base + '/v1/audio/jobs', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: content, language: $('language').value, voice: $('voice').value || undefined })
      });
    }).then(function (r) {
      return r.json().then(function (body) {
        var error = body && body.error;
        if (!r.ok) throw new Error(text(error && error.message ? error.message : error) || 'POST /v1/audio/jobs failed with ' + r.status);
        return body;
      });
    }).then(function (job) {
      jobStatus('En cola…');
      pollJob(base + '/v1/audio/jobs/' + encodeURIComponent(text(job.id)));
    }).catch(function (error) { jobStatus('Error: ' + text(error && error.message)); });
  });

  // What the model will be given (POST /normalize: the same text path as /tts), shown as text.
  $('preview').addEventListener('click', function () {
    var shown = $('spoken');
    fetch(base + '/normalize', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: $('text').value, language: $('language').value })
    }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(text(body && body.error) || 'POST /normalize failed with ' + r.status);
        return body;
      });
    }).then(function (body) {
      shown.textContent = text(body.text);
      shown.hidden = false;
    }).catch(function (error) {
      shown.textContent = 'No disponible: ' + text(error && error.message);
      shown.hidden = false;
    });
  });
})();
