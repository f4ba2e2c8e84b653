// DOM helpers. Every value is inserted as text: strings become text nodes, never markup.

/**
 * Creates an element. `attrs`: attributes, except `on*` (event listeners), `class`,
 * `dataset` (object) and `props` (properties set directly). Children: nodes, strings
 * (as text), numbers, arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'props') {
      Object.assign(el, value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (text for anything that is not a node). */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A page heading block with an optional subtitle and actions. */
export function pageHeader(title, subtitle, ...actions) {
  return h('div', { class: 'page-header' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

/** An error box shown where the problem happened. */
export function errorBox(error, retry) {
  return h('div', { class: 'notice error', role: 'alert' },
    h('strong', {}, 'Something went wrong. '),
    h('span', {}, error && error.message ? error.message : String(error)),
    retry ? h('button', { class: 'btn small', type: 'button', onclick: retry }, 'Try again') : null);
}

/** The empty state of a page or section: what it is and what to do first. */
export function emptyState(title, text, ...actions) {
  return h('div', { class: 'empty' },
    h('div', { class: 'empty-icon', 'aria-hidden': 'true' }),
    h('h2', {}, title),
    text ? h('p', {}, text) : null,
    actions.length ? h('div', { class: 'empty-actions' }, actions) : null);
}

export function loading(text = 'Loading…') {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/** A progress bar (`done` of `total`; unknown total shows an indeterminate bar). */
export function progressBar(done, total, label) {
  const pct = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0;
  const bar = h('div', {
    class: ['progress', total > 0 ? null : 'indeterminate'],
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': '100',
    'aria-valuenow': total > 0 ? String(pct) : null,
    'aria-label': label || 'progress',
  }, h('div', { class: 'progress-fill' }));
  // Through the CSSOM: the Content-Security-Policy forbids style attributes.
  bar.firstChild.style.width = `${pct}%`;
  return bar;
}

export function setProgress(bar, done, total) {
  const pct = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0;
  bar.classList.toggle('indeterminate', !(total > 0));
  bar.setAttribute('aria-valuenow', String(pct));
  bar.firstChild.style.width = `${pct}%`;
}

export function badge(text, kind) {
  return h('span', { class: ['badge', kind ? `badge-${kind}` : null] }, text);
}

/** Human size: 1.2 MB. */
export function formatSize(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = Number(bytes);
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** DICOM date YYYYMMDD as YYYY-MM-DD. */
export function formatDicomDate(da) {
  if (!da) return '—';
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(da);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : da;
}

/** RFC 3339 as a local date and time. */
export function formatTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** "3 minutes ago". */
export function timeAgo(iso) {
  if (!iso) return '—';
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 60) return 'just now';
  const units = [[60, 'minute'], [3600, 'hour'], [86400, 'day'], [2592000, 'month'], [31536000, 'year']];
  let unit = units[0];
  for (const u of units) if (seconds >= u[0]) unit = u;
  const n = Math.floor(seconds / unit[0]);
  return `${n} ${unit[1]}${n === 1 ? '' : 's'} ago`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function plural(n, word, many) {
  return `${n.toLocaleString()} ${n === 1 ? word : (many || `${word}s`)}`;
}

/** A modal confirmation (an in-page <dialog>); resolves true when confirmed. */
export function confirmDialog(title, text, confirmLabel = 'Delete') {
  return new Promise((resolve) => {
    const cancel = h('button', { class: 'btn', type: 'button', value: 'cancel' }, 'Cancel');
    const ok = h('button', { class: 'btn danger', type: 'button', value: 'ok' }, confirmLabel);
    const dialog = h('dialog', { class: 'modal', 'aria-labelledby': 'modal-title' },
      h('h2', { id: 'modal-title' }, title),
      h('p', {}, text),
      h('div', { class: 'modal-actions' }, cancel, ok));
    const close = (result) => { dialog.close(); dialog.remove(); resolve(result); };
    cancel.addEventListener('click', () => close(false));
    ok.addEventListener('click', () => close(true));
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Copies text to the clipboard (with a fallback for plain-HTTP origins). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { class: 'visually-hidden', readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    area.remove();
    return ok;
  }
}

/**
 * A secret shown once (a drawn password, a new token): the value as text, a Copy button and
 * what to do with it. `id`: the id of the element holding the value.
 */
export function secretBox(title, secret, note, id) {
  const status = h('span', { class: 'copy-status muted small', 'aria-live': 'polite' });
  const copy = h('button', { class: 'btn small', type: 'button', 'data-copy': id }, 'Copy');
  copy.addEventListener('click', async () => {
    status.textContent = (await copyText(secret)) ? 'Copied.' : 'Copying failed: select the text and copy it.';
  });
  return h('div', { class: 'notice ok secret-box', role: 'status' },
    h('div', { class: 'secret-text' },
      h('strong', {}, title),
      h('div', { class: 'secret-row' }, h('code', { id, class: 'secret' }, secret), copy, status),
      note ? h('p', { class: 'small' }, note) : null));
}
