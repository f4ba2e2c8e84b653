// Data Upload wizard: 1 destination, 2 send (dcmsend command or browser upload over tus),
// 3 import workflow (any workflow of GET /api/workflows) and its progress.
import { api } from '../api.js';
import { h, append, replace, pageHeader, errorBox, loading, progressBar, setProgress, formatSize, copyText, plural, timeAgo } from '../dom.js';
import { link, pushUrl, replaceUrl } from '../router.js';
import { upload as tusUpload, fileFingerprint, hash, unfinishedUploads, forget } from '../tus.js';
import { zipFiles } from '../zip.js';
import { followRun } from './runs.js';

/** The dataset name the receiver makes of an AE title (same rule as the server's). */
export function datasetName(raw) {
  const name = raw.trim().replace(/^kp-/i, '').replace(/[^A-Za-z0-9._-]/g, '_');
  return name === '' ? 'dicomupload' : name;
}

/** Longest project or dataset name an AE title can carry after `kp-` (the server says; 16 − 3). */
export const AE_NAME_LIMIT = 13;

/** What a sender makes of `kp-<name>`: DICOM tools cut an AE title to 16 characters, silently. */
export function cutByAeTitle(name, limit = AE_NAME_LIMIT) {
  return name.slice(0, limit);
}

/** The dcmsend command of the documentation, for this deployment. */
export function dcmsendCommand(host, port, dataset, project) {
  return `dcmsend -v ${host} ${port} --aetitle kp-${dataset} --call kp-${project} --scan-directories --scan-pattern '*.dcm' --recurse DIR`;
}

/** The same over DICOM TLS (dcmsend has no TLS; storescu has). */
export function storescuTlsCommand(host, port, dataset, project) {
  return `storescu -v +tls CLIENT.key CLIENT.crt +cf CA.crt -aet kp-${dataset} -aec kp-${project} +sd +sp '*.dcm' +r ${host} ${port} DIR`;
}

const isZip = (file) => /\.zip$/i.test(file.name);

/** Files a folder holds that are not data: system files and the resource forks of macOS zips. */
const ignored = (path) => path.split('/').some((part) => part.startsWith('.') || part === '__MACOSX')
  || /^(thumbs\.db|desktop\.ini)$/i.test(path.split('/').pop());

