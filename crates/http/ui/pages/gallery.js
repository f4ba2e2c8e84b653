// Gallery: the series of a project as cards, with filters held in the URL.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, formatDicomDate, plural } from '../dom.js';
import { link, pushUrl } from '../router.js';

const PAGE_SIZE = 24;
const COMMON_MODALITIES = ['CT', 'MR', 'PT', 'NM', 'US', 'CR', 'DX', 'MG', 'XA', 'RF', 'OT', 'SEG', 'RTSTRUCT', 'SR'];
const VALIDATION = [
  ['', 'Any status'],
  ['errors', 'With errors'],
  ['warnings', 'Warnings only'],
  ['valid', 'Valid'],
  ['unvalidated', 'Not validated yet'],
];
/** URL keys of the filters (the rest of the URL: project, page). */
const FILTER_KEYS = ['q', 'dataset', 'modality', 'patient_id', 'from', 'to', 'validation', 'sort'];

/** The API's query for the filters of the URL. */
export function apiFilters(state) {
  const f = {
    q: state.q,
    dataset: state.dataset,
    modality: state.modality,
    patient_id: state.patient_id,
    study_date_from: (state.from || '').replaceAll('-', ''),
    study_date_to: (state.to || '').replaceAll('-', ''),
  };
  if (state.validation === 'errors') f.has_errors = 'true';
  if (state.validation === 'warnings') Object.assign(f, { has_errors: 'false', has_warnings: 'true' });
  if (state.validation === 'valid') Object.assign(f, { has_errors: 'false', has_warnings: 'false' });
  if (state.validation === 'unvalidated') f.validated = 'false';
  if (state.sort) f.sort = state.sort;
  return f;
}

/** The validation badge of a series. */
export function validationBadge(errors, warnings) {
  if (errors === null || errors === undefined) return badge('Not validated yet', 'muted');
  if (errors > 0) return badge(plural(errors, 'error'), 'error');
  if (warnings > 0) return badge(plural(warnings, 'warning'), 'warning');
  return badge('Valid', 'ok');
}

