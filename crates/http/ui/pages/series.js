// Series detail: preview, facts, completeness, validation, metadata, instances.
import { api } from '../api.js';
import { h, replace, errorBox, emptyState, loading, badge, formatDicomDate, formatSize, formatTime, plural, setFlash, takeFlash } from '../dom.js';
import { link, refresh } from '../router.js';
import { flatten } from '../dicom.js';
import { thumbnail, validationBadge, viewerInstalled, viewerLink } from './gallery.js';
import { manageControls, mayTakeOut, takeOutDialog } from './erasure.js';

function facts(rows) {
  return h('dl', { class: 'facts' }, rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
}

function section(title, id, ...body) {
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), body);
}

function completenessView(c) {
  if (!c) return null;
  const range = c.min_instance_number !== null ? `Instance Numbers ${c.min_instance_number}–${c.max_instance_number}` : 'No Instance Numbers';
  const complete = c.missing_count === 0;
  return h('div', { class: 'completeness' },
    complete ? badge('Complete', 'ok') : badge(`${plural(c.missing_count, 'instance')} missing`, 'warning'),
    h('span', {}, ` ${plural(c.instance_count, 'instance')} · ${range}`),
    c.without_instance_number ? h('span', {}, ` · ${c.without_instance_number} without a number`) : null,
    complete ? null : h('p', { class: 'missing' }, 'Missing: ', c.missing_instance_numbers.join(', '),
      c.missing_count > c.missing_instance_numbers.length ? ' …' : ''));
}

/** Findings that differ only by instance, as one row each ("in 4 instances"); errors first. */
function groupFindings(findings) {
  const groups = new Map();
  for (const f of findings) {
    const key = [f.severity, f.tag_path, f.keyword, f.module, f.message].join('\u0000');
    if (!groups.has(key)) groups.set(key, { ...f, instances: [] });
    if (f.sop_instance_uid) groups.get(key).instances.push(f.sop_instance_uid);
  }
  const rows = [...groups.values()];
  for (const g of rows) {
    g.where = g.instances.length === 0 ? 'series' : g.instances.length === 1 ? g.instances[0] : `${g.instances.length} instances`;
  }
  return rows.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1));
}

