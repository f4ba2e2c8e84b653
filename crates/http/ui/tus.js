// A small tus 1.0 client (creation + core): POST to create, PATCH in chunks, and after a network
// error HEAD for the offset the server holds and go on from there.

const TUS = '1.0.0';
const CHUNK = 5 * 1024 * 1024;

function base64(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

class TusError extends Error {
  constructor(message, { fatal = false, status = 0 } = {}) {
    super(message);
    this.fatal = fatal;
    this.status = status;
  }
}

async function serverMessage(response) {
  try {
    const json = await response.json();
    return json.error || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

/** PATCH one chunk with XHR (fetch reports no upload progress); resolves to the new offset. */
function patch(url, offset, blob, onBytes, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PATCH', url);
    xhr.setRequestHeader('Tus-Resumable', TUS);
    xhr.setRequestHeader('Upload-Offset', String(offset));
    xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
    xhr.upload.onprogress = (e) => onBytes(e.loaded);
    xhr.onload = () => {
      if (xhr.status === 204) {
        resolve(Number(xhr.getResponseHeader('Upload-Offset')));
      } else {
        let message = `${xhr.status} ${xhr.statusText}`;
        try { message = JSON.parse(xhr.responseText).error || message; } catch { /* not JSON */ }
        // 409: the offset moved (a chunk arrived after all); the caller asks with HEAD.
        const retryable = xhr.status === 409 || xhr.status >= 500;
        reject(new TusError(message, { fatal: !retryable, status: xhr.status }));
      }
    };
    xhr.onerror = () => reject(new TusError('network error'));
    xhr.ontimeout = () => reject(new TusError('timed out'));
    xhr.onabort = () => reject(new TusError('cancelled', { fatal: true }));
    if (signal) signal.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(blob);
  });
}

async function head(url) {
  const response = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': TUS }, cache: 'no-store' });
  if (!response.ok) throw new TusError(`the upload is gone (${response.status})`, { fatal: true, status: response.status });
  return Number(response.headers.get('Upload-Offset'));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Uploads `blob` as `name`; `onProgress(sent, total)` as bytes go out. Resolves to the upload
 * URL. Retries network errors up to 8 times in a row with backoff.
 */
export async function upload(blob, name, { onProgress = () => {}, signal, chunkSize = CHUNK } = {}) {
  const created = await fetch('/api/uploads', {
    method: 'POST',
    headers: { 'Tus-Resumable': TUS, 'Upload-Length': String(blob.size), 'Upload-Metadata': `filename ${base64(name)}` },
    signal,
  });
  if (created.status !== 201) throw new TusError(await serverMessage(created), { fatal: true, status: created.status });
  const url = new URL(created.headers.get('Location'), location.href).href;
  let offset = 0;
  let failures = 0;
  onProgress(0, blob.size);
  while (offset < blob.size) {
    if (signal && signal.aborted) throw new TusError('cancelled', { fatal: true });
    const end = Math.min(offset + chunkSize, blob.size);
    try {
      offset = await patch(url, offset, blob.slice(offset, end), (sent) => onProgress(offset + sent, blob.size), signal);
      failures = 0;
      onProgress(offset, blob.size);
    } catch (e) {
      if (e.fatal || failures >= 8) throw e;
      failures += 1;
      await sleep(Math.min(500 * 2 ** failures, 15000));
      offset = await head(url);
      onProgress(offset, blob.size);
    }
  }
  return url;
}
