// Series detail: preview, facts, completeness, validation, metadata, instances.
import { api } from '../api.js';
import { h, replace, errorBox, emptyState, loading, badge, formatDicomDate, formatSize, formatTime, plural } from '../dom.js';
import { link } from '../router.js';
import { flatten } from '../dicom.js';
import { thumbnail, validationBadge } from './gallery.js';

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

export async function render(main, route) {
  const uid = route.args[0] || '';
  // Back to the gallery as it was left (filters and page), else the gallery of admin.
  const back = h('a', { class: 'back', href: sessionStorage.getItem('radport.gallery') || link('gallery', [], { project: 'admin' }) }, '← Gallery');
  main.append(back);
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
  replace(content,
    h('div', { class: 'page-header' },
      h('div', {},
        h('h1', {}, s.modality ? h('span', { class: 'modality-tag inline' }, s.modality) : null, ' ', h('span', { id: 'series-title' }, title)),
        h('p', { class: 'subtitle' }, h('span', { id: 'series-patient' }, s.patient_name || 'Unnamed patient'), ` · ${s.patient_id || 'no Patient ID'} · ${formatDicomDate(s.study_date)}`)),
      h('div', { class: 'page-actions' },
        validationBadge(s.validation_errors, s.validation_warnings),
        h('a', { class: 'btn small', id: 'download-series', href: api.seriesZipUrl(uid), download: `${uid}.zip` }, 'Download series (.zip)'))),
    h('div', { class: 'detail-layout' },
      h('div', { class: 'preview' }, thumbnail(uid, `Preview of ${title}`, { eager: true })),
      section('Summary', 'h-summary',
        facts([
          ['Patient name', s.patient_name],
          ['Patient ID', s.patient_id],
          ['Study date', formatDicomDate(s.study_date)],
          ['Study', s.study_description],
          ['Accession', s.accession_number],
          ['Series number', s.series_number],
          ['Body part', s.body_part_examined],
          ['Instances', `${s.instance_count} (${formatSize(s.total_size)})`],
          ['Projects', detail.projects.join(', ')],
          ['Datasets', h('span', { class: 'chips' }, (detail.dataset_memberships || []).map((m) =>
            h('a', { class: 'chip', href: link('gallery', [], { project: m.project, dataset: m.dataset }) }, `${m.project} / ${m.dataset}`)))],
          ['First arrival', formatTime(s.first_arrival)],
          ['Last arrival', formatTime(s.last_arrival)],
          ['Series UID', h('span', { class: 'mono small' }, s.series_instance_uid)],
          ['Study UID', h('span', { class: 'mono small' }, s.study_instance_uid)],
        ]),
        h('h3', {}, 'Completeness'),
        completenessView(detail.completeness))),
    section('Validation', 'h-validation', validationBody),
    section('Metadata', 'h-metadata', h('p', { class: 'hint' }, 'Attributes of a representative instance (the middle one).'), metadataView(detail.metadata)),
    section(`Instances (${detail.instances.length})`, 'h-instances', instancesView(uid, detail.instances)));
  validationView(uid, validationBody);
  return undefined;
}
