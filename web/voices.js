// The demo page's custom voices: record from the microphone or pick a file, make a voice with
// POST /v1/audio/voices, and offer it in the voice list. Server text is written as text, never HTML.
(function () {
  'use strict';
  var MAX_SECONDS = 30;
  var params = new URLSearchParams(location.search);
  var endpoint = params.get('endpoint') || new URL('tts', new URL('/', location.href)).pathname;
  var base = endpoint.replace(/\/(tts|api\/tts-proxy)\/?$/, '');
  var $ = function (id) { return document.getElementById(id); };
  var recorded = null; // the last recording, a Blob
  var recorder = null;
  var stopTimer = null;
  var made = []; // voices made on this page: {name, languages}

  function say(message) { $('clone-status').textContent = message; }

  var canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  if (!canRecord) {
    $('clone-record').disabled = true;
    $('clone-record').title = 'Este navegador no puede grabar: elige un archivo';
  }

  function stopRecording() {
    if (recorder && recorder.state !== 'inactive') recorder.stop();
  }

  $('clone-record').addEventListener('click', function () {
    if (recorder && recorder.state === 'recording') { stopRecording(); return; }
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      var chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener('dataavailable', function (e) { if (e.data && e.data.size) chunks.push(e.data); });
      recorder.addEventListener('stop', function () {
        clearTimeout(stopTimer);
        stream.getTracks().forEach(function (track) { track.stop(); });
        recorded = new Blob(chunks, { type: recorder.mimeType || 'audio/webm' });
        $('clone-file').value = '';
        $('clone-record').textContent = '● Grabar';
        say('Grabación lista (' + Math.round(recorded.size / 1024) + ' KB).');
      });
      recorder.start();
      // OpenAI's limit, and the server's: stop a little before it.
      stopTimer = setTimeout(stopRecording, (MAX_SECONDS - 1) * 1000);
      $('clone-record').textContent = '■ Parar';
      say('Grabando… lee el texto en voz alta durante 5 a 15 segundos.');
    }).catch(function (error) {
      say('No se puede usar el micrófono: ' + String(error && error.message || error));
    });
  });

  $('clone-file').addEventListener('change', function () {
    if ($('clone-file').files.length) { recorded = null; say('Archivo elegido.'); }
  });

  function offer(voice) {
    var select = $('voice');
    if (voice.languages.indexOf($('language').value) < 0) return;
    var existing = Array.prototype.find.call(select.options, function (o) { return o.value === voice.name; });
    if (!existing) {
      existing = document.createElement('option');
      existing.value = voice.name;
      existing.textContent = voice.name + ' (clonada)';
      select.appendChild(existing);
    }
    select.value = voice.name;
  }

  // page.js fills the list again when the language changes: the voices made here go back in.
  $('language').addEventListener('change', function () { made.forEach(offer); });

  $('clone-create').addEventListener('click', function () {
    var name = $('clone-name').value.trim();
    var file = $('clone-file').files[0];
    var sample = file || recorded;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) { say('El nombre: de 1 a 64 letras, cifras, - o _.'); return; }
    if (!sample) { say('Graba tu voz o elige un archivo primero.'); return; }
    if (!$('clone-consent').checked) { say('Confirma que la persona que habla da su permiso.'); return; }
    var form = new FormData();
    form.append('name', name);
    form.append('audio_sample', sample, file ? file.name : 'grabacion.webm');
    form.append('consent', $('clone-consent-text').textContent);
    $('clone-create').disabled = true;
    say('Creando la voz…');
    fetch(base + '/v1/audio/voices', { method: 'POST', body: form }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var error = body && body.error;
          throw new Error((error && (error.message || error)) || ('POST /v1/audio/voices: ' + response.status));
        }
        return body;
      });
    }).then(function (voice) {
      var entry = { name: String(voice.name), languages: Array.isArray(voice.languages) ? voice.languages.map(String) : [] };
      made.push(entry);
      offer(entry);
      say('Voz «' + entry.name + '» creada (' + (entry.languages.join(', ') || 'ningún idioma') + '). Pulsa Hablar.');
    }).catch(function (error) {
      say('No se pudo crear la voz: ' + String(error && error.message || error));
    }).then(function () { $('clone-create').disabled = false; });
  });
})();
