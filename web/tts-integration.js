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
 * after) a user action. When the service errors, times out, is unreachable or answers
 * {"fallback": true}, the text is spoken with speechSynthesis in the right language instead.
 */
(function (global) {
  'use strict';

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

  function pcm16ToFloat(bytes) {
    var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength - (bytes.byteLength % 2));
    var out = new Float32Array(view.byteLength / 2);
    for (var i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }

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

  TTSClient.prototype._unlockOnGesture = function () {
    if (!global.addEventListener) return;
    var self = this;
    var unlock = function () {
      self.unlock();
      global.removeEventListener('pointerdown', unlock, true);
      global.removeEventListener('keydown', unlock, true);
    };
    global.addEventListener('pointerdown', unlock, true);
    global.addEventListener('keydown', unlock, true);
  };

  /** Create or resume the AudioContext; call it from a click handler to satisfy autoplay rules. */
  TTSClient.prototype.unlock = function () {
    if (!features.webAudio) return Promise.resolve(false);
    if (!this.context) this.context = new AudioContextClass();
    var context = this.context;
    if (context.state === 'running') return Promise.resolve(true);
    return context.resume().then(function () { return context.state === 'running'; }, function () { return false; });
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
    this.stop();
    var settings = Object.assign({}, this.config, options || {});
    var playback = new Playback(this);
    this.current = playback;
    var self = this;
    var startedAt = performance.now();
    if (typeof text !== 'string' || !text.trim()) {
      return Promise.reject(TTSError('speak(text): text must be a non-empty string'));
    }
    return this._speakWithService(text, settings, playback, startedAt).catch(function (error) {
      if (playback.stopped) return { provider: null, fallback: false, stopped: true };
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
    var useStream = settings.stream && features.streaming && features.webAudio;
    var url = useStream ? streamUrl(settings) : settings.endpoint;
    if (!features.webAudio) return Promise.reject(TTSError('this browser has no Web Audio API'));
    return this.unlock().then(function (running) {
      if (!running) throw TTSError('audio is blocked until the user interacts with the page (autoplay policy)');
      return self._request(url, body, settings, playback);
    }).then(function (answer) {
      return useStream
        ? self._playStream(answer, settings, playback, startedAt)
        : self._playWhole(answer, settings, playback, startedAt);
    });
  };

  TTSClient.prototype._playWhole = function (answer, settings, playback, startedAt) {
    var self = this;
    return answer.response.json().then(function (data) {
      answer.clearTimer();
      if (!data || !data.audioContent) throw TTSError('POST ' + settings.endpoint + ' answered without audio', { body: data });
      var bytes = base64ToBytes(data.audioContent);
      return self.context.decodeAudioData(bytes.buffer).then(function (buffer) {
        if (playback.stopped) return { provider: data.provider, stopped: true, fallback: false };
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
          source.start();
          self._emit('start', info);
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
    var provider = response.headers.get('X-TTS-Provider') || 'Kyutai TTS';
    var model = response.headers.get('X-TTS-Model');
    var rate = parseInt(response.headers.get('X-Sample-Rate') || '24000', 10);
    var isWav = (response.headers.get('Content-Type') || '').indexOf('wav') >= 0;
    var reader = response.body.getReader();
    var pending = new Uint8Array(0);
    var headerSkipped = !isWav;
    var nextTime = 0;
    var started = false;
    var info = { provider: provider, model: model, fallback: false, duration: 0 };
    var lastSource = null;

    function schedule(samples) {
      if (!samples.length || playback.stopped) return;
      var buffer = context.createBuffer(1, samples.length, rate);
      buffer.copyToChannel ? buffer.copyToChannel(samples, 0) : buffer.getChannelData(0).set(samples);
      var source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(context.destination);
      nextTime = Math.max(nextTime, context.currentTime + 0.05);
      source.start(nextTime);
      nextTime += buffer.duration;
      info.duration += buffer.duration;
      playback.sources.push(source);
      lastSource = source;
      if (!started) {
        started = true;
        answer.clearTimer();
        info.firstSoundMs = Math.round(performance.now() - startedAt);
        self._emit('start', info);
      }
    }

    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        var merged = new Uint8Array(pending.length + chunk.value.length);
        merged.set(pending);
        merged.set(chunk.value, pending.length);
        if (!headerSkipped) {
          if (merged.length < 44) { pending = merged; return pump(); }
          merged = merged.subarray(44);
          headerSkipped = true;
        }
        var usable = merged.length - (merged.length % 2);
        schedule(pcm16ToFloat(merged.subarray(0, usable)));
        pending = merged.slice(usable);
        return pump();
      });
    }

    return pump().then(function () {
      if (!started) throw TTSError('POST ' + streamUrl(settings) + ' streamed no audio');
      return new Promise(function (resolve) {
        var done = function () { resolve(Object.assign({ stopped: playback.stopped }, info)); };
        playback.finishers.push(done);
        if (lastSource) lastSource.onended = done; else done();
      });
    }).then(function (result) {
      self._emit('end', result);
      return result;
    });
  };

  function pickVoice(language) {
    var voices = global.speechSynthesis.getVoices ? global.speechSynthesis.getVoices() : [];
    var prefix = language.toLowerCase();
    var exact = REGIONS[prefix] ? REGIONS[prefix].toLowerCase() : prefix;
    var match = null;
    for (var i = 0; i < voices.length; i++) {
      var lang = (voices[i].lang || '').toLowerCase().replace('_', '-');
      if (lang === exact) return voices[i];
      if (!match && lang.split('-')[0] === prefix) match = voices[i];
    }
    return match;
  }

  TTSClient.prototype._speakWithBrowser = function (text, settings, playback, startedAt) {
    var self = this;
    var language = (settings.language || 'es').split('-')[0];
    return new Promise(function (resolve) {
      var utterance = new global.SpeechSynthesisUtterance(text);
      utterance.lang = REGIONS[language] || settings.language;
      var voice = pickVoice(language);
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
      global.speechSynthesis.speak(utterance);
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
      if (!running || !features.webSocket) return fallback('audio or WebSocket unavailable in this browser');
      var url = socketUrl(settings) + '?language=' + encodeURIComponent(settings.language) +
        (settings.voice ? '&voice=' + encodeURIComponent(settings.voice) : '');
      socket = new WebSocket(url);
      socket.binaryType = 'arraybuffer';
      playback.socket = socket;
      var context = self.context;
      var rate = 24000;
      var nextTime = 0;
      var info = { provider: null, fallback: false, duration: 0 };
      var lastSource = null;
      var timer = setTimeout(function () { fallback('WebSocket ' + url + ' timed out'); try { socket.close(); } catch (e) {} },
        settings.timeout);
      socket.onmessage = function (event) {
        if (typeof event.data === 'string') {
          var message = JSON.parse(event.data);
          if (message.type === 'ready') {
            rate = message.sample_rate; info.provider = message.provider; info.model = message.model;
            queue.splice(0).forEach(function (m) { socket.send(m); });
          } else if (message.type === 'error') {
            clearTimeout(timer);
            fallback('WebSocket ' + url + ': ' + message.message);
          } else if (message.type === 'word') {
            self._emit('word', message);
          } else if (message.type === 'done') {
            playback.received = true;
            var finish = function () { var r = Object.assign({ stopped: playback.stopped }, info); self._emit('end', r); settle(r); };
            playback.finishers.push(finish);
            if (lastSource) lastSource.onended = finish; else finish();
          }
          return;
        }
        var samples = pcm16ToFloat(new Uint8Array(event.data));
        if (!samples.length || playback.stopped) return;
        var buffer = context.createBuffer(1, samples.length, rate);
        buffer.getChannelData(0).set(samples);
        var source = context.createBufferSource();
        source.buffer = buffer;
        source.connect(context.destination);
        nextTime = Math.max(nextTime, context.currentTime + 0.05);
        source.start(nextTime);
        nextTime += buffer.duration;
        info.duration += buffer.duration;
        playback.sources.push(source);
        lastSource = source;
        if (info.firstSoundMs === undefined) {
          clearTimeout(timer);
          info.firstSoundMs = Math.round(performance.now() - startedAt);
          self._emit('start', info);
        }
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
    unlock: function () { return client.unlock(); },
    on: function (type, listener) { client.on(type, listener); return api; },
    off: function (type, listener) { client.off(type, listener); return api; },
  };
  global.KyutaiTTS = api;
})(typeof globalThis !== 'undefined' ? globalThis : window);
