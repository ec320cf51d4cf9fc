// Start the real Flask service on tiny random-weight models, and the proxy in node's http server.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const VENV_PYTHON = path.join(ROOT, '.venv', 'bin', 'python');
export const PYTHON = existsSync(VENV_PYTHON) ? VENV_PYTHON : 'python3';

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export function buildTinyModels() {
  const dir = mkdtempSync(path.join(tmpdir(), 'tts-models-'));
  execFileSync(PYTHON, [path.join(ROOT, 'scripts', 'make_tiny_models.py'), dir], { stdio: 'ignore' });
  const env = {};
  for (const line of readFileSync(path.join(dir, 'env'), 'utf8').split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

export async function startService(extraEnv = {}) {
  const port = await freePort();
  const env = {
    // The proxy's own settings (TTS_API_KEY, ...) live in this process's env too: never pass them on.
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TTS_'))),
    ...buildTinyModels(), TTS_ROUTES: 'en=dsm,es=pocket', TTS_POCKET_LANGUAGES: 'es',
    TTS_TORCH_COMPILE: 'off', TTS_LOG_FILE: '', HOST: '127.0.0.1', PORT: String(port), ...extraEnv,
  };
  const child = spawn(PYTHON, [path.join(ROOT, 'tts_server.py')], { cwd: ROOT, env, stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the TTS service exited with ${child.exitCode}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.status === 200) return { url, stop: () => stopChild(child) };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error('the TTS service never became ready');
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.on('exit', resolve);
    child.kill('SIGTERM');
  });
}

/** Start `server` on a free loopback port; `close` also drops idle keep-alive connections. */
async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** Serve a Vercel-style handler from node's http server, with req.query filled in as Vercel does. */
export async function serveHandler(handler) {
  const server = http.createServer((req, res) => {
    req.query = Object.fromEntries(new URL(req.url, 'http://localhost').searchParams);
    handler(req, res).catch((error) => { res.statusCode = 500; res.end(String(error)); });
  });
  return listen(server);
}

/** A TCP server that accepts connections and never answers: a hung backend. */
export async function silentServer() {
  const sockets = new Set();
  const server = net.createServer((socket) => sockets.add(socket));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { sockets.forEach((s) => s.destroy()); server.close(r); }),
  };
}

/** Sample rate and data length of a WAV file (the fmt and data chunks). */
export function readWav(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a WAV file');
  let offset = 12;
  let sampleRate = null;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    if (id === 'fmt ') sampleRate = view.getUint32(offset + 12, true);
    if (id === 'data') return { sampleRate, dataBytes: Math.min(size, bytes.length - offset - 8) };
    offset += 8 + size;
  }
  throw new Error('WAV without a data chunk');
}

/**
 * Serve a handler the way Vercel calls it: `req.body` already parsed from the JSON body, by a
 * getter that throws on malformed JSON (as Vercel's own helper does), and `req.query` filled in.
 */
export async function serveParsedBody(handler) {
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString('utf8');
    Object.defineProperty(req, 'body', {
      get() {
        if (!raw) return {};
        try { return JSON.parse(raw); } catch { throw new Error('Invalid JSON'); }
      },
    });
    req.query = Object.fromEntries(new URL(req.url, 'http://localhost').searchParams);
    handler(req, res).catch((error) => { res.statusCode = 500; res.end(String(error)); });
  });
  return listen(server);
}