/** The name of the zip loose files are packed into: their folder's (or the dataset's) and the time. */
function packedName(entries, dataset, taken) {
  const tops = new Set(entries.map((e) => (e.name.includes('/') ? e.name.split('/')[0] : '')));
  const top = tops.size === 1 ? [...tops][0].replace(/[^A-Za-z0-9._-]/g, '_') : '';
  const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 15);
  const base = `${top || dataset}-${stamp}`;
  let name = `${base}.zip`;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}.zip`;
  return name;
}

/** Files of a dropped folder (webkitGetAsEntry), with their relative paths. */
async function entriesOf(dataTransfer) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ name: prefix + entry.name, file });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  const roots = [...dataTransfer.items].map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (roots.every(Boolean)) {
    for (const root of roots) await walk(root, '');
  } else {
    for (const file of dataTransfer.files) out.push({ name: file.name, file });
  }
  return out;
}

function stepper(current) {
  const steps = ['Destination', 'Send data', 'Import'];
  return h('ol', { class: 'stepper', 'aria-label': 'Steps' }, steps.map((label, i) =>
    h('li', { class: [i + 1 === current ? 'current' : null, i + 1 < current ? 'done' : null], 'aria-current': i + 1 === current ? 'step' : null },
      h('span', { class: 'step-number' }, String(i + 1)), h('span', {}, label))));
}

export async function render(main, route) {
  const state = {
    step: 1,
    project: route.params.get('project') || 'admin',
    dataset: route.params.get('dataset') || '',
    method: route.params.get('method') === 'dicom' ? 'dicom' : 'browser',
    uploads: [], // { label, size, sent, path, status, fingerprint, blob | loose, row, bar, text … }
    busy: false,
    // Bytes per PATCH; the URL can make it small (`chunk_size=65536`) to watch chunks go.
    chunkSize: Math.min(Math.max(Number(route.params.get('chunk_size')) || 5 * 1024 * 1024, 1024), 64 * 1024 * 1024),
  };
  const chunkParam = route.params.get('chunk_size') ? state.chunkSize : '';
  if (route.params.get('file')) state.uploads.push({ label: route.params.get('file'), path: route.params.get('file'), size: 0, status: 'done' });
  const cleanups = [];
  const head = h('div', {});
  const body = h('div', { class: 'wizard-body' });
  main.append(pageHeader('Data Upload', 'Bring DICOM images into a project: send them from a DICOM node, or upload files from this computer and import them.'), head, body);

  let health = null;
  const healthPromise = api.health().then((x) => { health = x; }).catch(() => {});
  const aeNameLimit = () => (health && health.deployment && health.deployment.ae_title_name_limit) || AE_NAME_LIMIT;
  const url = () => link('upload', [], {
    project: state.project, dataset: state.dataset, method: state.method === 'dicom' ? 'dicom' : '',
    step: state.step > 1 ? state.step : '', chunk_size: chunkParam, file: route.params.get('file') || '',
  });
  const syncUrl = () => pushUrl(url());

  function show(step) {
    state.step = step;
    // The step is in the URL, so that a reload comes back to it (the history entry is replaced:
    // going back would lose the uploads this page holds).
    if (state.dataset) replaceUrl(url());
    replace(head, stepper(step));
    replace(body, [step1, step2, step3][step - 1]());
    const first = body.querySelector('h2');
    if (first) { first.setAttribute('tabindex', '-1'); first.focus({ preventScroll: true }); }
  }

  // Step 1: project and dataset.
  function step1() {
    const project = h('select', { id: 'up-project' }, h('option', { value: state.project }, state.project));
    const dataset = h('input', { id: 'up-dataset', type: 'text', value: state.dataset, placeholder: 'e.g. brain-mri-2024', autocomplete: 'off', 'aria-describedby': 'up-dataset-hint' });
    const hint = h('p', { class: 'hint', id: 'up-dataset-hint' });
    const error = h('p', { class: 'field-error', role: 'alert' });
    const updateHint = () => {
      const name = datasetName(dataset.value);
      const limit = aeNameLimit();
      const parts = [`Series will be in dataset “${name}”.`];
      const tooLong = name.length > limit;
      if (tooLong) {
        parts.push(` Too long for DICOM senders: an AE title holds 16 characters, so dcmsend would send kp-${cutByAeTitle(name, limit)} and the images would land in “${cutByAeTitle(name, limit)}”. Keep it to ${limit} characters to send with dcmsend; uploads from this computer take any name.`);
      }
      hint.textContent = parts.join('');
      hint.classList.toggle('warning', tooLong);
    };
    dataset.addEventListener('input', updateHint);
    updateHint();
    api.projects().then((projects) => {
      replace(project, projects.map((p) => h('option', { value: p.name, selected: p.name.toLowerCase() === state.project.toLowerCase() ? true : null }, p.name)));
    }).catch((e) => error.replaceChildren(errorBox(e)));
    const next = h('button', { class: 'btn primary', type: 'submit', id: 'up-next' }, 'Next: send data →');
    const form = h('form', { class: 'panel wizard-step' },
      h('h2', {}, 'Where should the images go?'),
      h('div', { class: 'field' }, h('label', { for: 'up-project' }, 'Project'), project,
        h('p', { class: 'hint' }, 'Missing one? ', h('a', { href: link('projects') }, 'Create a project'), ' first.')),
      h('div', { class: 'field' }, h('label', { for: 'up-dataset' }, 'Dataset name'), dataset, hint),
      error,
      h('div', { class: 'wizard-actions' }, next));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      state.project = project.value;
      state.dataset = datasetName(dataset.value);
      syncUrl();
      show(2);
    });
    return form;
  }

  // Step 2: dcmsend command or browser upload.
  function step2() {
    const tabs = [['browser', 'Upload from this computer'], ['dicom', 'Send with DICOM (dcmsend)']];
    const content = h('div', {});
    const tabButtons = tabs.map(([key, label]) => h('button', {
      type: 'button', class: ['tab', state.method === key ? 'active' : null], role: 'tab', id: `tab-${key}`,
      'aria-selected': state.method === key ? 'true' : 'false',
      onclick: () => { state.method = key; syncUrl(); show(2); },
    }, label));
    // One row of actions: back, and the panel's own next step.
    const actions = h('div', { class: 'wizard-actions' }, h('button', { class: 'btn', type: 'button', onclick: () => show(1) }, '← Back'));
    replace(content, state.method === 'dicom' ? dicomPanel(actions) : browserPanel(actions));
    return h('div', { class: 'panel wizard-step' },
      h('h2', {}, `Send data to ${state.project} / ${state.dataset}`),
      h('div', { class: 'tabs', role: 'tablist' }, tabButtons),
      h('div', { role: 'tabpanel', 'aria-labelledby': `tab-${state.method}` }, content),
      actions);
  }

  function dicomPanel(actions) {
    const code = h('code', { id: 'dcmsend-command' }, 'Loading this server\'s address…');
    const copied = h('span', { class: 'hint', 'aria-live': 'polite' });
    const copy = h('button', { class: 'btn', type: 'button', id: 'copy-command' }, 'Copy');
    const tls = h('div', { id: 'dicom-tls', hidden: true });
    healthPromise.then(() => {
      const d = (health && health.deployment) || {};
      const host = d.dicom_host || location.hostname;
      code.textContent = dcmsendCommand(host, d.dicom_port || 11112, state.dataset, state.project);
      if (d.dicom_tls_port) {
        replace(tls,
          h('p', {}, `Over DICOM TLS (port ${d.dicom_tls_port}), with DCMTK's storescu; `,
            h('code', {}, '+tla'), ' instead of ', h('code', {}, '+tls CLIENT.key CLIENT.crt'),
            ' if this server takes peers without a client certificate:'),
          h('div', { class: 'command' }, h('pre', {}, h('code', { id: 'storescu-tls-command' },
            storescuTlsCommand(host, d.dicom_tls_port, state.dataset, state.project)))));
        tls.hidden = false;
      }
    });
    const limit = aeNameLimit();
    const tooLong = [['dataset', state.dataset], ['project', state.project]].filter(([, n]) => n.length > limit);
    if (tooLong.length) {
      // No command that would put the images somewhere else: say why, and offer the way that works.
      const instead = h('button', { class: 'btn primary', type: 'button', id: 'use-browser-upload' }, 'Upload from this computer instead');
      instead.addEventListener('click', () => { state.method = 'browser'; syncUrl(); show(2); });
      return h('div', { class: 'notice warn', id: 'dcmsend-too-long', role: 'alert' },
        h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, '!'),
        h('div', {},
          h('p', {}, tooLong.map(([kind, n]) => `The ${kind} name “${n}” has ${n.length} characters. `).join(''),
            `An AE title holds 16 characters, kp- and at most ${limit} more, and DICOM senders cut longer ones without a word: `,
            tooLong.map(([kind, n]) => `kp-${n} would arrive as kp-${cutByAeTitle(n, limit)}, ${kind === 'dataset' ? 'a dataset' : 'a project'} of another name.`).join(' ')),
          h('div', { class: 'wizard-actions' }, instead,
            h('a', { class: 'btn', href: link('upload', [], { project: state.project, dataset: state.dataset }), id: 'choose-shorter-name',
              onclick: (e) => { e.preventDefault(); show(1); } }, 'Choose a shorter name'))));
    }
    copy.addEventListener('click', async () => {
      copied.textContent = (await copyText(code.textContent)) ? 'Copied to the clipboard.' : 'Select the command and copy it by hand.';
    });
    actions.append(h('a', { class: 'btn primary', href: link('gallery', [], { project: state.project, dataset: state.dataset }) }, 'Open the gallery of this dataset'));
    return h('div', {},
      h('p', {}, 'Run this on the machine that holds the DICOM folder (DCMTK: ', h('code', {}, 'apt-get install dcmtk'), '). Replace ', h('code', {}, 'DIR'), ' with the folder.'),
      h('div', { class: 'command' }, h('pre', {}, code), copy),
      copied,
      tls,
      h('p', { class: 'hint' }, 'The called AE title names the project, the calling AE title the dataset. A few seconds after the last image arrives, previews and validation are ready.'));
  }

  // The runs started in step 3 (kept when going back a step and forth again).
  const runsBox = h('div', { id: 'wf-runs' });

  // Browser uploads. They belong to the page, not to the panel: switching tabs or steps leaves
  // them running; leaving the page cancels them (they stay resumable). `view` is the panel
  // currently showing them.
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  const queue = [];
  let view = null;
  let ticker = null;
  cleanups.push(() => clearInterval(ticker));

  function refreshTotal() {
    const interrupted = state.uploads.some((u) => u.status === 'retrying' || u.status === 'offline');
    // A countdown for "retrying in N s" while an upload waits.
    if (interrupted && !ticker) ticker = setInterval(() => state.uploads.forEach(paint), 1000);
    if (!interrupted && ticker) { clearInterval(ticker); ticker = null; }
    if (!view) return;
    const size = state.uploads.reduce((n, u) => n + (u.size || 0), 0);
    const sent = state.uploads.reduce((n, u) => n + (u.sent || 0), 0);
    view.total.hidden = state.uploads.length === 0;
    setProgress(view.totalBar, sent, size);
    const done = state.uploads.filter((u) => u.status === 'done').length;
    view.totalText.textContent = `${formatSize(sent)} of ${formatSize(size)} · ${done} of ${plural(state.uploads.length, 'file')} uploaded`;
    view.next.disabled = state.busy || done === 0;
    view.connection.hidden = !interrupted;
  }

  function statusText(u) {
    const pct = u.size > 0 ? Math.floor((100 * (u.sent || 0)) / u.size) : 0;
    switch (u.status) {
      case 'packing': return u.packed ? `packing ${u.packed[0]} / ${u.packed[1]} files` : 'packing…';
      case 'resuming': return u.resumeAt === null || u.resumeAt === undefined
        ? 'looking for the earlier upload…'
        : `resuming at ${formatSize(u.resumeAt)}`;
      case 'uploading': return u.resumedFrom ? `uploading · ${pct} % (continued from ${formatSize(u.resumedFrom)})` : `uploading · ${pct} %`;
      case 'retrying': {
        const seconds = Math.max(0, Math.ceil((u.retryAt - Date.now()) / 1000));
        return `Connection lost — ${seconds > 0 ? `retrying in ${seconds} s` : 'retrying…'} (attempt ${u.attempt} of ${u.attempts})`;
      }
      case 'offline': return 'Connection lost — waiting for the network…';
      case 'done': {
        const notes = [];
        if (u.resumedFrom) notes.push(`continued from ${formatSize(u.resumedFrom)}`);
        if (u.interruptions) notes.push(`resumed after ${plural(u.interruptions, 'interruption')}`);
        return ['uploaded', ...notes].join(' · ');
      }
      case 'failed': return `failed: ${u.error}`;
      default: return 'waiting';
    }
  }

  /** Brings an upload's row in line with its state. */
  function paint(u) {
    if (!u.row) return;
    const waiting = u.status === 'retrying' || u.status === 'offline';
    u.row.dataset.state = u.status;
    u.row.classList.toggle('interrupted', waiting);
    u.nameText.textContent = u.label;
    u.meta.textContent = [u.size ? formatSize(u.size) : null, u.loose ? `packed from ${plural(u.loose.length, 'file')}` : null].filter(Boolean).join(' · ');
    u.text.textContent = statusText(u);
    u.text.className = ['upload-status', u.status === 'done' ? 'ok' : null, u.status === 'failed' ? 'bad' : null, waiting ? 'warn' : null].filter(Boolean).join(' ');
    setProgress(u.bar, u.status === 'done' ? 1 : (u.sent || 0), u.status === 'done' ? 1 : (u.size || 0));
    u.bar.classList.toggle('paused', waiting);
    u.action.hidden = u.status !== 'failed';
  }

  function row(u) {
    u.bar = progressBar(u.sent || 0, u.size || 0, `Upload of ${u.label}`);
    u.nameText = h('span', { class: 'mono' });
    u.meta = h('span', { class: 'muted' });
    u.text = h('span', { class: 'upload-status' });
    u.action = h('button', {
      class: 'btn small', type: 'button', hidden: true,
      onclick: () => { if (view) replace(view.error); u.status = 'waiting'; u.error = null; paint(u); enqueue([u]); },
    }, 'Try again');
    u.row = h('li', { class: 'upload-item' },
      h('div', { class: 'upload-name' }, u.nameText, u.meta),
      u.bar,
      h('div', { class: 'upload-state', 'aria-live': 'polite' }, u.text, u.action));
    paint(u);
    return u.row;
  }

  /** The uploads this browser began earlier and did not finish (after a reload, say). */
  function drawUnfinished() {
    if (!view) return;
    const mine = new Set(state.uploads.map((u) => u.fingerprint));
    const records = unfinishedUploads().filter((r) => !mine.has(r.fingerprint));
    if (!records.length) { replace(view.unfinished); return; }
    replace(view.unfinished, h('div', { class: 'notice info unfinished', role: 'status' },
      h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, 'i'),
      h('div', {},
        h('strong', {}, records.length === 1 ? 'An upload from earlier did not finish. ' : `${records.length} uploads from earlier did not finish. `),
        'Choose or drop the same files again: they continue where they stopped.',
        h('ul', { class: 'unfinished-list' }, records.map((r) => h('li', { dataset: { name: r.name } },
          h('span', { class: 'mono' }, r.label || r.name), ` · ${formatSize(r.size)} · started ${timeAgo(new Date(r.created).toISOString())} · `,
          h('button', { class: 'btn link', type: 'button', onclick: async () => { await forget(r); drawUnfinished(); } }, 'Forget it')))))));
  }

  async function run(u) {
    try {
      if (u.loose && !u.blob) {
        u.status = 'packing';
        paint(u);
        u.blob = await zipFiles(u.loose, (done, n) => { u.packed = [done, n]; paint(u); });
        u.size = u.blob.size;
      }
      u.status = 'uploading';
      paint(u);
      const result = await tusUpload(u.blob, u.label, {
        chunkSize: state.chunkSize,
        signal: controller.signal,
        fingerprint: u.fingerprint,
        label: u.loose ? `${u.label} (${plural(u.loose.length, 'file')} packed)` : u.label,
        onProgress: (sent, size) => { u.sent = sent; u.size = size; paint(u); refreshTotal(); },
        onStatus: (st) => {
          if (st.state === 'resuming') {
            u.resumeAt = st.offset;
            if (st.name) u.label = st.name;
            if (st.offset !== null) u.resumedFrom = st.offset;
          }
          if (st.state === 'retrying') { u.retryAt = Date.now() + st.delay; u.attempt = st.attempt; u.attempts = st.of; }
          u.status = st.state;
          paint(u);
          refreshTotal();
        },
      });
      u.label = result.name;
      u.path = result.name;
      u.interruptions = result.interruptions;
      u.resumedFrom = result.resumedFrom;
      u.status = 'done';
      u.sent = u.size;
      if (u.loose) u.blob = null;
    } catch (e) {
      if (controller.signal.aborted) return;
      u.status = 'failed';
      u.error = e.message;
      if (view) view.error.append(errorBox(new Error(`${u.label}: ${e.message}. “Try again” continues where it stopped.`)));
    }
    paint(u);
    refreshTotal();
    drawUnfinished();
  }

  async function pump() {
    if (state.busy) return;
    state.busy = true;
    refreshTotal();
    while (queue.length && !controller.signal.aborted) await run(queue.shift());
    state.busy = false;
    refreshTotal();
    const ok = state.uploads.some((u) => u.status === 'done') && !state.uploads.some((u) => u.status === 'failed');
    if (!controller.signal.aborted && ok && view && view.next.isConnected) view.next.focus();
  }

  function enqueue(items) {
    queue.push(...items);
    pump();
  }

  /** Takes `{ name, file }` entries (name: path inside a chosen or dropped folder). */
  function accept(entries) {
    entries = entries.filter((e) => !ignored(e.name)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (!entries.length) return;
    if (view) replace(view.error);
    const zips = entries.filter((e) => isZip(e.file));
    const loose = entries.filter((e) => !isZip(e.file));
    const taken = new Set(state.uploads.map((u) => u.label));
    const items = zips.map((e) => ({ label: e.name.split('/').pop(), blob: e.file, size: e.file.size, sent: 0, status: 'waiting', fingerprint: fileFingerprint(e.file) }));
    if (loose.length) {
      // Packing the same files again makes the same zip (zip.js), so this identifies it.
      const identity = loose.map((e) => [e.name, e.file.size, e.file.lastModified].join('\u0000')).join('\u0001');
      items.push({
        label: packedName(loose, state.dataset, taken),
        loose,
        size: loose.reduce((n, e) => n + e.file.size, 0),
        sent: 0,
        status: 'waiting',
        fingerprint: `zip:${state.dataset}:${loose.length}:${hash(identity)}`,
      });
    }
    state.uploads.push(...items);
    if (view) append(view.list, items.map(row));
    refreshTotal();
    enqueue(items);
  }

  function browserPanel(actions) {
    const files = h('input', { id: 'up-files', type: 'file', multiple: true, class: 'visually-hidden' });
    const folder = h('input', { id: 'up-folder', type: 'file', class: 'visually-hidden', props: { webkitdirectory: true } });
    const totalBar = progressBar(0, 0, 'Total upload progress');
    const totalText = h('span', { class: 'muted', id: 'upload-total' });
    view = {
      list: h('ul', { class: 'upload-list', id: 'upload-list' }),
      totalBar,
      totalText,
      total: h('div', { class: 'upload-total', hidden: true }, h('strong', {}, 'Total'), totalBar, totalText),
      error: h('div', { 'aria-live': 'polite' }),
      connection: h('div', { class: 'notice warn', id: 'upload-connection', role: 'status', hidden: true },
        h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, '!'),
        h('span', {}, h('strong', {}, 'Connection to the server lost. '),
          'The uploads wait, then continue from where the server stopped once it answers again.')),
      unfinished: h('div', { id: 'upload-unfinished' }),
      next: h('button', { class: 'btn primary', type: 'button', id: 'up-next-import', disabled: true, onclick: () => show(3) }, 'Next: import →'),
    };
    const zone = h('div', { class: 'dropzone', id: 'dropzone' },
      h('div', { class: 'dropzone-icon', 'aria-hidden': 'true' }),
      h('p', { class: 'dropzone-title' }, 'Drop DICOM files, a folder or a .zip here'),
      h('p', { class: 'hint' }, 'Zips are uploaded as they are; loose files and folders (with their subfolders) are packed into one zip first. An interrupted upload continues where it stopped — after a reload too: choose the same files again.'),
      h('div', { class: 'dropzone-actions' },
        h('label', { class: 'btn', for: 'up-files', tabindex: '0', role: 'button' }, 'Choose files'),
        h('label', { class: 'btn', for: 'up-folder', tabindex: '0', role: 'button' }, 'Choose a folder')),
      files, folder);
    for (const label of zone.querySelectorAll('label[role=button]')) {
      label.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); document.getElementById(label.htmlFor).click(); } });
    }
    files.addEventListener('change', () => { accept([...files.files].map((f) => ({ name: f.name, file: f }))); files.value = ''; });
    folder.addEventListener('change', () => { accept([...folder.files].map((f) => ({ name: f.webkitRelativePath || f.name, file: f }))); folder.value = ''; });
    zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', async (e) => {
      e.preventDefault();
      zone.classList.remove('over');
      try { accept(await entriesOf(e.dataTransfer)); } catch (err) { if (view) view.error.append(errorBox(err)); }
    });
    replace(view.list, state.uploads.map(row));
    refreshTotal();
    drawUnfinished();
    actions.append(view.next);
    return h('div', {}, view.unfinished, zone, view.connection, view.list, view.total, view.error);
  }

  // Step 3: a workflow, its parameters, and the runs it started.
  function step3() {
    const select = h('select', { id: 'wf-select' });
    const description = h('p', { class: 'hint' });
    const fields = h('div', { class: 'param-grid' });
    const error = h('div', { id: 'wf-error', 'aria-live': 'polite' });
    const start = h('button', { class: 'btn primary', type: 'submit', id: 'wf-start' }, 'Start import');
    const files = state.uploads.filter((u) => u.status === 'done').map((u) => u.path);
    let workflows = [];

    const prefill = (param) => {
      if (param.name === 'project') return state.project;
      if (param.name === 'dataset') return state.dataset;
      if (param.name === 'file') return files[0] || '';
      return param.default;
    };

    const drawFields = () => {
      const wf = workflows.find((w) => w.name === select.value);
      if (!wf) return;
      description.textContent = wf.description;
      replace(fields, wf.parameters.map((param) => {
        const id = `wf-param-${param.name}`;
        const value = prefill(param);
        let input;
        if (param.type === 'boolean') {
          input = h('input', { id, type: 'checkbox', name: param.name, checked: value === true ? true : null });
        } else if (param.type === 'integer' || param.type === 'number') {
          input = h('input', { id, type: 'number', name: param.name, value: value ?? '' });
        } else {
          input = h('input', { id, type: 'text', name: param.name, value: value ?? '', required: param.required ? true : null });
        }
        input.dataset.type = param.type;
        const note = param.name === 'file' && files.length > 1 ? ` One run per uploaded file (${files.length}).` : '';
        return h('div', { class: ['field', param.type === 'boolean' ? 'checkbox' : null] },
          param.type === 'boolean'
            ? h('label', { for: id }, input, ` ${param.name}`)
            : [h('label', { for: id }, param.name, param.required ? h('span', { class: 'required', 'aria-label': 'required' }, ' *') : null), input],
          h('p', { class: 'hint' }, param.description, param.default !== null && param.default !== undefined && param.type !== 'boolean' ? ` Default: ${JSON.stringify(param.default)}.` : '', note));
      }));
    };

    api.workflows().then((items) => {
      workflows = items;
      if (!items.length) { replace(error, errorBox(new Error('this server has no workflows'))); return; }
      replace(select, items.map((w) => h('option', { value: w.name }, w.name)));
      if (items.some((w) => w.name === 'import-dicoms-from-data-upload')) select.value = 'import-dicoms-from-data-upload';
      drawFields();
    }).catch((e) => replace(error, errorBox(e)));
    select.addEventListener('change', drawFields);

    // Each run started here is followed below; a failed one can be re-run in place.
    const follow = (run) => {
      const box = h('div', {}, loading('Starting…'));
      runsBox.append(box);
      cleanups.push(followRun(run.id, box, { onRerun: async (failed) => follow(await api.startRun(failed.workflow, failed.params || {})) }));
    };

    const paramsOf = () => {
      const params = {};
      for (const input of fields.querySelectorAll('input')) {
        const type = input.dataset.type;
        if (type === 'boolean') params[input.name] = input.checked;
        else if (input.value === '') continue;
        else if (type === 'integer' || type === 'number') params[input.name] = Number(input.value);
        else params[input.name] = input.value;
      }
      return params;
    };

    const form = h('form', { class: 'panel wizard-step' },
      h('h2', {}, 'Import'),
      h('div', { class: 'field' }, h('label', { for: 'wf-select' }, 'Workflow'), select, description),
      fields, error,
      h('div', { class: 'wizard-actions' }, h('button', { class: 'btn', type: 'button', onclick: () => show(2) }, '← Back'), start));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      replace(error);
      start.disabled = true;
      const base = paramsOf();
      const wf = workflows.find((w) => w.name === select.value);
      const hasFile = wf && wf.parameters.some((p) => p.name === 'file');
      // Several uploaded files: one run each (the file field holds the first).
      const runs = hasFile && files.length > 1 && base.file === files[0] ? files.map((f) => ({ ...base, file: f })) : [base];
      try {
        for (const params of runs) follow(await api.startRun(select.value, params));
        start.textContent = 'Start another run';
        runsBox.lastElementChild?.scrollIntoView({ block: 'nearest' });
      } catch (err) {
        replace(error, errorBox(err));
      } finally {
        start.disabled = false;
      }
    });
    return h('div', {}, form, runsBox);
  }

  const initial = Number(route.params.get('step'));
  show(initial >= 1 && initial <= 3 && state.dataset ? initial : 1);
  return () => cleanups.forEach((c) => c());
}
