// The browser client's WAV parsing and voice choice, loaded in node through its ES module form.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import KyutaiTTS, { parseWavHeader, pickVoice } from '../../web/tts-integration.mjs';

/** A WAV header as the service streams it: sizes unknown (0xFFFFFFFF), 16-bit PCM. */
function streamingHeader({ rate = 24000, channels = 1, bits = 16, encoding = 1, extra = null } = {}) {
  const chunks = [];
  const fmt = Buffer.alloc(24);
  fmt.write('fmt ', 0, 'ascii');
  fmt.writeUInt32LE(16, 4);
  fmt.writeUInt16LE(encoding, 8);
  fmt.writeUInt16LE(channels, 10);
  fmt.writeUInt32LE(rate, 12);
  fmt.writeUInt32LE(rate * channels * bits / 8, 16);
  fmt.writeUInt16LE(channels * bits / 8, 20);
  fmt.writeUInt16LE(bits, 22);
  chunks.push(Buffer.from('RIFF'), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('WAVE'), fmt);
  if (extra) chunks.push(extra);
  const data = Buffer.alloc(8, 0xff);
  data.write('data', 0, 'ascii');
  chunks.push(data);
  return new Uint8Array(Buffer.concat(chunks));
}

describe('parseWavHeader', () => {
  test('reads the streamed header, whatever its length', () => {
    const header = streamingHeader();
    assert.deepEqual(parseWavHeader(header), { channels: 1, sampleRate: 24000, bitsPerSample: 16, dataOffset: 44 });
    const list = Buffer.alloc(8 + 5 + 1);
    list.write('LIST', 0, 'ascii');
    list.writeUInt32LE(5, 4); // odd sizes are padded to an even length
    const longer = streamingHeader({ rate: 48000, channels: 2, extra: list });
    assert.deepEqual(parseWavHeader(longer), { channels: 2, sampleRate: 48000, bitsPerSample: 16, dataOffset: 58 });
  });

  test('waits for more bytes while the header is incomplete', () => {
    const header = streamingHeader();
    for (let length = 0; length < header.length; length++) {
      assert.equal(parseWavHeader(header.subarray(0, length)), null, `${length} bytes`);
    }
  });

  test('refuses what it cannot play, naming the problem', () => {
    assert.throws(() => parseWavHeader(new TextEncoder().encode('{"error": "busy", "fallback": true}')),
      { name: 'TTSError', message: /not a WAV/ });
    assert.throws(() => parseWavHeader(streamingHeader({ encoding: 3, bits: 32 })), { message: /not 16-bit PCM/ });
  });
});

describe('pickVoice', () => {
  const voices = [
    { name: 'Paulina', lang: 'es-MX', localService: true },
    { name: 'Google español', lang: 'es-ES', localService: false },
    { name: 'Samantha', lang: 'en-US', localService: true },
    { name: 'Amélie', lang: 'fr_CA', localService: true },
  ];

  test('a language alone gets its usual region', () => {
    assert.equal(pickVoice(voices, 'es').name, 'Google español');
    assert.equal(pickVoice(voices, 'en').name, 'Samantha');
  });

  test('an asked-for region wins, then any voice of the language', () => {
    assert.equal(pickVoice(voices, 'es-MX').name, 'Paulina');
    assert.equal(pickVoice(voices, 'es_AR').name, 'Paulina'); // no es-AR: a local Spanish voice
    assert.equal(pickVoice(voices, 'fr').name, 'Amélie');
  });

  test('no voice of the language is null, so the browser picks by lang', () => {
    assert.equal(pickVoice(voices, 'de'), null);
    assert.equal(pickVoice([], 'es'), null);
  });
});

test('the ES module and the global are one client', () => {
  assert.equal(KyutaiTTS, globalThis.KyutaiTTS);
  assert.equal(KyutaiTTS.TTS_CONFIG.language, 'es');
  assert.equal(KyutaiTTS.features.webAudio, false); // node: feature checks report what is missing
});
