/*
 * Vercel function: the browser calls /api/tts-proxy, this forwards to the TTS service on the VM.
 *
 * Environment (Vercel project settings, never in the code or the browser):
 *   TTS_BACKEND_URL      e.g. http://203.0.113.7:5001   (required)
 *   TTS_API_KEY          sent as "Authorization: Bearer ..." when set
 *   TTS_ALLOWED_ORIGINS  comma-separated origins for CORS, default "*"
 *   TTS_PROXY_TIMEOUT_MS default 25000; keep it under the function's own time limit
 *
 * POST /api/tts-proxy            -> POST {backend}/tts          (JSON with base64 audio)
 * POST /api/tts-proxy?stream=1   -> POST {backend}/tts/stream   (audio streamed through)
 * The backend's status and body pass through; 502/504 {"error", "fallback": true} when it is
 * down or slow, so the browser client speaks with its fallback voice.
 *
 * The browser's address goes to the backend in X-Forwarded-For, so that its rate limits apply
 * per browser and not to the proxy as one client: set TTS_TRUST_PROXY=1 on the service. A
 * browser that leaves stops the backend's work too, streaming or not.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

// Bodies are a few kilobytes of text; the service itself refuses more than 256 KiB.
const MAX_BODY_BYTES = 1024 * 1024;

const PASSED_HEADERS = ['content-type', 'retry-after', 'x-request-id', 'x-sample-rate', 'x-tts-provider',
  'x-tts-model', 'x-tts-language', 'x-cache'];

function setCors(req, res) {
  const allowed = (process.env.TTS_ALLOWED_ORIGINS || '*').split(',').map((o) => o.trim()).filter(Boolean);
  const origin = req.headers.origin;
  if (allowed.includes('*')) res.setHeader('Access-Control-Allow-Origin', '*');
  else if (origin && allowed.includes(origin)) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
  }
  res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
  res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Request-Id');
  res.setHeader('Access-Control-Expose-Headers', PASSED_HEADERS.join(', '));
  res.setHeader('Access-Control-Max-Age', '600');
}

function sendJson(res, status, body, headers = {}) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.end(JSON.stringify(body));
}

async function readBody(req) {
  if (req.body !== undefined && req.body !== null) {
    if (typeof req.body === 'object' && !Buffer.isBuffer(req.body)) return req.body;
    return JSON.parse(Buffer.isBuffer(req.body) ? req.body.toString('utf8') : String(req.body));
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error(`larger than ${MAX_BODY_BYTES} bytes`), { status: 413 });
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * X-Forwarded-For for the backend: the chain that reached this function, ending with the browser.
 * Vercel sets x-forwarded-for and x-real-ip to the browser's address itself (a value the browser
 * sent is replaced), so the last entry is the one a backend trusting one proxy will use.
 */
export function forwardedFor(req) {
  const chain = String(req.headers['x-forwarded-for'] || '').split(',').map((part) => part.trim()).filter(Boolean);
  const client = String(req.headers['x-real-ip'] || '').trim() || chain[chain.length - 1] || req.socket?.remoteAddress;
  if (client && chain[chain.length - 1] !== client) chain.push(client);
  return chain.join(', ');
}

function wantsStream(req, body) {
  const query = req.query || Object.fromEntries(new URL(req.url || '/', 'http://proxy').searchParams);
  return query.stream === '1' || query.stream === 'true' || body.stream === true;
}

export default async function handler(req, res) {
  setCors(req, res);
  if (req.method === 'OPTIONS') {
    res.statusCode = 204;
    res.end();
    return;
  }
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: `Method ${req.method} not allowed; use POST.` }, { Allow: 'POST, OPTIONS' });
    return;
  }
  const backend = (process.env.TTS_BACKEND_URL || '').replace(/\/+$/, '');
  if (!backend) {
    sendJson(res, 500, { error: 'TTS_BACKEND_URL is not set on the proxy.', fallback: true });
    return;
  }
  let body;
  try {
    body = await readBody(req);
  } catch (error) {
    if (error.status === 413) sendJson(res, 413, { error: `The request body is ${error.message}.` });
    else sendJson(res, 400, { error: `The request body is not valid JSON: ${error.message}` });
    return;
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    sendJson(res, 400, { error: 'The request body must be a JSON object such as {"text": "Hola"}.' });
    return;
  }
  const stream = wantsStream(req, body);
  const url = `${backend}${stream ? '/tts/stream' : '/tts'}`;
  const headers = { 'Content-Type': 'application/json' };
  if (process.env.TTS_API_KEY) headers.Authorization = `Bearer ${process.env.TTS_API_KEY}`;
  if (req.headers['x-request-id']) headers['X-Request-Id'] = String(req.headers['x-request-id']).slice(0, 64);
  const chain = forwardedFor(req);
  if (chain) headers['X-Forwarded-For'] = chain;
  const timeoutMs = Number(process.env.TTS_PROXY_TIMEOUT_MS || 25000);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const { stream: _ignored, ...forwarded } = body;
  // A browser that leaves (stop(), a new speak(), a closed tab) must stop the generation too.
  res.on('close', () => { if (!res.writableFinished) controller.abort(); });
  let upstream;
  try {
    upstream = await fetch(url, { method: 'POST', headers, body: JSON.stringify(forwarded), signal: controller.signal });
  } catch (error) {
    clearTimeout(timer);
    if (controller.signal.aborted) {
      sendJson(res, 504, { error: `The TTS service did not answer within ${timeoutMs} ms.`, fallback: true });
    } else {
      sendJson(res, 502, { error: `The TTS service is unreachable: ${error.cause?.code || error.message}.`, fallback: true });
    }
    return;
  }
  res.statusCode = upstream.status;
  for (const name of PASSED_HEADERS) {
    const value = upstream.headers.get(name);
    if (value) res.setHeader(name, value);
  }
  try {
    if (stream && upstream.ok && upstream.body) {
      clearTimeout(timer); // the stream may outlast the timeout; only its start is bounded
      await pipeline(Readable.fromWeb(upstream.body), res);
    } else {
      const data = Buffer.from(await upstream.arrayBuffer());
      clearTimeout(timer);
      res.end(data);
    }
  } catch (error) {
    clearTimeout(timer);
    if (!res.headersSent) {
      sendJson(res, controller.signal.aborted ? 504 : 502, { error: `The TTS service failed mid-answer: ${error.message}`, fallback: true });
    } else {
      res.destroy(error);
    }
  }
}
