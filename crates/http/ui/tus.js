// A small tus 1.0 client (creation + core + termination), resumable the way tus-js-client is:
// - POST creates the upload, PATCH sends it in chunks;
// - after a network error, a timeout or a 5xx the client waits (backoff: 1, 2, 4, 8, 15, 30 s …,
//   cut short when the browser comes back online; while the browser is offline it just waits),
//   asks the server with HEAD how many bytes it holds, and goes on from there;
// - the upload URL is kept in localStorage under a fingerprint of the file (name, size, last
//   modification), so choosing the same file again — after a reload, or after the client gave
//   up — continues where the server stopped instead of starting over. The record is dropped
//   when the upload completes or the server no longer knows it.

import { csrfHeaders } from './api.js';

const TUS = '1.0.0';
export const DEFAULT_CHUNK = 5 * 1024 * 1024;
/** Waits between consecutive failed attempts (ms); past the last one the upload fails. */
const RETRY_DELAYS = [1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000];
/** A PATCH whose body stops going out for this long is given up (and retried). */
const STALL_MS = 30000;
const STORE_PREFIX = 'radport.tus.';
/** Records older than this are dropped (the server expires incomplete uploads after a day). */
const RECORD_MAX_AGE_MS = 24 * 3600 * 1000;

function base64(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export class TusError extends Error {
  constructor(message, { fatal = false, status = 0, conflict = false } = {}) {
    super(message);
    this.fatal = fatal;
    this.status = status;
    this.conflict = conflict;
    // The session ended: as for every other API call, to the sign-in page and back (the upload
    // continues from the server's offset when the same file is chosen again).
    if (status === 401) document.dispatchEvent(new CustomEvent('unauthorized'));
  }
}

const cancelled = () => new TusError('cancelled', { fatal: true });

async function serverMessage(response) {
  try {
    const json = await response.json();
    return json.error || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// ---- the records of unfinished uploads -------------------------------------------------

function storage() {
  try { return window.localStorage; } catch { return null; }
}

function readRecord(key) {
  const s = storage();
  if (!s) return null;
  try {
    const rec = JSON.parse(s.getItem(key) || 'null');
    if (!rec || typeof rec.url !== 'string' || Date.now() - (rec.created || 0) > RECORD_MAX_AGE_MS) {
      s.removeItem(key);
      return null;
    }
    return rec;
  } catch {
    return null;
  }
}

function writeRecord(fingerprint, rec) {
  try { storage()?.setItem(STORE_PREFIX + fingerprint, JSON.stringify(rec)); } catch { /* full or disabled */ }
}

function dropRecord(fingerprint) {
  if (!fingerprint) return;
  try { storage()?.removeItem(STORE_PREFIX + fingerprint); } catch { /* disabled */ }
}

/** Uploads started in this browser and not finished: `{ fingerprint, name, label, size, url, created }`. */
export function unfinishedUploads() {
  const s = storage();
  if (!s) return [];
  const out = [];
  for (let i = 0; i < s.length; i++) {
    const key = s.key(i);
    if (!key || !key.startsWith(STORE_PREFIX)) continue;
    const rec = readRecord(key);
    if (rec) out.push({ ...rec, fingerprint: key.slice(STORE_PREFIX.length) });
  }
  return out.sort((a, b) => b.created - a.created);
}

/** Abandons an unfinished upload: the server drops its bytes, the browser its record. */
export async function forget(rec) {
  dropRecord(rec.fingerprint);
  try {
    await fetch(rec.url, { method: 'DELETE', headers: { 'Tus-Resumable': TUS, ...csrfHeaders() } });
  } catch { /* the server expires it anyway */ }
}

/** The fingerprint of a File, as tus-js-client makes it (name, type, size, last modified). */
export function fileFingerprint(file) {
  return `file:${file.name}:${file.type}:${file.size}:${file.lastModified}`;
}

/** A short stable hash of a string (cyrb53), for fingerprints of several files. */
export function hash(text) {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

// ---- requests ------------------------------------------------------------------------

/** PATCH one chunk with XHR (fetch reports no upload progress); resolves to the new offset. */
function patch(url, offset, blob, onBytes, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) { reject(cancelled()); return; }
    const xhr = new XMLHttpRequest();
    let stalled = false;
    let stallTimer = null;
    const armStall = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => { stalled = true; xhr.abort(); }, STALL_MS);
    };
    const onAbort = () => xhr.abort();
    const done = () => { clearTimeout(stallTimer); if (signal) signal.removeEventListener('abort', onAbort); };
    xhr.open('PATCH', url);
    xhr.setRequestHeader('Tus-Resumable', TUS);
    for (const [k, v] of Object.entries(csrfHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('Upload-Offset', String(offset));
    xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
    xhr.upload.onprogress = (e) => { armStall(); onBytes(e.loaded); };
    // Once the body is sent, the answer may take a while (the last chunk completes the file).
    xhr.upload.onload = () => clearTimeout(stallTimer);
    xhr.onload = () => {
      done();
      if (xhr.status === 204) {
        resolve(Number(xhr.getResponseHeader('Upload-Offset')));
        return;
      }
      let message = `${xhr.status} ${xhr.statusText}`;
      try { message = JSON.parse(xhr.responseText).error || message; } catch { /* not JSON */ }
      // 409: the server holds another offset (a chunk arrived after all): ask with HEAD.
      // 5xx: the server had a problem; worth another try. Any other status will not change.
      const retryable = xhr.status === 409 || xhr.status >= 500;
      reject(new TusError(message, { fatal: !retryable, status: xhr.status, conflict: xhr.status === 409 }));
    };
    xhr.onerror = () => { done(); reject(new TusError('the connection was lost')); };
    xhr.ontimeout = () => { done(); reject(new TusError('the server did not answer in time')); };
    xhr.onabort = () => {
      done();
      reject(stalled ? new TusError(`nothing was sent for ${STALL_MS / 1000} s`) : cancelled());
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    armStall();
    xhr.send(blob);
  });
}

async function request(url, init) {
  try {
    return await fetch(url, { ...init, cache: 'no-store' });
  } catch (e) {
    if (init.signal && init.signal.aborted) throw cancelled();
    throw new TusError('the connection was lost');
  }
}

/** The server's offset and length of an upload; fatal when the server no longer has it. */
async function head(url, signal) {
  const response = await request(url, { method: 'HEAD', headers: { 'Tus-Resumable': TUS }, signal });
  if (response.status === 404 || response.status === 410) {
    throw new TusError(response.status === 410 ? 'the unfinished upload expired on the server' : 'the server no longer has this upload', { fatal: true, status: response.status });
  }
  if (!response.ok) throw new TusError(`${response.status} ${response.statusText}`, { fatal: response.status < 500, status: response.status });
  return {
    offset: Number(response.headers.get('Upload-Offset')),
    length: Number(response.headers.get('Upload-Length')),
    path: serverPath(response),
  };
}

/**
 * The path the server gives the file (`Radport-File-Path`, percent-encoded): the name asked
 * for, or a numbered one (`scan-2.zip`) when another upload has that name. `null` if absent.
 */
function serverPath(response) {
  const header = response.headers.get('Radport-File-Path');
  if (!header) return null;
  try {
    return decodeURIComponent(header);
  } catch {
    return null;
  }
}

/**
 * Makes sure an upload whose bytes all arrived is complete. The server completes the file when
 * the last chunk arrives; if the connection dropped right then, an empty PATCH at the end asks
 * it again (409: it was complete already).
 */
async function complete(url, size, signal) {
  const response = await request(url, {
    method: 'PATCH',
    headers: { 'Tus-Resumable': TUS, 'Upload-Offset': String(size), 'Content-Type': 'application/offset+octet-stream', ...csrfHeaders() },
    body: new Blob([]),
    signal,
  });
  if (response.status === 204 || response.status === 409) return;
  throw new TusError(await serverMessage(response), { fatal: response.status < 500, status: response.status });
}

async function create(size, name, signal) {
  const response = await request('/api/uploads', {
    method: 'POST',
    headers: { 'Tus-Resumable': TUS, 'Upload-Length': String(size), 'Upload-Metadata': `filename ${base64(name)}`, ...csrfHeaders() },
    signal,
  });
  if (response.status !== 201) {
    throw new TusError(await serverMessage(response), { fatal: response.status < 500, status: response.status });
  }
  return { url: new URL(response.headers.get('Location'), location.href).href, path: serverPath(response) };
}

// ---- waiting -------------------------------------------------------------------------

/** Waits `ms`, or until the browser reports it is online again, or until cancelled. */
function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const finish = (fn) => {
      clearTimeout(timer);
      window.removeEventListener('online', onOnline);
      if (signal) signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onOnline = () => finish(resolve);
    const onAbort = () => finish(() => reject(cancelled()));
    const timer = setTimeout(() => finish(resolve), ms);
    window.addEventListener('online', onOnline);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

const isOffline = () => typeof navigator !== 'undefined' && navigator.onLine === false;

// ---- the upload ----------------------------------------------------------------------

/**
 * Uploads `blob` as `name`. Options:
 * - `onProgress(sent, total)` as bytes go out (it may go back after an interruption: to what
 *   the server holds);
 * - `onStatus({ state, ... })`: `resuming` (first `offset: null` while asking the server,
 *   then `offset` and the `name` of the earlier upload), `uploading`, `retrying` (`error`,
 *   `attempt`, `of`, `delay` ms), `offline` (`error`);
 * - `fingerprint`: a stable identity of the content; with it the upload can be resumed by a
 *   later call (after a reload too). `label`: what the user calls it (kept with the record);
 * - `chunkSize`, `signal` (AbortSignal: cancels; the upload stays resumable).
 * Resolves to `{ url, name, resumedFrom, interruptions }`: `name` is the name on the server
 * (that of the earlier upload when one was resumed).
 */
export async function upload(blob, name, {
  onProgress = () => {}, onStatus = () => {}, signal, chunkSize = DEFAULT_CHUNK, fingerprint = null, label = name,
} = {}) {
  const size = blob.size;
  let failures = 0;
  let interruptions = 0;
  let interrupted = false;

  /** After a failed attempt: throws when it is final, else waits until the next one. */
  async function backoff(error) {
    if (error.fatal || (signal && signal.aborted)) throw error.fatal ? error : cancelled();
    if (!interrupted) { interrupted = true; interruptions += 1; }
    if (error.conflict && failures < 2) { failures += 1; return; } // HEAD at once
    if (isOffline()) {
      // Waiting for the network is not a failed attempt: wait for the browser's "online" (or
      // look again in a while, in case the event never comes).
      onStatus({ state: 'offline', error: error.message });
      await pause(30000, signal);
      return;
    }
    if (failures >= RETRY_DELAYS.length) throw error;
    const delay = RETRY_DELAYS[failures];
    failures += 1;
    onStatus({ state: 'retrying', error: error.message, attempt: failures, of: RETRY_DELAYS.length, delay });
    await pause(delay, signal);
  }

  /** Runs `task` until it succeeds, with backoff between attempts. */
  async function attempt(task) {
    for (;;) {
      try {
        return await task();
      } catch (e) {
        await backoff(e);
      }
    }
  }

  // An earlier upload of the same content: go on from what the server holds.
  let url = null;
  let offset = 0;
  let resumedFrom = null;
  const rec = fingerprint ? readRecord(STORE_PREFIX + fingerprint) : null;
  if (rec && rec.size === size) {
    onStatus({ state: 'resuming', offset: null });
    try {
      const state = await attempt(() => head(rec.url, signal));
      if (state.length === size) {
        url = rec.url;
        name = state.path || rec.name || name;
        offset = state.offset;
        resumedFrom = offset;
        onStatus({ state: 'resuming', offset, name });
      }
    } catch (e) {
      if (!e.fatal || e.message === 'cancelled') throw e;
      // Gone or expired: start over.
    }
    if (!url) dropRecord(fingerprint);
  } else if (rec) {
    dropRecord(fingerprint);
  }
  if (!url) {
    const created = await attempt(() => create(size, name, signal));
    url = created.url;
    // The server's name for the file (numbered if the name was taken): what runs must use.
    name = created.path || name;
    if (fingerprint) writeRecord(fingerprint, { url, name, label, size, created: Date.now() });
  }

  onProgress(offset, size);
  onStatus({ state: 'uploading' });
  // Whether the last bytes went out without an answer: then the end is confirmed below.
  let unconfirmed = resumedFrom !== null && offset >= size;
  let needHead = false;
  while (offset < size || needHead) {
    if (signal && signal.aborted) throw cancelled();
    try {
      if (needHead) {
        offset = (await head(url, signal)).offset;
        needHead = false;
        onProgress(offset, size);
        if (offset >= size) { unconfirmed = true; break; }
      }
      const start = offset;
      const end = Math.min(start + chunkSize, size);
      offset = await patch(url, start, blob.slice(start, end), (sent) => onProgress(start + sent, size), signal);
      if (failures || interrupted) { failures = 0; interrupted = false; onStatus({ state: 'uploading' }); }
      onProgress(offset, size);
    } catch (e) {
      needHead = true;
      try {
        await backoff(e);
      } catch (final) {
        // A gone upload cannot be resumed: forget it. Anything else stays resumable.
        if (final.status === 404 || final.status === 410) dropRecord(fingerprint);
        throw final;
      }
    }
  }
  if (unconfirmed) await attempt(() => complete(url, size, signal));
  if (fingerprint) dropRecord(fingerprint);
  onProgress(size, size);
  return { url, name, resumedFrom, interruptions };
}