function validationView(uid, body) {
  replace(body, loading('Loading validation…'));
  api.validation(uid).then((v) => {
    const findings = v.findings || [];
    replace(body,
      h('div', { class: 'validation-summary' },
        validationBadge(v.errors, v.warnings),
        h('span', {}, ` ${plural(v.instances_checked, 'instance')} checked against ${v.iods.join(', ') || 'no known IOD'} · ${formatTime(v.validated_at)}`),
        h('a', { class: 'btn small', id: 'report-link', href: api.reportUrl(uid), target: '_blank', rel: 'noopener' }, 'Open full report ↗')),
      findings.length
        ? h('div', { class: 'table-wrap tall' }, h('table', { class: 'table', id: 'findings' },
          h('thead', {}, h('tr', {}, ['Severity', 'Attribute', 'Keyword', 'Module', 'Message', 'Where'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, groupFindings(findings).map((g) => h('tr', {},
            h('td', {}, badge(g.severity, g.severity === 'error' ? 'error' : 'warning')),
            h('td', { class: 'mono' }, g.tag_path || '—'),
            h('td', {}, g.keyword || ''),
            h('td', {}, g.module || ''),
            h('td', {}, g.message),
            h('td', { class: 'small', title: g.instances.join('\n') }, g.where))))))
        : h('p', { class: 'muted' }, 'No findings: every instance conforms to its IOD.'));
  }).catch((e) => {
    replace(body, e.status === 404
      ? h('p', { class: 'muted' }, 'Not validated yet: validation runs once the series has been idle for the stable time. ', h('button', { class: 'btn small', type: 'button', onclick: () => validationView(uid, body) }, 'Check again'))
      : errorBox(e, () => validationView(uid, body)));
  });
}

function metadataView(metadata) {
  const rows = flatten(metadata);
  if (!rows.length) return h('p', { class: 'muted' }, 'No metadata stored for this series.');
  const search = h('input', { type: 'search', id: 'meta-search', placeholder: 'Filter by tag, keyword or value', 'aria-label': 'Filter metadata' });
  const count = h('span', { class: 'muted', 'aria-live': 'polite' });
  const trs = rows.map((r) => {
    const tr = h('tr', { class: r.depth ? 'nested' : null },
      h('td', { class: 'mono' }, r.path),
      h('td', {}, r.keyword),
      h('td', { class: 'mono' }, r.vr),
      h('td', { class: 'value' }, r.value));
    tr.dataset.search = `${r.path} ${r.tag} ${r.keyword} ${r.value}`.toLowerCase();
    return tr;
  });
  const tbody = h('tbody', {}, trs);
  const update = () => {
    const needle = search.value.trim().toLowerCase();
    let shown = 0;
    for (const tr of trs) {
      const match = !needle || tr.dataset.search.includes(needle);
      tr.hidden = !match;
      if (match) shown++;
    }
    count.textContent = needle ? `${shown} of ${trs.length} attributes` : `${trs.length} attributes`;
  };
  search.addEventListener('input', update);
  update();
  return h('div', {},
    h('div', { class: 'toolbar' }, search, count),
    h('div', { class: 'table-wrap tall' }, h('table', { class: 'table', id: 'metadata' },
      h('thead', {}, h('tr', {}, ['Tag', 'Keyword', 'VR', 'Value'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)));
}

/** Longest side of the frames the slice viewer asks for (one size: the browser caches them). */
const SLICE_SIZE = 512;

/** Segmentation Storage: stepped through slice by slice, each drawn over the image it segments. */
const SEG_CLASS = '1.2.840.10008.5.1.4.1.1.66.4';
/** RT Structure Set Storage: drawn as the overlay of one slice (over its image), not frame by frame. */
const RTSTRUCT_CLASS = '1.2.840.10008.5.1.4.1.1.481.3';

const byInstanceNumber = (a, b) => (a.instance_number ?? Infinity) - (b.instance_number ?? Infinity);

function instanceText(i) {
  return i.instance_number !== null && i.instance_number !== undefined ? `Instance Number ${i.instance_number}` : 'no Instance Number';
}

/** One slice per frame of an image instance (a structure set is one slice: its overlay). */
function imageSlices(instance) {
  const frames = instance.sop_class_uid === RTSTRUCT_CLASS ? 1 : Math.max(1, instance.number_of_frames ?? 1);
  // Single-frame instances ask for no frame: the URL (and the browser's cache) of the default.
  if (frames === 1) return [{ instance, frame: undefined, text: instanceText(instance) }];
  return Array.from({ length: frames }, (_, f) => ({ instance, frame: f + 1, text: `${instanceText(instance)}, frame ${f + 1} / ${frames}` }));
}

/** What a slice of a segmentation is drawn over, and what is on it. */
function segSliceText(slice, names) {
  const src = slice.source;
  let over;
  if (!src) over = 'no source image referenced: segments on black';
  else if (!src.stored) over = 'source image not in the archive: segments on black';
  else over = `over ${instanceText(src)}${src.frame ? `, frame ${src.frame}` : ''} of the source series`;
  const segments = slice.segments.map((n) => names.get(n) ?? `segment ${n}`).join(', ');
  const frames = `SEG frame${slice.frames.length > 1 ? 's' : ''} ${slice.frames.join(', ')}`;
  return [over, segments, frames].filter(Boolean).join(' · ');
}

/**
 * The slices of a segmentation instance: the source slices it covers, in slice order, each drawn
 * over its source image (`/segmentation`); else (a segmentation the server cannot read) one
 * slice, the frame the server draws by default, with the reason.
 */
async function segSlices(uid, instance) {
  let why = 'no slices';
  try {
    const listing = await api.segmentation(uid, instance.sop_instance_uid);
    if (listing.slices.length) {
      const names = new Map(listing.segments.map((s) => [s.number, s.label || `segment ${s.number}`]));
      return listing.slices.map((slice) => ({
        instance, frame: slice.frame, text: segSliceText(slice, names), title: slice.source ? `Source SOP Instance UID ${slice.source.sop_instance_uid}` : null,
      }));
    }
  } catch (e) {
    why = e.message;
  }
  return [{ instance, frame: undefined, text: `${instanceText(instance)} (its slices cannot be listed: ${why})` }];
}

/**
 * The series as slices: every frame of every instance, instances by Instance Number, starting in
 * the middle; a segmentation as the source slices it covers (each drawn over its image), a
 * structure set as one slice (its overlay). Scrolled with the range input, the mouse wheel over
 * the image, or the keyboard (arrow keys, Page Up/Down, Home/End) once the viewer has the focus.
 * One frame is fetched at a time and the latest wanted slice wins, so scrolling fast does not
 * queue renders on the server.
 */
function sliceViewer(uid, title, instances, lastArrival) {
  const sorted = [...instances].sort(byInstanceNumber);
  if (!sorted.some((i) => i.sop_class_uid === SEG_CLASS)) {
    return slicesView(uid, title, sorted.flatMap(imageSlices), lastArrival);
  }
  const holder = h('div', {}, loading('Loading slices…'));
  Promise.all(sorted.map((i) => (i.sop_class_uid === SEG_CLASS ? segSlices(uid, i) : imageSlices(i))))
    .then((parts) => replace(holder, slicesView(uid, title, parts.flat(), lastArrival)));
  return holder;
}

function slicesView(uid, title, slices, lastArrival) {
  const n = slices.length;
  if (n === 0) return thumbnail(uid, `Preview of ${title}`, { eager: true, lastArrival });
  let current = Math.floor(n / 2);
  let wanted = current;
  let shown = -1;
  let busy = false;

  const img = h('img', { id: 'slice-image', alt: `Slice of ${title}` });
  const message = h('span', {}, 'Loading slice…');
  const box = h('div', { class: 'thumb', dataset: { state: 'loading' } }, img,
    h('div', { class: 'thumb-placeholder' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), message));
  const range = h('input', {
    type: 'range', id: 'slice-range', min: '1', max: String(n), step: '1', value: String(current + 1),
    'aria-label': 'Slice', disabled: n === 1 ? true : null,
  });
  const label = h('span', { id: 'slice-label', class: 'slice-label' });
  const number = h('span', { class: 'muted small' });
  const prev = h('button', { type: 'button', class: 'btn small', id: 'slice-prev', 'aria-label': 'Previous slice', onclick: () => go(current - 1) }, '‹');
  const next = h('button', { type: 'button', class: 'btn small', id: 'slice-next', 'aria-label': 'Next slice', onclick: () => go(current + 1) }, '›');
  const viewer = h('div', {
    class: 'slice-viewer', id: 'slice-viewer', tabindex: '0', role: 'group',
    'aria-label': `Slices of ${title}: arrow keys, Page Up/Down, Home/End or the mouse wheel change the slice`,
  }, box, h('div', { class: 'slice-controls' }, prev, range, next), h('div', { class: 'slice-status', 'aria-live': 'polite' }, label, ' ', number));

  function describe() {
    label.textContent = `slice ${current + 1} / ${n}`;
    number.textContent = slices[current].text;
    if (slices[current].title) number.title = slices[current].title;
    else number.removeAttribute('title');
    range.value = String(current + 1);
    prev.disabled = current === 0;
    next.disabled = current === n - 1;
  }

  async function pump() {
    if (busy) return;
    busy = true;
    while (wanted !== shown) {
      const k = wanted;
      const url = api.renderedUrl(uid, slices[k].instance.sop_instance_uid, { frame: slices[k].frame, size: SLICE_SIZE });
      const probe = new Image();
      probe.src = url;
      try {
        await probe.decode(); // swapped in once decoded: no flicker between slices
        img.src = url;
        box.dataset.state = 'loaded';
      } catch {
        let why = 'This slice cannot be shown.';
        try { why = (await (await fetch(url)).json()).error || why; } catch { /* keep the generic text */ }
        message.textContent = why;
        box.dataset.state = 'failed';
      }
      shown = k;
      img.dataset.slice = String(k + 1);
      if (!viewer.isConnected) break; // the page was left
    }
    busy = false;
  }

  function go(k) {
    const target = Math.max(0, Math.min(n - 1, k));
    if (target === current) return;
    current = target;
    wanted = target;
    describe();
    pump();
  }

  range.addEventListener('input', () => go(Number(range.value) - 1));
  let wheel = 0;
  viewer.addEventListener('wheel', (e) => {
    if (n === 1) return;
    e.preventDefault();
    // A mouse notch is one slice; a touchpad's small deltas add up to one.
    if (e.deltaMode !== 0 || Math.abs(e.deltaY) >= 50) {
      go(current + Math.sign(e.deltaY));
      wheel = 0;
      return;
    }
    wheel += e.deltaY;
    if (Math.abs(wheel) >= 50) {
      go(current + Math.sign(wheel));
      wheel = 0;
    }
  }, { passive: false });
  const keys = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
  viewer.addEventListener('keydown', (e) => {
    if (e.target === range || e.altKey || e.ctrlKey || e.metaKey) return; // the range moves itself
    if (e.key in keys) go(current + keys[e.key]);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(n - 1);
    else return;
    e.preventDefault();
  });

  describe();
  pump();
  return viewer;
}

function instancesView(uid, instances) {
  return h('div', { class: 'table-wrap tall' }, h('table', { class: 'table', id: 'instances' },
    h('thead', {}, h('tr', {}, ['#', 'SOP Instance UID', 'Size', 'Matrix', 'Frames', 'Received', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, instances.map((i) => h('tr', {},
      h('td', {}, i.instance_number ?? '—'),
      h('td', { class: 'mono small' }, i.sop_instance_uid),
      h('td', {}, formatSize(i.size)),
      h('td', {}, i.rows && i.columns ? `${i.columns}×${i.rows}` : '—'),
      h('td', {}, i.number_of_frames ?? 1),
      h('td', {}, formatTime(i.received_at)),
      h('td', {}, h('a', { href: api.instanceUrl(uid, i.sop_instance_uid), download: `${i.sop_instance_uid}.dcm`, class: 'btn small' }, 'Download')))))));
}

/**
 * The series' projects, each a link to its gallery; a project the caller manages (not `admin`)
 * has a small × to take the series out of it.
 */
function projectsView(uid, detail, back) {
  return h('span', { class: 'chips', id: 'series-projects' }, detail.projects.map((p) => {
    const chip = h('span', { class: 'chip project-chip', dataset: { project: p } },
      h('a', { href: link('gallery', [], { project: p }) }, p));
    if (mayTakeOut(p)) {
      chip.append(h('button', {
        class: 'chip-remove', type: 'button', title: `Take the series out of ${p}`, 'aria-label': `Take the series out of ${p}`,
        dataset: { takeOut: p },
        onclick: async () => {
          const message = await takeOutDialog(uid, detail, p);
          if (!message) return;
          try {
            await api.seriesDetail(uid);
          } catch (e) {
            if (e.status === 404) {
              // Seen through that project alone: it is out of sight now.
              setFlash(`${message} You no longer see the series.`);
              location.hash = back;
              return;
            }
          }
          setFlash(message);
          refresh();
        },
      }, '×'));
    }
    return chip;
  }));
}

export async function render(main, route) {
  const uid = route.args[0] || '';
  // Back to the gallery as it was left (filters and page), else the gallery of admin.
  const backHref = sessionStorage.getItem('radport.gallery') || link('gallery', [], { project: 'admin' });
  const back = h('a', { class: 'back', href: backHref }, '← Gallery');
  main.append(back);
  const flash = takeFlash();
  if (flash) main.append(flash);
  const content = h('div', {}, loading('Loading series…'));
  main.append(content);
  let detail;
  try {
    detail = await api.seriesDetail(uid);
  } catch (e) {
    replace(content, e.status === 404
      ? emptyState('Series not found', `No series with UID ${uid} is in the catalog.`, h('a', { class: 'btn primary', href: link('gallery') }, 'Open the gallery'))
      : errorBox(e, () => { main.replaceChildren(); render(main, route); }));
    return undefined;
  }
  const s = detail.series;
  const title = s.series_description || s.study_description || 'Untitled series';
  document.title = `${title} · radport`;
  const validationBody = h('div', {});
  // Copy, move and delete: filled once the projects the caller may use are known.
  const manage = h('div', { id: 'manage-holder' });
  manageControls(uid, detail, title, {
    back: backHref,
    done: (message) => { setFlash(message); refresh(); },
  }).then((panel) => { if (panel) replace(manage, panel); }).catch(() => {});
  // The study in the OHIF viewer, once the server says it serves one.
  const actions = h('div', { class: 'page-actions' },
    validationBadge(s.validation_errors, s.validation_warnings),
    h('a', { class: 'btn small', id: 'download-series', href: api.seriesZipUrl(uid), download: `${uid}.zip` }, 'Download series (.zip)'));
  viewerInstalled().then((viewer) => {
    if (viewer && s.study_instance_uid) actions.append(viewerLink(s.study_instance_uid, { class: 'btn small', id: 'open-in-viewer' }));
  });
  replace(content,
    h('div', { class: 'page-header' },
      h('div', {},
        h('h1', {}, s.modality ? h('span', { class: 'modality-tag inline' }, s.modality) : null, ' ', h('span', { id: 'series-title' }, title)),
        h('p', { class: 'subtitle' }, h('span', { id: 'series-patient' }, s.patient_name || 'Unnamed patient'), ` · ${s.patient_id || 'no Patient ID'} · ${formatDicomDate(s.study_date)}`)),
      actions),
    h('div', { class: 'detail-layout' },
      h('div', { class: 'preview' }, sliceViewer(uid, title, detail.instances, s.last_arrival)),
      h('div', { class: 'detail-side' }, section('Summary', 'h-summary',
        facts([
          ['Patient name', s.patient_name],
          ['Patient ID', s.patient_id],
          ['Study date', formatDicomDate(s.study_date)],
          ['Study', s.study_description],
          ['Accession', s.accession_number],
          ['Series number', s.series_number],
          ['Body part', s.body_part_examined],
          ['Instances', `${s.instance_count} (${formatSize(s.total_size)})`],
          ['Projects', projectsView(uid, detail, backHref)],
          ['Datasets', h('span', { class: 'chips' }, (detail.dataset_memberships || []).map((m) =>
            h('a', { class: 'chip', href: link('gallery', [], { project: m.project, dataset: m.dataset }) }, `${m.project} / ${m.dataset}`)))],
          ['First arrival', formatTime(s.first_arrival)],
          ['Last arrival', formatTime(s.last_arrival)],
          ['Series UID', h('span', { class: 'mono small' }, s.series_instance_uid)],
          ['Study UID', h('span', { class: 'mono small' }, s.study_instance_uid)],
        ]),
        h('h3', {}, 'Completeness'),
        completenessView(detail.completeness)), manage)),
    section('Validation', 'h-validation', validationBody),
    section('Metadata', 'h-metadata', h('p', { class: 'hint' }, 'Attributes of a representative instance (the middle one).'), metadataView(detail.metadata)),
    section(`Instances (${detail.instances.length})`, 'h-instances', instancesView(uid, detail.instances)));
  validationView(uid, validationBody);
  return undefined;
}
