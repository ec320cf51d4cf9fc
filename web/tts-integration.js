/*
 * Kyutai TTS browser client, with the browser's own Web Speech API as the fallback voice.
 *
 *   <script src="tts-integration.js"></script>           -> window.KyutaiTTS
 *   import KyutaiTTS, { speak } from './tts-integration.mjs'   (same code, as an ES module)
 *
 *   KyutaiTTS.configure({ endpoint: '/api/tts-proxy', language: 'es' });
 *   KyutaiTTS.on('start', (e) => console.log(e.detail.provider));
 *   await KyutaiTTS.speak('Hola, ¿en qué te puedo ayudar?');
 *
 * Browsers only play sound after the user has interacted with the page (autoplay policy): the
 * client resumes its AudioContext on the first click or key press, so call speak() from (or
 * after) a user action. A speak() made before any interaction fetches its audio, emits
 * 'blocked', and plays at the user's next click or key press. When the service errors, times
 * out, is unreachable or answers {"fallback": true}, the text is spoken with speechSynthesis in
 * the right language instead.
 *
 * Words: speakStream() emits a 'word' event ({word, start, end} in seconds of audio, and `written`
 * where the word reads a figure or abbreviation written otherwise: see words.js) as each word's
 * time is known, and speak() does for every word with `words: true`; heard() is the seconds of
 * audio heard so far, by the audio clock, so that a page can light up the word being spoken.
 */
