// How the proxy streams: against a backend whose timing the test controls, since only that shows
// whether audio is piped as it comes, and whether a browser that leaves stops the generation.
import assert from 'node:assert/strict';
import http from 'node:http';
import { afterEach, describe, test } from 'node:test';

import handler from '../../api/tts-proxy.js';
import { serveHandler } from './helpers/service.mjs';

const CHUNK_MS = 150;
const CHUNK = Buffer.alloc(4800, 1); // 100 ms of 16-bit mono audio at 24 kHz

/** A backend for /tts/stream sending `chunks` pieces of audio CHUNK_MS apart (forever when null). */
async function slowBackend(chunks) {
  const seen = { requests: [], sent: 0, closedEarly: false };
  const server = http.createServer((req, res) => {
    const body = [];
    req.on('data', (part) => body.push(part));
    req.on('end', () => {
      seen.requests.push({ path: req.url, body: Buffer.concat(body).toString('utf8'),
                           authorization: req.headers.authorization });
      res.writeHead(200, { 'Content-Type': 'audio/wav', 'X-Sample-Rate': '24000', 'X-TTS-Provider': 'Slow backend' });
      const timer = setInterval(() => {
        if (chunks !== null && seen.sent >= chunks) {
          clearInterval(timer);
          res.end();
          return;
        }
        seen.sent += 1;
        res.write(CHUNK);
      }, CHUNK_MS);
      res.on('close', () => {
        clearInterval(timer);
        if (!res.writableFinished) seen.closedEarly = true;
      });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

function waitFor(check, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() > deadline) reject(new Error('timed out waiting'));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

describe('api/tts-proxy.js streaming', () => {
  const cleanups = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    delete process.env.TTS_BACKEND_URL;
    delete process.env.TTS_PROXY_TIMEOUT_MS;
    delete process.env.TTS_API_KEY;
  });

  async function setUp(chunks, env = {}) {
    const backend = await slowBackend(chunks);
    const proxy = await serveHandler(handler);
    cleanups.push(() => proxy.close(), () => backend.close());
    Object.assign(process.env, { TTS_BACKEND_URL: backend.url, ...env });
    return { backend, proxy };
  }

  test('pipes each piece of audio as it arrives, without buffering', async () => {
    const { backend, proxy } = await setUp(6, { TTS_API_KEY: 'k' });
    const started = Date.now();
    const response = await fetch(`${proxy.url}/api/tts-proxy?stream=1`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'Hola', language: 'es' }),
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-tts-provider'), 'Slow backend');
    const arrivals = [];
    let bytes = 0;
    for await (const piece of response.body) {
      bytes += piece.length;
      arrivals.push({ at: Date.now() - started, sentSoFar: backend.seen.sent });
    }
    assert.equal(bytes, 6 * CHUNK.length);
    // The first audio reached the browser while the backend was still generating the rest.
    assert.ok(arrivals[0].sentSoFar < 6, `first audio only after ${arrivals[0].sentSoFar} of 6 pieces`);
    assert.ok(arrivals.length >= 3, `${arrivals.length} reads: the stream was buffered`);
    const request = backend.seen.requests[0];
    assert.equal(request.path, '/tts/stream');
    assert.deepEqual(JSON.parse(request.body), { text: 'Hola', language: 'es' });
    assert.equal(request.authorization, 'Bearer k');
  });

  test('the timeout bounds the start of a stream, not its length', async () => {
    const { proxy } = await setUp(6, { TTS_PROXY_TIMEOUT_MS: String(CHUNK_MS * 2) });
    const response = await fetch(`${proxy.url}?stream=1`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text": "Hola"}',
    });
    assert.equal(response.status, 200);
    assert.equal((await response.arrayBuffer()).byteLength, 6 * CHUNK.length);
  });

  test('a browser that leaves stops the request to the backend', async () => {
    const { backend, proxy } = await setUp(null);
    const controller = new AbortController();
    const response = await fetch(`${proxy.url}?stream=1`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text": "Hola"}',
      signal: controller.signal,
    });
    const reader = response.body.getReader();
    assert.ok((await reader.read()).value.length > 0);
    controller.abort();
    await waitFor(() => backend.seen.closedEarly);
    const sent = backend.seen.sent;
    await new Promise((resolve) => setTimeout(resolve, CHUNK_MS * 3));
    assert.ok(backend.seen.sent <= sent + 1, 'the backend kept generating for nobody');
  });

  test('a body over the size limit is a 413 before anything reaches the backend', async () => {
    const { backend, proxy } = await setUp(1);
    const response = await fetch(proxy.url, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'a'.repeat(2 * 1024 * 1024) }),
    });
    assert.equal(response.status, 413);
    assert.ok((await response.json()).error);
    assert.equal(backend.seen.requests.length, 0);
  });
});
