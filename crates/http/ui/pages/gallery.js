// Gallery: the series of a project as cards, with filters held in the URL.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, formatDicomDate, plural, takeFlash } from '../dom.js';
import { link, pushUrl } from '../router.js';
import { mayContribute } from '../session.js';

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
const FILTER_KEYS = ['q', 'dataset', 'modality', 'body_part', 'patient_id', 'from', 'to', 'validation', 'sort'];

/** The API's query for the filters of the URL. */
export function apiFilters(state) {
  const f = {
    q: state.q,
    dataset: state.dataset,
    modality: state.modality,
    body_part: state.body_part,
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

/** How long after its last arrival a series without a thumbnail may still get one. */
const RENDER_WINDOW_MS = 15 * 60 * 1000;
/** Series found without a thumbnail after that window (asked once per page load, not again). */
const missingThumbnails = new Map();

/**
 * A series thumbnail. While it is missing: for a series that arrived in the last 15 minutes, a
 * "Rendering preview…" placeholder and a retry now and then (the pipeline renders it once the
 * series is stable); for an older one, "No preview" and no retry (its rendering failed or never
 * ran: asking again would only repeat the 404).
 */
export function thumbnail(uid, alt, { eager = false, lastArrival = null } = {}) {
  const box = h('div', { class: 'thumb', dataset: { state: 'loading' } });
  const text = h('span', {}, 'Rendering preview…');
  const placeholder = h('div', { class: 'thumb-placeholder' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
  const img = h('img', { alt, loading: eager ? 'eager' : 'lazy', decoding: 'async' });
  const arrived = lastArrival ? Date.parse(lastArrival) : NaN;
  const retryUntil = Number.isNaN(arrived) ? Date.now() + RENDER_WINDOW_MS : arrived + RENDER_WINDOW_MS;
  const missing = () => {
    box.dataset.state = 'missing';
    text.textContent = 'No preview';
  };
  box.append(img, placeholder);
  if (missingThumbnails.get(uid) === lastArrival) {
    missing();
    return box;
  }
  let tries = 0;
  img.addEventListener('load', () => { box.dataset.state = 'loaded'; });
  img.addEventListener('error', () => {
    tries += 1;
    if (Date.now() > retryUntil || tries > 60) {
      if (lastArrival) missingThumbnails.set(uid, lastArrival);
      missing();
      return;
    }
    box.dataset.state = 'pending';
    if (!box.isConnected && tries > 1) return;
    setTimeout(() => { if (box.isConnected) img.src = `${api.thumbnailUrl(uid)}?retry=${tries}`; }, Math.min(2000 + tries * 500, 10000));
  });
  img.src = api.thumbnailUrl(uid);
  return box;
}

/** Whether the server serves the OHIF viewer (`/api/health`; asked once per page load). */
let viewerAnswer = null;
export function viewerInstalled() {
  if (!viewerAnswer) {
    viewerAnswer = api.health().then((x) => Boolean(x.deployment && x.deployment.viewer)).catch(() => {
      viewerAnswer = null;
      return false;
    });
  }
  return viewerAnswer;
}

/** A link that opens a study in the OHIF viewer, in a new tab. */
export function viewerLink(studyUid, attrs = {}) {
  const href = `/viewer/viewer?${new URLSearchParams({ StudyInstanceUIDs: studyUid })}`;
  return h('a', { href, target: '_blank', rel: 'noopener', title: 'Open the study in the OHIF viewer', ...attrs }, 'Open in viewer');
}

/** A series card; with the viewer installed, a link to its study in the viewer beside it. */
function card(s, viewer) {
  const title = s.series_description || s.study_description || 'Untitled series';
  return h('div', { class: 'card-cell' }, h('a', { class: 'card series-card', href: link('series', [s.series_instance_uid]), dataset: { uid: s.series_instance_uid } },
    h('div', { class: 'thumb-wrap' },
      thumbnail(s.series_instance_uid, `Preview of ${title}`, { lastArrival: s.last_arrival }),
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
        h('span', { class: 'chips' }, s.datasets.map((d) => h('span', { class: 'chip' }, d)))))),
  viewer && s.study_instance_uid ? viewerLink(s.study_instance_uid, { class: 'viewer-link', dataset: { study: s.study_instance_uid } }) : null);
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
  const bodyPart = h('select', { id: 'f-body-part', name: 'body_part' });
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
    field('Body part', bodyPart),
    field('Validation', validation),
    field('Patient ID', patient),
    h('div', { class: 'field-row' }, field('Study date from', from), field('Study date to', to)),
    field('Sort by', sort),
    facetNote,
    clear);

  const summary = h('div', { class: 'results-summary', 'aria-live': 'polite' });
  const results = h('div', { class: 'results', id: 'results' }, loading('Loading series…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });

  main.append(
    pageHeader('Gallery', null,
      mayContribute(state.project) ? h('a', { class: 'btn primary', href: link('upload', [], { project: state.project }) }, 'Upload data') : null),
    takeFlash() || '',
    h('div', { class: 'gallery-layout' }, h('aside', {}, sidebar), h('section', { class: 'gallery-main', 'aria-label': 'Series' }, summary, results, pager)));

  let lastJson = null;
  let timer = null;
  let generation = 0;
  let datasetsListed = false;
  /** The facets of the last filters: a page change does not change them. */
  let facetCache = { key: null, facets: null };

  /**
   * Fills a select with the values of a facet and their counts (`fallback` values without counts
   * while there are no facets). Series without the attribute (value "") cannot be filtered on,
   * so they get no option; a value from the URL that has no series keeps its option, at 0.
   */
  function fillFacet(select, values, fallback, current, allLabel) {
    const items = values ? values.filter((v) => v.value !== '').map((v) => [v.value, v.count]) : fallback.map((v) => [v, null]);
    const same = (v) => v.toUpperCase() === current.toUpperCase();
    if (current && !items.some(([v]) => same(v))) items.unshift([current, values ? 0 : null]);
    replace(select, option('', allLabel, !current),
      items.map(([v, c]) => option(v, c === null ? v : `${v} (${c})`, same(v))));
  }

  function fillModality(facets) {
    fillFacet(modality, facets && facets.modality, COMMON_MODALITIES, state.modality, 'All modalities');
  }

  function fillBodyPart(facets) {
    fillFacet(bodyPart, facets && facets.body_part, [], state.body_part, 'All body parts');
  }

  function fillDataset(facets) {
    if (facets && facets.dataset) fillFacet(dataset, facets.dataset, [], state.dataset, 'All datasets');
    else if (!datasetsListed) { datasetsListed = true; loadDatasets(); }
  }

  /** Every facet of the sidebar (each counted under the other filters, not its own). */
  function fillFacets(facets) {
    fillDataset(facets);
    fillModality(facets);
    fillBodyPart(facets);
    fillValidation(facets);
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

  /** Without facets (an older server): the project's datasets with their total counts. */
  async function loadDatasets() {
    try {
      const items = await api.datasets(state.project);
      replace(dataset, option('', 'All datasets', !state.dataset),
        items.map((d) => option(d.name, `${d.name} (${d.series_count})`, d.name.toLowerCase() === state.dataset.toLowerCase())));
      if (state.dataset && !items.some((d) => d.name.toLowerCase() === state.dataset.toLowerCase())) dataset.append(option(state.dataset, state.dataset, true));
    } catch { /* the results area shows the error */ }
  }

  function showResults(page, viewer) {
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
        : mayContribute(state.project)
          ? emptyState(`No series in ${state.project} yet`,
            'Send DICOM images with dcmsend or upload a zip of DICOM files: they appear here, with a preview and validation, a few seconds after they arrive.',
            h('a', { class: 'btn primary', href: link('upload', [], { project: state.project }) }, 'Start a Data Upload'))
          : emptyState(`No series in ${state.project} yet`, 'Series sent or uploaded into this project appear here.'));
      replace(pager);
      return;
    }
    replace(results, h('div', { class: 'grid', id: 'series-grid' }, items.map((s) => card(s, viewer))));
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
      // One facets request: the catalog counts each facet under every filter but its own, so
      // the other values of a filter stay visible as alternatives. A page change (same
      // filters) reuses them; a quiet refresh asks again (validation counts move).
      const key = JSON.stringify([state.project, filters]);
      const facetsReady = (!quiet && facetCache.key === key
        ? Promise.resolve(facetCache.facets)
        : api.facets(state.project, filters).catch(() => null).then((facets) => {
          if (facets) facetCache = { key, facets };
          return facets;
        })).then((facets) => { if (mine === generation) fillFacets(facets); });
      // The cards as soon as their page is here; the facets when theirs is.
      const [page, viewer] = await Promise.all([
        api.series(state.project, { ...filters, limit: PAGE_SIZE, offset: state.offset }),
        viewerInstalled(),
      ]);
      if (mine !== generation) return;
      const json = JSON.stringify([page, viewer]);
      if (json !== lastJson) {
        lastJson = json;
        showResults(page, viewer);
      }
      results.removeAttribute('aria-busy');
      performance.clearMarks('radport:gallery-cards');
      performance.mark('radport:gallery-cards', { detail: { load: mine, quiet } });
      await facetsReady;
      if (mine !== generation) return;
      rendered(mine, quiet);
      // Series still arriving or not validated yet: look again soon.
      if (page.items.some((s) => s.validation_errors === null)) timer = setTimeout(() => load({ quiet: true }), 4000);
    } catch (e) {
      if (mine !== generation) return;
      lastJson = null;
      replace(summary);
      replace(results, errorBox(e, () => load()));
      rendered(mine, quiet);
    } finally {
      if (mine === generation) results.removeAttribute('aria-busy');
    }
  }

  /**
   * Marks that the cards and facets of a load are in the DOM: `data-loaded` on the results
   * (the load's number) and a `radport:gallery-rendered` performance mark (bench/gallery.mjs
   * times first paint and filter changes with it; `radport:gallery-cards` marks the cards
   * alone, which come first).
   */
  function rendered(mine, quiet) {
    results.dataset.loaded = String(mine);
    performance.clearMarks('radport:gallery-rendered');
    performance.mark('radport:gallery-rendered', { detail: { load: mine, quiet } });
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
    state.body_part = bodyPart.value;
    state.validation = validation.value;
    state.patient_id = patient.value.trim();
    state.from = from.value;
    state.to = to.value;
    state.sort = sort.value;
    go(0);
  }

  function clearFilters() {
    for (const k of FILTER_KEYS) state[k] = '';
    q.value = ''; dataset.value = ''; modality.value = ''; bodyPart.value = ''; validation.value = ''; patient.value = ''; from.value = ''; to.value = ''; sort.value = '';
    go(0);
  }

  let debounce = null;
  const typed = () => { clearTimeout(debounce); debounce = setTimeout(changed, 350); };
  // Enter in a text field applies the filters at once, without waiting for the typing pause.
  const enter = (e) => { if (e.key === 'Enter') { e.preventDefault(); clearTimeout(debounce); changed(); } };
  for (const el of [q, patient]) {
    el.addEventListener('input', typed);
    el.addEventListener('keydown', enter);
  }
  for (const el of [dataset, modality, bodyPart, validation, from, to, sort]) el.addEventListener('change', changed);
  projectSelect.addEventListener('change', () => {
    state.project = projectSelect.value;
    state.dataset = '';
    dataset.value = '';
    datasetsListed = false;
    changed();
  });
  clear.addEventListener('click', clearFilters);

  sessionStorage.setItem('radport.gallery', location.hash);
  fillModality(null);
  fillBodyPart(null);
  fillValidation(null);
  loadProjects();
  await load();
  return () => { generation++; clearTimeout(timer); clearTimeout(debounce); };
}

/** Gallery link of a project, optionally filtered. */
export function galleryLink(project, filters = {}) {
  return link('gallery', [], { project, ...filters });
}
