// The Vercel proxy against the real Flask service running on tiny random-weight models.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import handler from '../../api/tts-proxy.js';
import {
  freePort, readWav, serveHandler, serveParsedBody, silentServer, startService,
} from './helpers/service.mjs';

const KEY = 'proxy-test-key';
let service;
let proxy;

function configure(env) {
  for (const name of ['TTS_BACKEND_URL', 'TTS_API_KEY', 'TTS_PROXY_TIMEOUT_MS', 'TTS_ALLOWED_ORIGINS']) {
    if (env[name] === undefined) delete process.env[name];
    else process.env[name] = env[name];
  }
}

function post(url, body, headers = {}) {
  return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
}

describe('api/tts-proxy.js', () => {
  before(async () => {
    service = await startService({ TTS_API_KEY: KEY });
    proxy = await serveHandler(handler);
  });
  after(async () => {
    await proxy?.close();
    await service?.stop();
  });

  test('forwards a request with the API key and passes the audio through', async () => {
    configure({ TTS_BACKEND_URL: service.url, TTS_API_KEY: KEY });
    const response = await post(proxy.url, JSON.stringify({ text: 'Hola, ¿qué tal?', language: 'es' }));
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.provider, 'Kyutai Pocket TTS');
    const wav = readWav(Buffer.from(body.audioContent, 'base64'));
    assert.equal(wav.sampleRate, 24000);
    assert.ok(wav.dataBytes > 24000, 'audio is too short');
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
  });

  test('streams /tts/stream through without buffering', async () => {
    configure({ TTS_BACKEND_URL: service.url, TTS_API_KEY: KEY });
    const response = await post(`${proxy.url}?stream=1`, JSON.stringify({ text: 'Hello there.', language: 'en' }));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'audio/wav');
    const bytes = new Uint8Array(await response.arrayBuffer());
    assert.equal(readWav(bytes).sampleRate, 24000);
    assert.ok(bytes.length > 44 + 4800);
  });

  test('without the key the backend status and error pass through', async () => {
    configure({ TTS_BACKEND_URL: service.url });
    const response = await post(proxy.url, JSON.stringify({ text: 'Hola' }));
    assert.equal(response.status, 401);
    assert.match((await response.json()).error, /API key/);
  });

  test('backend validation errors pass through', async () => {
    configure({ TTS_BACKEND_URL: service.url, TTS_API_KEY: KEY });
    const response = await post(proxy.url, JSON.stringify({ text: 'Hallo', language: 'xx' }));
    assert.equal(response.status, 400);
    assert.match((await response.json()).error, /Supported languages/);
  });

  test('only POST: 405 with Allow', async () => {
    configure({ TTS_BACKEND_URL: service.url });
    const response = await fetch(proxy.url);
    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'POST, OPTIONS');
    assert.ok((await response.json()).error);
  });

  test('answers the CORS preflight for allowed origins', async () => {
    configure({ TTS_BACKEND_URL: service.url, TTS_ALLOWED_ORIGINS: 'https://chat.example.com' });
    const response = await fetch(proxy.url, { method: 'OPTIONS', headers: { Origin: 'https://chat.example.com' } });
    assert.equal(response.status, 204);
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://chat.example.com');
    assert.match(response.headers.get('access-control-allow-methods'), /POST/);
  });

  test('bad JSON is a 400', async () => {
    configure({ TTS_BACKEND_URL: service.url });
    const response = await post(proxy.url, '{"text": ');
    assert.equal(response.status, 400);
    assert.match((await response.json()).error, /not valid JSON/);
  });

  test('backend down: 502 with fallback', async () => {
    configure({ TTS_BACKEND_URL: `http://127.0.0.1:${await freePort()}` });
    const response = await post(proxy.url, JSON.stringify({ text: 'Hola' }));
    assert.equal(response.status, 502);
    const body = await response.json();
    assert.equal(body.fallback, true);
    assert.match(body.error, /unreachable/);
  });

  test('backend too slow: 504 with fallback', async () => {
    const hung = await silentServer();
    configure({ TTS_BACKEND_URL: hung.url, TTS_PROXY_TIMEOUT_MS: '300' });
    const started = Date.now();
    const response = await post(proxy.url, JSON.stringify({ text: 'Hola' }));
    await hung.close();
    assert.equal(response.status, 504);
    assert.equal((await response.json()).fallback, true);
    assert.ok(Date.now() - started < 5000);
  });

  test('a body Vercel already parsed is forwarded, streaming included', async () => {
    configure({ TTS_BACKEND_URL: service.url, TTS_API_KEY: KEY });
    const parsed = await serveParsedBody(handler);
    try {
      const whole = await post(parsed.url, JSON.stringify({ text: 'Hola desde Vercel.', language: 'es' }));
      assert.equal(whole.status, 200);
      const wav = readWav(Buffer.from((await whole.json()).audioContent, 'base64'));
      assert.equal(wav.sampleRate, 24000);
      assert.ok(wav.dataBytes > 0);
      // "stream": true in the body asks for streaming as ?stream=1 does, and "pcm" is raw samples.
      const streamed = await post(parsed.url, JSON.stringify({ text: 'Hello.', language: 'en', stream: true, format: 'pcm' }));
      assert.equal(streamed.status, 200);
      assert.equal(streamed.headers.get('content-type'), 'audio/L16;rate=24000;channels=1');
      assert.equal(streamed.headers.get('x-sample-rate'), '24000');
      assert.equal(streamed.headers.get('x-tts-provider'), 'Kyutai DSM TTS');
      const pcm = new Uint8Array(await streamed.arrayBuffer());
      assert.ok(pcm.length > 0 && pcm.length % 2 === 0);
    } finally {
      await parsed.close();
    }
  });

  test('malformed JSON in a body Vercel parses is a 400, not a crash', async () => {
    configure({ TTS_BACKEND_URL: service.url, TTS_API_KEY: KEY });
    const parsed = await serveParsedBody(handler);
    try {
      const response = await post(parsed.url, '{"text": "Hola"');
      assert.equal(response.status, 400);
      assert.match((await response.json()).error, /not valid JSON/);
      const array = await post(parsed.url, '["Hola"]');
      assert.equal(array.status, 400);
    } finally {
      await parsed.close();
    }
  });
});

describe('api/tts-proxy.js with the backend killed', () => {
  test('answers 502 with fallback once the service is gone', async () => {
    const backend = await startService();
    const server = await serveHandler(handler);
    try {
      configure({ TTS_BACKEND_URL: backend.url });
      assert.equal((await post(server.url, JSON.stringify({ text: 'Hola' }))).status, 200);
      await backend.stop();
      const response = await post(server.url, JSON.stringify({ text: 'Hola' }));
      assert.equal(response.status, 502);
      assert.equal((await response.json()).fallback, true);
    } finally {
      await server.close();
      await backend.stop();
    }
  });
});
