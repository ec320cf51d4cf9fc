// The demo page's words, lit up as they are heard: word events say when each one is spoken (from
// the model where the service can, `word_times`), and the audio clock (KyutaiTTS.heard()) says
// where playback is. Words are written as text, never as HTML.
(function () {
  'use strict';
  var tts = window.KyutaiTTS;
  var box = document.getElementById('words');
  var words = []; // {start, end, element}, in the order they come
  var frame = null;

  function clear() {
    words = [];
    box.replaceChildren();
    box.removeAttribute('data-word-times');
    delete box.dataset.heard;
    delete box.dataset.known;
  }

  function add(detail) {
    if (typeof detail.start !== 'number' || typeof detail.end !== 'number') return;
    var element = document.createElement('span');
    element.className = 'word';
    element.textContent = String(detail.word == null ? '' : detail.word);
    if (words.length) box.appendChild(document.createTextNode(' '));
    box.appendChild(element);
    words.push({ start: detail.start, end: detail.end, element: element });
    if (detail.word_times) box.setAttribute('data-word-times', String(detail.word_times));
  }

  // The word being heard: the last one started by now (a pause keeps the one before lit).
  function light() {
    var now = tts.heard();
    var current = -1;
    if (now != null) {
      for (var i = 0; i < words.length && words[i].start <= now; i++) current = i;
    }
    // Where playback was when the words were last lit, and how many were known: what chose them.
    box.dataset.heard = now == null ? '' : String(now);
    box.dataset.known = String(words.length);
    words.forEach(function (word, index) {
      word.element.classList.toggle('heard', index < current);
      word.element.classList.toggle('current', index === current);
      if (index === current) word.element.setAttribute('aria-current', 'true');
      else word.element.removeAttribute('aria-current');
    });
    frame = window.requestAnimationFrame(light);
  }

  function follow() {
    if (frame === null) frame = window.requestAnimationFrame(light);
  }

  tts.on('word', function (event) { add(event.detail || {}); follow(); });
  tts.on('start', follow);
  tts.on('end', function () {
    if (frame !== null) window.cancelAnimationFrame(frame);
    frame = null;
    words.forEach(function (word) { word.element.classList.remove('current'); word.element.removeAttribute('aria-current'); });
  });
  document.getElementById('speak').addEventListener('click', clear, true);
})();