(function (global) {
  'use strict';

  // Loaded twice (a <script> tag and the ES module): keep the first client, its state and listeners.
  if (global.KyutaiTTS && global.KyutaiTTS.TTSClient) return;

  var WEB_SPEECH = 'Web Speech API';
  var REGIONS = { es: 'es-ES', en: 'en-US', fr: 'fr-FR', de: 'de-DE', it: 'it-IT', pt: 'pt-PT', nl: 'nl-NL' };

  // Feature checks, done once.
  var AudioContextClass = global.AudioContext || global.webkitAudioContext;
  var features = Object.freeze({
    webAudio: typeof AudioContextClass === 'function',
    speechSynthesis: typeof global.speechSynthesis !== 'undefined' &&
      typeof global.SpeechSynthesisUtterance === 'function',
    streaming: typeof global.ReadableStream === 'function' && typeof global.TextDecoder === 'function',
    abort: typeof global.AbortController === 'function',
    webSocket: typeof global.WebSocket === 'function',
  });

  var TTS_CONFIG = {
    endpoint: '/tts',          // POST /tts of the service, or the Vercel proxy
    streamEndpoint: null,      // defaults to endpoint + '/stream' (or '?stream=1' for the proxy)
    socketEndpoint: null,      // WebSocket for text that arrives in pieces; defaults to ws(s)://host/ws/tts
    language: 'es',
    voice: null,
    timeout: 15000,            // ms until the first audio, then the fallback speaks
    stream: false,             // play /tts/stream while it is generated
    words: false,              // ask /tts for word times: a 'word' event per word (the WebSocket always sends them)
    fallback: true,            // speak with speechSynthesis when the service cannot
    headers: {},
  };

  function TTSError(message, details) {
    var error = new Error(message);
    error.name = 'TTSError';
    Object.assign(error, details || {});
    return error;
  }

  function streamUrl(config) {
    if (config.streamEndpoint) return config.streamEndpoint;
    var url = config.endpoint;
    if (/\/tts\/?$/.test(url)) return url.replace(/\/?$/, '/stream');
    return url + (url.indexOf('?') >= 0 ? '&' : '?') + 'stream=1';
  }

  function socketUrl(config) {
    if (config.socketEndpoint) return config.socketEndpoint;
    var base = new URL(config.endpoint, global.location ? global.location.href : 'http://localhost/');
    base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    base.pathname = base.pathname.replace(/\/tts\/?$/, '') + '/ws/tts';
    base.search = '';
    return base.toString();
  }

  function base64ToBytes(b64) {
    var binary = global.atob(b64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /**
   * The format of a 16-bit PCM WAV header and where its samples start, or null while `bytes` is
   * too short to tell. A streamed WAV gives its sizes as 0xFFFFFFFF ("until the end").
   */
  function parseWavHeader(bytes) {
    if (bytes.length < 12) return null;
    var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    var tag = function (at) { return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]); };
    if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw TTSError('the audio stream is not a WAV file');
    var format = null;
    for (var offset = 12; offset + 8 <= bytes.length;) {
      var id = tag(offset);
      var size = view.getUint32(offset + 4, true);
      if (id === 'data') {
        if (!format) throw TTSError('the WAV stream has no fmt chunk before its samples');
        format.dataOffset = offset + 8;
        return format;
      }
      if (offset + 8 + size > bytes.length) return null;
      if (id === 'fmt ') {
        var encoding = view.getUint16(offset + 8, true);
        format = { channels: view.getUint16(offset + 10, true), sampleRate: view.getUint32(offset + 12, true),
                   bitsPerSample: view.getUint16(offset + 22, true) };
        if ((encoding !== 1 && encoding !== 0xFFFE) || format.bitsPerSample !== 16 || !format.channels) {
          throw TTSError('the WAV stream is not 16-bit PCM (format ' + encoding + ', ' + format.bitsPerSample + ' bits)');
        }
      }
      offset += 8 + size + (size % 2);
    }
    return null;
  }

  function pcm16ToFloat(bytes) {
    var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength - (bytes.byteLength % 2));
    var out = new Float32Array(view.byteLength / 2);
    for (var i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }

  /** Plays PCM chunks back to back on an AudioContext as they arrive. */
  function PcmPlayer(context, rate, playback, onFirstSound) {
    this.context = context;
    this.rate = rate;
    this.playback = playback;
    this.onFirstSound = onFirstSound;
    this.nextTime = 0;
    this.duration = 0;
    this.lastSource = null;
  }
  PcmPlayer.prototype.play = function (samples) {
    if (!samples.length || this.playback.stopped) return;
    var context = this.context;
    var buffer = context.createBuffer(1, samples.length, this.rate);
    buffer.getChannelData(0).set(samples);
    var source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    this.nextTime = Math.max(this.nextTime, context.currentTime + 0.05);
    source.start(this.nextTime);
    this.nextTime += buffer.duration;
    this.duration += buffer.duration;
    this.playback.sources.push(source);
    var first = this.lastSource === null;
    if (first) this.playback.origin = this.nextTime - buffer.duration;
    this.lastSource = source;
    if (first && this.onFirstSound) this.onFirstSound();
  };
  /** Calls `done` once the last scheduled chunk has played (at once when nothing was played). */
  PcmPlayer.prototype.whenFinished = function (done) {
    this.playback.finishers.push(done);
    if (this.lastSource) this.lastSource.onended = done; else done();
  };

  /** One speak() call: its abort signal, its sounds, and how it ended. */
  function Playback(client) {
    this.client = client;
    this.controller = features.abort ? new AbortController() : null;
    this.sources = [];
    this.stopped = false;
    this.finishers = [];
  }
  Playback.prototype.stop = function () {
    if (this.stopped) return;
    this.stopped = true;
    if (this.controller) this.controller.abort();
    this.sources.forEach(function (source) { try { source.stop(); } catch (e) { /* already ended */ } });
    if (this.socket) { try { this.socket.close(); } catch (e) { /* closed */ } }
    this.finishers.splice(0).forEach(function (finish) { finish(); });
  };

  function TTSClient(config) {
    this.config = Object.assign({}, TTS_CONFIG, config || {});
    this.events = typeof global.EventTarget === 'function' ? new EventTarget() : null;
    this.context = null;
    this.current = null;
    this._unlockOnGesture();
  }

  /** Seconds of the current speech heard so far, by the audio clock; null before its first sound. */
  TTSClient.prototype.heard = function () {
    var playback = this.current;
    if (!playback || playback.origin == null || !this.context) return null;
    return Math.max(0, this.context.currentTime - playback.origin);
  };

  TTSClient.prototype.configure = function (partial) {
    Object.assign(this.config, partial || {});
    return this.config;
  };

  TTSClient.prototype.on = function (type, listener) {
    if (this.events) this.events.addEventListener(type, listener);
    return this;
  };

  TTSClient.prototype.off = function (type, listener) {
    if (this.events) this.events.removeEventListener(type, listener);
    return this;
  };

  TTSClient.prototype._emit = function (type, detail) {
    if (this.events && typeof global.CustomEvent === 'function') {
      this.events.dispatchEvent(new CustomEvent(type, { detail: detail }));
    }
  };

  // Events that count as a user gesture for the autoplay policy (touch sends pointerup and touchend).
  var GESTURES = ['pointerdown', 'pointerup', 'touchend', 'keydown'];

  TTSClient.prototype._unlockOnGesture = function () {
    if (!global.addEventListener) return;
    var self = this;
    var unlock = function () {
      self.unlock().then(function (running) {
        if (!running) return;
        GESTURES.forEach(function (type) { global.removeEventListener(type, unlock, true); });
      });
    };
    GESTURES.forEach(function (type) { global.addEventListener(type, unlock, true); });
  };

  /**
   * Create or resume the AudioContext; resolves true once sound can play, false while the browser
   * still blocks it. Call it from a click handler to satisfy the autoplay policy.
   */
  TTSClient.prototype.unlock = function () {
    if (!features.webAudio) return Promise.resolve(false);
    if (!this.context) this.context = new AudioContextClass();
    var context = this.context;
    if (context.state === 'running') return Promise.resolve(true);
    // Without a user gesture resume() stays pending until one comes (Chrome): never wait on it alone.
    var resumed = context.resume().then(function () { return context.state === 'running'; },
                                        function () { return false; });
    var checked = new Promise(function (resolve) {
      setTimeout(function () { resolve(context.state === 'running'); }, 300);
    });
    return Promise.race([resumed, checked]);
  };

  /**
   * Resolves when the AudioContext plays sound. While the autoplay policy blocks it, emits
   * 'blocked' once and waits for the user's next click or key press (or for stop()).
   */
  TTSClient.prototype._audible = function (playback) {
    var self = this;
    var context = this.context;
    if (context.state === 'running') return Promise.resolve();
    return new Promise(function (resolve) {
      var settled = false;
      var check = function () { if (context.state === 'running') finish(); };
      var finish = function () {
        if (settled) return;
        settled = true;
        context.removeEventListener('statechange', check);
        resolve();
      };
      context.addEventListener('statechange', check);
      playback.finishers.push(finish);
      self.unlock().then(function (running) {
        if (running) finish();
        else if (!settled) {
          self._emit('blocked', { reason: 'autoplay',
            message: 'The browser blocks sound until the user clicks or presses a key on the page.' });
        }
      });
    });
  };

  /** Stop whatever is being spoken, by the service or by the fallback. */
  TTSClient.prototype.stop = function () {
    if (this.current) {
      this.current.stop();
      this.current = null;
    }
    if (features.speechSynthesis) global.speechSynthesis.cancel();
  };

  /**
   * Speak `text`; resolves when playback ends (or is stopped) with
   * {provider, model, fallback, stopped, firstSoundMs, duration}.
   */
  TTSClient.prototype.speak = function (text, options) {
    if (typeof text !== 'string' || !text.trim()) {
      return Promise.reject(TTSError('speak(text): text must be a non-empty string'));
    }
    this.stop();
    var settings = Object.assign({}, this.config, options || {});
    var playback = new Playback(this);
    this.current = playback;
    var self = this;
    var startedAt = performance.now();
    return this._speakWithService(text, settings, playback, startedAt).catch(function (error) {
      if (playback.stopped) {
        var stopped = { provider: null, fallback: false, stopped: true };
        self._emit('end', stopped);
        return stopped;
      }
      self._emit('error', { error: error, message: error.message });
      if (!settings.fallback || !features.speechSynthesis) throw error;
      self._emit('fallback', { reason: error.message, provider: WEB_SPEECH });
      return self._speakWithBrowser(text, settings, playback, startedAt);
    }).then(function (result) {
      if (self.current === playback) self.current = null;
      return result;
    });
  };

  TTSClient.prototype._request = function (url, body, settings, playback) {
    var timer = null;
    var timedOut = false;
    var controller = playback.controller;
    if (controller && settings.timeout > 0) {
      timer = setTimeout(function () { timedOut = true; controller.abort(); }, settings.timeout);
    }
    var headers = Object.assign({ 'Content-Type': 'application/json' }, settings.headers);
    return fetch(url, {
      method: 'POST', headers: headers, body: JSON.stringify(body), signal: controller ? controller.signal : undefined,
    }).then(function (response) {
      if (response.ok) return { response: response, clearTimer: function () { clearTimeout(timer); } };
      clearTimeout(timer);
      return response.json().catch(function () { return {}; }).then(function (data) {
        var message = (data && data.error && (data.error.message || data.error)) || response.statusText;
        throw TTSError('POST ' + url + ' failed with ' + response.status + ': ' + message,
          { status: response.status, fallback: !!(data && data.fallback), body: data });
      });
    }, function (error) {
      clearTimeout(timer);
      if (playback.stopped) throw error;
      if (timedOut) throw TTSError('POST ' + url + ' timed out after ' + settings.timeout + ' ms', { timeout: true });
      throw TTSError('POST ' + url + ' is unreachable: ' + error.message, { network: true });
    });
  };

  TTSClient.prototype._speakWithService = function (text, settings, playback, startedAt) {
    var self = this;
    var body = { text: text, language: settings.language };
    if (settings.voice) body.voice = settings.voice;
    if (settings.words) body.words = true;
    var useStream = settings.stream && features.streaming && features.webAudio;
    if (!features.webAudio) return Promise.reject(TTSError('this browser has no Web Audio API'));
    // Start the AudioContext now, but ask for the audio at once: if the autoplay policy still
    // blocks sound, playback waits for the user's next gesture (see _audible).
    this.unlock();
    var whole = function () {
      return self._request(settings.endpoint, body, settings, playback).then(function (answer) {
        return self._playWhole(answer, settings, playback, startedAt);
      });
    };
    if (!useStream) return whole();
    return this._request(streamUrl(settings), body, settings, playback).then(function (answer) {
      return self._playStream(answer, settings, playback, startedAt);
    }, function (error) {
      // A service without /tts/stream (or a proxy in front of one) still answers POST /tts.
      if (!playback.stopped && (error.status === 404 || error.status === 405)) return whole();
      throw error;
    });
  };

  TTSClient.prototype._playWhole = function (answer, settings, playback, startedAt) {
    var self = this;
    return answer.response.json().then(function (data) {
      answer.clearTimer();
      if (!data || !data.audioContent) throw TTSError('POST ' + settings.endpoint + ' answered without audio', { body: data });
      var bytes = base64ToBytes(data.audioContent);
      return self.context.decodeAudioData(bytes.buffer).then(function (buffer) {
        return self._audible(playback).then(function () { return buffer; });
      }).then(function (buffer) {
        if (playback.stopped) {
          var stopped = { provider: data.provider, stopped: true, fallback: false };
          self._emit('end', stopped);
          return stopped;
        }
        var source = self.context.createBufferSource();
        source.buffer = buffer;
        source.connect(self.context.destination);
        playback.sources.push(source);
        var info = { provider: data.provider, model: data.model, language: data.language, fallback: false,
                     firstSoundMs: Math.round(performance.now() - startedAt), duration: buffer.duration };
        return new Promise(function (resolve) {
          var done = function () { resolve(Object.assign({ stopped: playback.stopped }, info)); };
          source.onended = done;
          playback.finishers.push(done);
          playback.origin = self.context.currentTime;
          source.start();
          self._emit('start', info);
          // Asked for with `words: true`: each word and when it is heard, as the WebSocket sends them.
          (Array.isArray(data.words) ? data.words : []).forEach(function (word) {
            var event = { type: 'word', word: word.word, start: word.start, end: word.end, word_times: data.word_times };
            if (typeof word.written === 'string') event.written = word.written;
            self._emit('word', event);
          });
        }).then(function (result) {
          self._emit('end', result);
          return result;
        });
      });
    });
  };

  TTSClient.prototype._playStream = function (answer, settings, playback, startedAt) {
    var self = this;
    var response = answer.response;
    var context = this.context;
    var type = (response.headers.get('Content-Type') || '').toLowerCase();
    var format = null; // from the WAV header, or from the headers for raw PCM ("format": "pcm")
    if (type.indexOf('audio/l16') === 0) {
      var rate = /rate=(\d+)/.exec(type);
      format = { sampleRate: parseInt(rate ? rate[1] : response.headers.get('X-Sample-Rate') || '24000', 10),
                 channels: 1, bitsPerSample: 16, dataOffset: 0 };
    }
    var reader = response.body.getReader();
    var pending = new Uint8Array(0);
    var info = { provider: response.headers.get('X-TTS-Provider') || 'Kyutai TTS',
                 model: response.headers.get('X-TTS-Model'), fallback: false, duration: 0 };
    var player = null;
    var schedule = function (bytes) {
      if (!player) {
        player = new PcmPlayer(context, format.sampleRate, playback, function () {
          answer.clearTimer();
          info.firstSoundMs = Math.round(performance.now() - startedAt);
          self._emit('start', info);
        });
      }
      var samples = pcm16ToFloat(bytes);
      if (format.channels > 1) { // fold interleaved channels into one
        var mono = new Float32Array(samples.length / format.channels);
        for (var i = 0; i < mono.length; i++) {
          var sum = 0;
          for (var c = 0; c < format.channels; c++) sum += samples[i * format.channels + c];
          mono[i] = sum / format.channels;
        }
        samples = mono;
      }
      player.play(samples);
      info.duration = player.duration;
    };

    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done || playback.stopped) return;
        var merged = new Uint8Array(pending.length + chunk.value.length);
        merged.set(pending);
        merged.set(chunk.value, pending.length);
        if (!format) {
          format = parseWavHeader(merged);
          if (!format) { pending = merged; return pump(); }
          merged = merged.subarray(format.dataOffset);
        }
        var frameBytes = 2 * format.channels;
        var usable = merged.length - (merged.length % frameBytes);
        schedule(merged.subarray(0, usable));
        pending = merged.slice(usable);
        return pump();
      });
    }

    // The service has answered: waiting for the user's click (autoplay policy) is not it being slow.
    if (context.state !== 'running') answer.clearTimer();
    return this._audible(playback).then(pump).then(function () {
      if (playback.stopped) return { provider: info.provider, fallback: false, stopped: true };
      if (!player || !player.lastSource) throw TTSError('POST ' + streamUrl(settings) + ' streamed no audio');
      return new Promise(function (resolve) {
        player.whenFinished(function () { resolve(Object.assign({ stopped: playback.stopped }, info)); });
      });
    }).then(function (result) {
      self._emit('end', result);
      return result;
    });
  };

  /**
   * The browser voice for `language`: the exact region when one is asked for ('es-MX'), else the
   * usual one ('es' -> 'es-ES'), else any voice of the language, preferring the device's own.
   */
  function pickVoice(voices, language) {
    var wanted = String(language || '').toLowerCase().replace('_', '-');
    var base = wanted.split('-')[0];
    var preferred = wanted.indexOf('-') > 0 ? wanted : (REGIONS[base] || base).toLowerCase();
    var best = null;
    var bestScore = 0;
    for (var i = 0; i < voices.length; i++) {
      var lang = (voices[i].lang || '').toLowerCase().replace('_', '-');
      var score = lang === preferred ? 4 : lang.split('-')[0] === base ? 2 : 0;
      if (score && voices[i].localService) score += 1;
      if (score > bestScore) { best = voices[i]; bestScore = score; }
    }
    return best;
  }

  var voicesWaited = false;

  /** The browser's voices; Chrome fills the list asynchronously, so wait once, briefly, for it. */
  function browserVoices() {
    var synth = global.speechSynthesis;
    var voices = synth.getVoices();
    if (voices.length || voicesWaited || !synth.addEventListener) return Promise.resolve(voices);
    voicesWaited = true;
    return new Promise(function (resolve) {
      var done = function () {
        clearTimeout(timer);
        synth.removeEventListener('voiceschanged', done);
        resolve(synth.getVoices());
      };
      var timer = setTimeout(done, 500);
      synth.addEventListener('voiceschanged', done);
    });
  }

  TTSClient.prototype._speakWithBrowser = function (text, settings, playback, startedAt) {
    var self = this;
    var language = String(settings.language || 'es').replace('_', '-');
    var base = language.split('-')[0].toLowerCase();
    return browserVoices().then(function (voices) {
      return new Promise(function (resolve) {
        var utterance = new global.SpeechSynthesisUtterance(text);
        var voice = pickVoice(voices, language);
        utterance.lang = voice ? voice.lang : language.indexOf('-') > 0 ? language : REGIONS[base] || language;
        if (voice) utterance.voice = voice;
        var info = { provider: WEB_SPEECH, model: voice ? voice.name : null, language: utterance.lang, fallback: true };
        var finished = false;
        var done = function () {
          if (finished) return;
          finished = true;
          var result = Object.assign({ stopped: playback.stopped }, info);
          self._emit('end', result);
          resolve(result);
        };
        utterance.onstart = function () {
          info.firstSoundMs = Math.round(performance.now() - startedAt);
          self._emit('start', info);
        };
        utterance.onend = done;
        utterance.onerror = done;
        playback.finishers.push(function () { global.speechSynthesis.cancel(); done(); });
        if (playback.stopped) return done();
        global.speechSynthesis.speak(utterance);
      });
    });
  };

  /**
   * Speak text that arrives in pieces (an LLM answer being written): returns
   * {write(text), end(), done} where `done` resolves when the audio has played.
   * Uses the service's WebSocket; if it fails, the whole text is spoken by speechSynthesis.
   */
  TTSClient.prototype.speakStream = function (options) {
    this.stop();
    var settings = Object.assign({}, this.config, options || {});
    var self = this;
    var playback = new Playback(this);
    this.current = playback;
    var startedAt = performance.now();
    var written = '';
    var ended = false;
    var queue = [];
    var socket = null;
    var settle;
    var done = new Promise(function (resolve) { settle = resolve; });

    function fallback(reason) {
      if (playback.fellBack || playback.stopped) return;
      playback.fellBack = true;
      self._emit('error', { message: reason });
      if (!settings.fallback || !features.speechSynthesis) { settle({ provider: null, error: reason }); return; }
      self._emit('fallback', { reason: reason, provider: WEB_SPEECH });
      var speakWhenComplete = function () {
        self._speakWithBrowser(written, settings, playback, startedAt).then(settle);
      };
      if (ended) speakWhenComplete(); else playback.onEnded = speakWhenComplete;
    }

    this.unlock().then(function (running) {
      if (!features.webAudio || !features.webSocket) return fallback('audio or WebSocket unavailable in this browser');
      // While the autoplay policy blocks sound, the audio queues up and plays at the next gesture.
      if (!running) self._audible(playback);
      var url = socketUrl(settings) + '?language=' + encodeURIComponent(settings.language) +
        (settings.voice ? '&voice=' + encodeURIComponent(settings.voice) : '');
      socket = new WebSocket(url);
      socket.binaryType = 'arraybuffer';
      playback.socket = socket;
      var info = { provider: null, fallback: false, duration: 0 };
      var player = null;
      var timer = setTimeout(function () { fallback('WebSocket ' + url + ' timed out'); try { socket.close(); } catch (e) {} },
        settings.timeout);
      socket.onmessage = function (event) {
        if (typeof event.data === 'string') {
          var message = JSON.parse(event.data);
          if (message.type === 'ready') {
            info.provider = message.provider; info.model = message.model;
            player = new PcmPlayer(self.context, message.sample_rate, playback, function () {
              clearTimeout(timer);
              info.firstSoundMs = Math.round(performance.now() - startedAt);
              self._emit('start', info);
            });
            queue.splice(0).forEach(function (m) { socket.send(m); });
          } else if (message.type === 'error') {
            clearTimeout(timer);
            fallback('WebSocket ' + url + ': ' + message.message);
          } else if (message.type === 'word') {
            self._emit('word', message);
          } else if (message.type === 'done') {
            playback.received = true;
            info.duration = player ? player.duration : 0;
            var finish = function () { var r = Object.assign({ stopped: playback.stopped }, info); self._emit('end', r); settle(r); };
            if (player) player.whenFinished(finish); else finish();
          }
          return;
        }
        if (player) player.play(pcm16ToFloat(new Uint8Array(event.data)));
      };
      // Once 'done' has arrived, whatever happens to the socket no longer matters.
      socket.onerror = function () {
        clearTimeout(timer);
        if (!playback.received) fallback('WebSocket ' + url + ' failed');
      };
      socket.onclose = function () {
        clearTimeout(timer);
        if (!playback.received && !playback.stopped) fallback('WebSocket ' + url + ' closed before the end');
      };
    });

    function send(message) {
      var data = JSON.stringify(message);
      if (socket && socket.readyState === 1 && queue.length === 0) socket.send(data); else queue.push(data);
    }
    return {
      write: function (text) {
        if (ended) throw TTSError('speakStream: write() after end()');
        written += text;
        send({ type: 'text', text: text });
      },
      end: function () {
        if (ended) return;
        ended = true;
        send({ type: 'end' });
        if (playback.onEnded) playback.onEnded();
      },
      done: done,
    };
  };

  var client = new TTSClient();
  var api = {
    TTSClient: TTSClient,
    TTS_CONFIG: client.config,
    features: features,
    client: client,
    configure: function (partial) { return client.configure(partial); },
    speak: function (text, options) { return client.speak(text, options); },
    speakStream: function (options) { return client.speakStream(options); },
    stop: function () { return client.stop(); },
    heard: function () { return client.heard(); },
    unlock: function () { return client.unlock(); },
    parseWavHeader: parseWavHeader,
    pickVoice: pickVoice,
    on: function (type, listener) { client.on(type, listener); return api; },
    off: function (type, listener) { client.off(type, listener); return api; },
  };
  global.KyutaiTTS = api;
})(typeof globalThis !== 'undefined' ? globalThis : window);
