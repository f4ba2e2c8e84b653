// Data Upload wizard: 1 destination, 2 send (dcmsend command or browser upload over tus),
// 3 import workflow (any workflow of GET /api/workflows) and its progress.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, loading, progressBar, setProgress, formatSize, copyText, plural } from '../dom.js';
import { link, pushUrl } from '../router.js';
import { upload as tusUpload } from '../tus.js';
import { zipFiles } from '../zip.js';
import { followRun } from './runs.js';

/** The dataset name the receiver makes of an AE title (same rule as the server's). */
export function datasetName(raw) {
  const name = raw.trim().replace(/^kp-/i, '').replace(/[^A-Za-z0-9._-]/g, '_');
  return name === '' ? 'dicomupload' : name;
}

/** The dcmsend command of the documentation, for this deployment. */
export function dcmsendCommand(host, port, dataset, project) {
  return `dcmsend -v ${host} ${port} --aetitle kp-${dataset} --call kp-${project} --scan-directories --scan-pattern '*.dcm' --recurse DIR`;
}

const isZip = (file) => /\.zip$/i.test(file.name);

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
    uploads: [], // { label, size, path, status, bar, text }
    busy: false,
  };
  if (route.params.get('file')) state.uploads.push({ label: route.params.get('file'), path: route.params.get('file'), size: 0, status: 'done' });
  const cleanups = [];
  const head = h('div', {});
  const body = h('div', { class: 'wizard-body' });
  main.append(pageHeader('Data Upload', 'Bring DICOM images into a project: send them from a DICOM node, or upload files from this computer and import them.'), head, body);

  let health = null;
  const healthPromise = api.health().then((x) => { health = x; }).catch(() => {});
  const syncUrl = () => pushUrl(link('upload', [], { project: state.project, dataset: state.dataset, method: state.method === 'dicom' ? 'dicom' : '' }));

  function show(step) {
    state.step = step;
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
      const parts = [`Series will be in dataset “${name}”.`];
      if (`kp-${name}`.length > 16) parts.push(' AE titles hold 16 characters: for dcmsend keep the name to 13.');
      hint.textContent = parts.join('');
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
    healthPromise.then(() => {
      const d = (health && health.deployment) || {};
      code.textContent = dcmsendCommand(d.dicom_host || location.hostname, d.dicom_port || 11112, state.dataset, state.project);
    });
    copy.addEventListener('click', async () => {
      copied.textContent = (await copyText(code.textContent)) ? 'Copied to the clipboard.' : 'Select the command and copy it by hand.';
    });
    actions.append(h('a', { class: 'btn primary', href: link('gallery', [], { project: state.project, dataset: state.dataset }) }, 'Open the gallery of this dataset'));
    return h('div', {},
      h('p', {}, 'Run this on the machine that holds the DICOM folder (DCMTK: ', h('code', {}, 'apt-get install dcmtk'), '). Replace ', h('code', {}, 'DIR'), ' with the folder.'),
      h('div', { class: 'command' }, h('pre', {}, code), copy),
      copied,
      h('p', { class: 'hint' }, 'The called AE title names the project, the calling AE title the dataset. A few seconds after the last image arrives, previews and validation are ready.'));
  }

  function browserPanel(actions) {
    const files = h('input', { id: 'up-files', type: 'file', multiple: true, class: 'visually-hidden' });
    const folder = h('input', { id: 'up-folder', type: 'file', class: 'visually-hidden', props: { webkitdirectory: true } });
    const list = h('ul', { class: 'upload-list', id: 'upload-list' });
    const totalBar = progressBar(0, 0, 'Total upload progress');
    const totalText = h('span', { class: 'muted', id: 'upload-total' });
    const total = h('div', { class: 'upload-total', hidden: true }, h('strong', {}, 'Total'), totalBar, totalText);
    const error = h('div', { 'aria-live': 'polite' });
    const next = h('button', { class: 'btn primary', type: 'button', id: 'up-next-import', disabled: true, onclick: () => show(3) }, 'Next: import →');
    const zone = h('div', { class: 'dropzone', id: 'dropzone' },
      h('div', { class: 'dropzone-icon', 'aria-hidden': 'true' }),
      h('p', { class: 'dropzone-title' }, 'Drop DICOM files, a folder or a .zip here'),
      h('p', { class: 'hint' }, 'Zips are uploaded as they are; loose files and folders are packed into one zip first. Uploads resume after a dropped connection.'),
      h('div', { class: 'dropzone-actions' },
        h('label', { class: 'btn', for: 'up-files', tabindex: '0', role: 'button' }, 'Choose files'),
        h('label', { class: 'btn', for: 'up-folder', tabindex: '0', role: 'button' }, 'Choose a folder')),
      files, folder);
    for (const label of zone.querySelectorAll('label[role=button]')) {
      label.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); document.getElementById(label.htmlFor).click(); } });
    }

    const refreshTotal = () => {
      const size = state.uploads.reduce((n, u) => n + (u.size || 0), 0);
      const sent = state.uploads.reduce((n, u) => n + (u.sent || 0), 0);
      total.hidden = state.uploads.length === 0;
      setProgress(totalBar, sent, size);
      const done = state.uploads.filter((u) => u.status === 'done').length;
      totalText.textContent = `${formatSize(sent)} of ${formatSize(size)} · ${done} of ${plural(state.uploads.length, 'file')} uploaded`;
      next.disabled = state.busy || done === 0;
    };

    const row = (u) => {
      u.bar = progressBar(u.sent || 0, u.size || 0, `Upload of ${u.label}`);
      u.text = h('span', { class: 'upload-status' }, u.status === 'done' ? 'uploaded' : u.status);
      return h('li', { class: 'upload-item' },
        h('div', { class: 'upload-name' }, h('span', { class: 'mono' }, u.label), h('span', { class: 'muted' }, formatSize(u.size))),
        u.bar, u.text);
    };
    const redraw = () => { replace(list, state.uploads.map(row)); refreshTotal(); };

    async function accept(entries) {
      if (!entries.length || state.busy) return;
      replace(error);
      state.busy = true;
      const zips = entries.filter((e) => isZip(e.file));
      const loose = entries.filter((e) => !isZip(e.file));
      const items = zips.map((e) => ({ label: e.name.split('/').pop(), blob: e.file, size: e.file.size, sent: 0, status: 'waiting' }));
      if (loose.length) {
        const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 15);
        const name = `${state.dataset}-${stamp}.zip`;
        items.push({ label: name, loose, size: loose.reduce((n, e) => n + e.file.size, 0), sent: 0, status: `packing ${plural(loose.length, 'file')}` });
      }
      state.uploads.push(...items);
      redraw();
      for (const u of items) {
        try {
          if (u.loose) {
            u.blob = await zipFiles(u.loose, (done, n) => { u.text.textContent = `packing ${done} / ${n} files`; });
            u.size = u.blob.size;
            u.status = 'waiting';
          }
          u.text.textContent = 'uploading';
          await tusUpload(u.blob, u.label, {
            onProgress: (sent, size) => { u.sent = sent; u.size = size; setProgress(u.bar, sent, size); refreshTotal(); },
          });
          u.path = u.label;
          u.status = 'done';
          u.sent = u.size;
          u.blob = null;
          setProgress(u.bar, 1, 1);
          u.text.textContent = 'uploaded';
          u.text.classList.add('ok');
        } catch (e) {
          u.status = 'failed';
          u.text.textContent = `failed: ${e.message}`;
          u.text.classList.add('bad');
          error.append(errorBox(new Error(`${u.label}: ${e.message}`)));
        }
        refreshTotal();
      }
      state.busy = false;
      refreshTotal();
      if (state.uploads.some((u) => u.status === 'done')) next.focus();
    }

    files.addEventListener('change', () => accept([...files.files].map((f) => ({ name: f.name, file: f }))));
    folder.addEventListener('change', () => accept([...folder.files].map((f) => ({ name: f.webkitRelativePath || f.name, file: f }))));
    zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', async (e) => {
      e.preventDefault();
      zone.classList.remove('over');
      try { await accept(await entriesOf(e.dataTransfer)); } catch (err) { error.append(errorBox(err)); }
    });
    redraw();
    actions.append(next);
    return h('div', {}, zone, list, total, error);
  }

  // Step 3: a workflow, its parameters, and the runs it started.
  function step3() {
    const select = h('select', { id: 'wf-select' });
    const description = h('p', { class: 'hint' });
    const fields = h('div', { class: 'param-grid' });
    const error = h('div', { id: 'wf-error', 'aria-live': 'polite' });
    const runsBox = h('div', { id: 'wf-runs' });
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
        for (const params of runs) {
          const run = await api.startRun(select.value, params);
          const box = h('div', {}, loading('Starting…'));
          runsBox.append(box);
          cleanups.push(followRun(run.id, box));
        }
        start.textContent = 'Start another run';
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