/** A thumbnail that shows a placeholder while the series is not rendered yet, and retries. */
export function thumbnail(uid, alt, { eager = false } = {}) {
  const box = h('div', { class: 'thumb', dataset: { state: 'loading' } });
  const placeholder = h('div', { class: 'thumb-placeholder' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Rendering preview…');
  const img = h('img', { alt, loading: eager ? 'eager' : 'lazy', decoding: 'async' });
  let tries = 0;
  img.addEventListener('load', () => { box.dataset.state = 'loaded'; });
  img.addEventListener('error', () => {
    box.dataset.state = 'pending';
    tries += 1;
    if (tries > 60 || (!box.isConnected && tries > 1)) return;
    setTimeout(() => { if (box.isConnected) img.src = `${api.thumbnailUrl(uid)}?retry=${tries}`; }, Math.min(2000 + tries * 500, 10000));
  });
  img.src = api.thumbnailUrl(uid);
  box.append(img, placeholder);
  return box;
}

function card(s) {
  const title = s.series_description || s.study_description || 'Untitled series';
  return h('a', { class: 'card series-card', href: link('series', [s.series_instance_uid]), dataset: { uid: s.series_instance_uid } },
    h('div', { class: 'thumb-wrap' },
      thumbnail(s.series_instance_uid, `Preview of ${title}`),
      s.modality ? h('span', { class: 'modality-tag' }, s.modality) : null),
    h('div', { class: 'card-body' },
      h('h3', { class: 'card-title', title }, title),
      h('div', { class: 'card-patient' },
        h('span', { class: 'patient-id' }, s.patient_id || 'no patient ID'),
        s.patient_name ? h('span', { class: 'patient-name' }, s.patient_name) : null),
      h('dl', { class: 'card-facts' },
        h('div', {}, h('dt', {}, 'Study'), h('dd', {}, formatDicomDate(s.study_date))),
        h('div', {}, h('dt', {}, 'Images'), h('dd', {}, String(s.instance_count)))),
      h('div', { class: 'card-foot' },
        validationBadge(s.validation_errors, s.validation_warnings),
        h('span', { class: 'chips' }, s.datasets.map((d) => h('span', { class: 'chip' }, d))))));
}

function option(value, label, selected) {
  return h('option', { value, selected: selected ? true : null }, label);
}

export async function render(main, route) {
  const p = route.params;
  const state = { project: p.get('project') || 'admin', offset: Math.max(0, Number(p.get('offset')) || 0) };
  for (const k of FILTER_KEYS) state[k] = p.get(k) || '';

  const hashOf = () => link('gallery', [], { project: state.project, ...Object.fromEntries(FILTER_KEYS.map((k) => [k, state[k]])), offset: state.offset || '' });

  // Filters (sidebar).
  const projectSelect = h('select', { id: 'f-project', name: 'project' }, option(state.project, state.project, true));
  const q = h('input', { id: 'f-q', type: 'search', name: 'q', placeholder: 'Patient, description, accession…', value: state.q });
  const dataset = h('select', { id: 'f-dataset', name: 'dataset' }, option('', 'All datasets'), state.dataset ? option(state.dataset, state.dataset, true) : null);
  const modality = h('select', { id: 'f-modality', name: 'modality' });
  const validation = h('select', { id: 'f-validation', name: 'validation' });
  const patient = h('input', { id: 'f-patient', type: 'text', name: 'patient_id', placeholder: 'Exact Patient ID', value: state.patient_id });
  const from = h('input', { id: 'f-from', type: 'date', name: 'from', value: state.from });
  const to = h('input', { id: 'f-to', type: 'date', name: 'to', value: state.to });
  const sort = h('select', { id: 'f-sort', name: 'sort' },
    option('', 'Newest arrival first', !state.sort), option('study_date', 'Study date', state.sort === 'study_date'));
  const facetNote = h('p', { class: 'hint', id: 'facet-note' });
  const clear = h('button', { type: 'button', class: 'btn link', id: 'f-clear' }, 'Clear filters');

  const field = (label, control, extra) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control, extra || null);
  const sidebar = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter series', onsubmit: (e) => e.preventDefault() },
    field('Project', projectSelect),
    field('Search', q),
    field('Dataset', dataset),
    field('Modality', modality),
    field('Validation', validation),
    field('Patient ID', patient),
    h('div', { class: 'field-row' }, field('Study date from', from), field('Study date to', to)),
    field('Sort by', sort),
    facetNote,
    clear);

  const summary = h('div', { class: 'results-summary', 'aria-live': 'polite' });
  const results = h('div', { class: 'results' }, loading('Loading series…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });

  main.append(
    pageHeader('Gallery', null,
      h('a', { class: 'btn primary', href: link('upload', [], { project: state.project }) }, 'Upload data')),
    h('div', { class: 'gallery-layout' }, h('aside', {}, sidebar), h('section', { class: 'gallery-main', 'aria-label': 'Series' }, summary, results, pager)));

  let lastJson = null;
  let timer = null;
  let generation = 0;

  function fillModality(facets) {
    const items = facets && facets.modality ? facets.modality.map((m) => [m.value, m.count]) : COMMON_MODALITIES.map((m) => [m, null]);
    if (state.modality && !items.some(([v]) => v.toUpperCase() === state.modality.toUpperCase())) items.unshift([state.modality, facets ? 0 : null]);
    replace(modality, option('', 'All modalities', !state.modality),
      items.map(([v, c]) => option(v, c === null ? v : `${v} (${c})`, v.toUpperCase() === state.modality.toUpperCase())));
  }

  function fillValidation(facets) {
    const counts = {};
    if (facets && facets.validation) for (const v of facets.validation) counts[v.value] = v.count;
    replace(validation, VALIDATION.map(([v, label]) => option(v, v && counts[v] !== undefined ? `${label} (${counts[v]})` : label, v === state.validation)));
    facetNote.textContent = counts.unvalidated ? `${plural(counts.unvalidated, 'series', 'series')} not validated yet.` : '';
  }

  async function loadProjects() {
    try {
      const projects = await api.projects();
      replace(projectSelect, projects.map((pr) => option(pr.name, `${pr.name} (${pr.series_count})`, pr.name.toLowerCase() === state.project.toLowerCase())));
      if (!projects.some((pr) => pr.name.toLowerCase() === state.project.toLowerCase())) {
        projectSelect.prepend(option(state.project, `${state.project} (unknown)`, true));
      }
    } catch { /* the results area shows the error */ }
  }

  async function loadDatasets() {
    try {
      const items = await api.datasets(state.project);
      replace(dataset, option('', 'All datasets', !state.dataset),
        items.map((d) => option(d.name, `${d.name} (${d.series_count})`, d.name.toLowerCase() === state.dataset.toLowerCase())));
      if (state.dataset && !items.some((d) => d.name.toLowerCase() === state.dataset.toLowerCase())) dataset.append(option(state.dataset, state.dataset, true));
    } catch { /* the results area shows the error */ }
  }

  function showResults(page) {
    const { total, items } = page;
    const first = total ? state.offset + 1 : 0;
    const last = state.offset + items.length;
    replace(summary, h('strong', { id: 'result-total' }, plural(total, 'series', 'series')),
      total > items.length ? ` · showing ${first}–${last}` : '',
      ` in project ${state.project}`);
    if (!items.length) {
      const filtered = FILTER_KEYS.some((k) => k !== 'sort' && state[k]);
      replace(results, filtered
        ? emptyState('No series match these filters', 'Loosen or clear the filters to see more.', h('button', { class: 'btn', type: 'button', onclick: clearFilters }, 'Clear filters'))
        : emptyState(`No series in ${state.project} yet`,
          'Send DICOM images with dcmsend or upload a zip of DICOM files: they appear here, with a preview and validation, a few seconds after they arrive.',
          h('a', { class: 'btn primary', href: link('upload', [], { project: state.project }) }, 'Start a Data Upload')));
      replace(pager);
      return;
    }
    replace(results, h('div', { class: 'grid', id: 'series-grid' }, items.map(card)));
    const prev = h('button', { class: 'btn', type: 'button', disabled: state.offset === 0 ? true : null, onclick: () => go(Math.max(0, state.offset - PAGE_SIZE)) }, '← Previous');
    const next = h('button', { class: 'btn', type: 'button', disabled: last >= total ? true : null, onclick: () => go(state.offset + PAGE_SIZE) }, 'Next →');
    replace(pager, total > PAGE_SIZE ? [prev, h('span', {}, `Page ${Math.floor(state.offset / PAGE_SIZE) + 1} of ${Math.ceil(total / PAGE_SIZE)}`), next] : []);
  }

  async function load({ quiet = false } = {}) {
    const mine = ++generation;
    clearTimeout(timer);
    if (!quiet) results.setAttribute('aria-busy', 'true');
    try {
      const filters = apiFilters(state);
      // A facet's counts leave out its own filter, so that the other choices stay visible.
      const facetsWithout = (key) => (state[key] ? api.facets(state.project, apiFilters({ ...state, [key]: '' })).catch(() => null) : null);
      const [page, facets, modalityFacets, validationFacets] = await Promise.all([
        api.series(state.project, { ...filters, limit: PAGE_SIZE, offset: state.offset }),
        api.facets(state.project, filters).catch(() => null),
        facetsWithout('modality'),
        facetsWithout('validation'),
      ]);
      if (mine !== generation) return;
      fillModality(state.modality ? modalityFacets : facets);
      fillValidation(state.validation ? validationFacets : facets);
      const json = JSON.stringify(page);
      if (json !== lastJson) {
        lastJson = json;
        showResults(page);
      }
      // Series still arriving or not validated yet: look again soon.
      if (page.items.some((s) => s.validation_errors === null)) timer = setTimeout(() => load({ quiet: true }), 4000);
    } catch (e) {
      if (mine !== generation) return;
      lastJson = null;
      replace(summary);
      replace(results, errorBox(e, () => load()));
    } finally {
      results.removeAttribute('aria-busy');
    }
  }

  function go(offset) {
    state.offset = offset;
    pushUrl(hashOf());
    sessionStorage.setItem('radport.gallery', location.hash);
    load();
    summary.scrollIntoView({ block: 'nearest' });
  }

  function changed() {
    state.q = q.value.trim();
    state.dataset = dataset.value;
    state.modality = modality.value;
    state.validation = validation.value;
    state.patient_id = patient.value.trim();
    state.from = from.value;
    state.to = to.value;
    state.sort = sort.value;
    go(0);
  }

  function clearFilters() {
    for (const k of FILTER_KEYS) state[k] = '';
    q.value = ''; dataset.value = ''; modality.value = ''; validation.value = ''; patient.value = ''; from.value = ''; to.value = ''; sort.value = '';
    go(0);
  }

  let debounce = null;
  const typed = () => { clearTimeout(debounce); debounce = setTimeout(changed, 350); };
  q.addEventListener('input', typed);
  patient.addEventListener('input', typed);
  for (const el of [dataset, modality, validation, from, to, sort]) el.addEventListener('change', changed);
  projectSelect.addEventListener('change', () => {
    state.project = projectSelect.value;
    state.dataset = '';
    pushUrl(hashOf());
    loadDatasets();
    changed();
  });
  clear.addEventListener('click', clearFilters);

  sessionStorage.setItem('radport.gallery', location.hash);
  fillModality(null);
  fillValidation(null);
  loadProjects();
  loadDatasets();
  await load();
  return () => { generation++; clearTimeout(timer); clearTimeout(debounce); };
}

/** Gallery link of a project, optionally filtered. */
export function galleryLink(project, filters = {}) {
  return link('gallery', [], { project, ...filters });
}
