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

  // The marks around a spoken word, kept around what was written ("¿mil euros?" shows "¿1.000 €?").
  var MARKS = '¿¡"\'«»“”‘’()[]{}.,;:!?…';
  function marks(word, atEnd) {
    var i = atEnd ? word.length : 0;
    if (atEnd) { while (i > 0 && MARKS.indexOf(word[i - 1]) >= 0) i--; return word.slice(i); }
    while (i < word.length && MARKS.indexOf(word[i]) >= 0) i++;
    return word.slice(0, i);
  }

  function show(entry) {
    if (entry.written == null) return;
    var before = entry.written.indexOf(entry.before) === 0 ? '' : entry.before;
    var after = entry.after && entry.written.slice(-entry.after.length) === entry.after ? '' : entry.after;
    entry.element.textContent = before + entry.written + after;
  }

  // A word that reads something written otherwise ("mil", of "1.500 €") shows what was written,
  // lit from its first spoken word to its last: the words after it carry `written: ""`.
  function add(detail) {
    if (typeof detail.start !== 'number' || typeof detail.end !== 'number') return;
    var spoken = String(detail.word == null ? '' : detail.word);
    var last = words[words.length - 1];
    if (detail.written === '' && last && last.written != null) {
      last.end = Math.max(last.end, detail.end);
      last.after = marks(spoken, true);
      last.element.title += ' ' + spoken;
      show(last);
      return;
    }
    var element = document.createElement('span');
    element.className = 'word';
    element.textContent = spoken;
    var entry = { start: detail.start, end: detail.end, element: element, written: null };
    if (typeof detail.written === 'string' && detail.written) {
      entry.written = detail.written;
      entry.before = marks(spoken, false);
      entry.after = marks(spoken, true);
      element.title = spoken; // what is heard, when the page shows what was written
      show(entry);
    }
    if (words.length) box.appendChild(document.createTextNode(' '));
    box.appendChild(element);
    words.push(entry);
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
