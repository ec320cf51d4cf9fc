// The proxy tells the service who the browser is (X-Forwarded-For), so that rate limits apply per
// browser, and stops the service's work when the browser leaves a non-streaming request.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import handler, { forwardedFor } from '../../api/tts-proxy.js';
import { serveHandler, startService } from './helpers/service.mjs';

function configure(env) {
  for (const name of ['TTS_BACKEND_URL', 'TTS_API_KEY', 'TTS_PROXY_TIMEOUT_MS', 'TTS_ALLOWED_ORIGINS']) {
    if (env[name] === undefined) delete process.env[name];
    else process.env[name] = env[name];
  }
}

function post(url, body, headers = {}, signal = undefined) {
  return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body, signal });
}

/** A backend that records each request's headers and answers /tts after `delayMs` (never when null). */
async function recordingBackend(delayMs = 0) {
  const seen = { requests: [], closedEarly: 0 };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.requests.push({ forwardedFor: req.headers['x-forwarded-for'] });
      res.on('close', () => { if (!res.writableFinished) seen.closedEarly += 1; });
      if (delayMs === null) return;
      setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"audioContent": ""}');
      }, delayMs);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

async function waitFor(check, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('api/tts-proxy.js and the client address', () => {
  test('the chain ends with the browser as Vercel reports it', () => {
    const req = (headers) => ({ headers, socket: { remoteAddress: '10.9.8.7' } });
    assert.equal(forwardedFor(req({ 'x-forwarded-for': '203.0.113.9', 'x-real-ip': '203.0.113.9' })), '203.0.113.9');
    assert.equal(forwardedFor(req({ 'x-real-ip': '198.51.100.4' })), '198.51.100.4');
    assert.equal(forwardedFor(req({ 'x-forwarded-for': '192.0.2.1, 203.0.113.9' })), '192.0.2.1, 203.0.113.9');
    assert.equal(forwardedFor(req({ 'x-forwarded-for': '192.0.2.1', 'x-real-ip': '203.0.113.9' })),
      '192.0.2.1, 203.0.113.9');
    assert.equal(forwardedFor(req({})), '10.9.8.7');
  });

  test('the backend receives X-Forwarded-For', async () => {
    const backend = await recordingBackend(0);
    const proxy = await serveHandler(handler);
    try {
      configure({ TTS_BACKEND_URL: backend.url });
      assert.equal((await post(proxy.url, '{"text": "Hola"}', { 'x-real-ip': '203.0.113.5' })).status, 200);
      assert.equal((await post(proxy.url, '{"text": "Hola"}')).status, 200);
      assert.deepEqual(backend.seen.requests.map((r) => r.forwardedFor), ['203.0.113.5', '127.0.0.1']);
    } finally {
      await proxy.close();
      await backend.close();
    }
  });

  test('a browser that leaves a non-streaming request stops the backend request', async () => {
    const backend = await recordingBackend(null);
    const proxy = await serveHandler(handler);
    try {
      configure({ TTS_BACKEND_URL: backend.url, TTS_PROXY_TIMEOUT_MS: '20000' });
      const controller = new AbortController();
      const answer = post(proxy.url, '{"text": "Hola"}', {}, controller.signal).catch((error) => error);
      await waitFor(() => backend.seen.requests.length === 1);
      const left = Date.now();
      controller.abort();
      assert.equal((await answer).name, 'AbortError');
      await waitFor(() => backend.seen.closedEarly === 1, 2000);
      assert.ok(Date.now() - left < 2000);
    } finally {
      await proxy.close();
      await backend.close();
    }
  });
});

describe('api/tts-proxy.js in front of the real service with TTS_TRUST_PROXY=1', () => {
  let service;
  let proxy;
  before(async () => {
    service = await startService({ TTS_TRUST_PROXY: '1', TTS_RATE_LIMIT: '2/minute' });
    proxy = await serveHandler(handler);
  });
  after(async () => {
    await proxy?.close();
    await service?.stop();
  });

  test('each browser has its own budget, not one shared by everyone behind the proxy', async () => {
    configure({ TTS_BACKEND_URL: service.url });
    // Unsupported language: a cheap 400 that still spends the budget.
    const ask = (address) => post(proxy.url, '{"text": "Hola", "language": "xx"}', { 'x-real-ip': address })
      .then(async (response) => { await response.arrayBuffer(); return response.status; });
    const first = [];
    for (let i = 0; i < 3; i += 1) first.push(await ask('203.0.113.1'));
    assert.deepEqual(first, [400, 400, 429]);
    assert.equal(await ask('203.0.113.2'), 400, 'another browser must not share the first one\'s budget');
    assert.equal(await ask('203.0.113.1'), 429);
  });
});
