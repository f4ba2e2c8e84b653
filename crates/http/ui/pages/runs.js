// Workflow runs: list, detail, re-run; `runView` is also used by the Data Upload wizard.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, progressBar, formatTime, formatDuration, plural } from '../dom.js';
import { link } from '../router.js';

const STATE_KIND = { queued: 'muted', running: 'info', succeeded: 'ok', failed: 'error' };
const finished = (run) => run.state === 'succeeded' || run.state === 'failed';

function duration(run) {
  const end = run.finished_at ? new Date(run.finished_at) : new Date();
  return formatDuration(end - new Date(run.created_at));
}

export function stateBadge(run) {
  return badge(run.state, STATE_KIND[run.state] || 'muted');
}

/** Where to look at what a run produced: the gallery filtered on its project and dataset. */
function resultLinks(run) {
  const p = run.params || {};
  if (!run.series || !run.series.length) return null;
  const project = typeof p.project === 'string' ? p.project : 'admin';
  return h('div', { class: 'run-result' },
    h('a', { class: 'btn primary', href: link('gallery', [], { project, dataset: typeof p.dataset === 'string' ? p.dataset : '' }), dataset: { role: 'gallery-link' } },
      `View ${plural(run.series.length, 'series', 'series')} in the gallery`),
    run.series.length <= 5 ? run.series.map((uid, i) => h('a', { class: 'btn small', href: link('series', [uid]) }, `Series ${i + 1}`)) : null);
}

/** A run as a panel: state, progress, errors, log, results; `onRerun` adds a re-run button. */
export function runView(run, { onRerun, detailed = true } = {}) {
  const { done, total } = run.progress || { done: 0, total: 0 };
  const pct = total > 0 ? Math.round((done / total) * 100) : (run.state === 'succeeded' ? 100 : 0);
  const errors = run.errors || [];
  return h('article', { class: ['panel', 'run', `run-${run.state}`], id: `run-${run.id}`, dataset: { state: run.state } },
    h('div', { class: 'run-head' },
      h('div', {},
        h('h3', {}, h('a', { href: link('runs', [run.id]) }, run.workflow)),
        h('p', { class: 'muted' }, `Started ${formatTime(run.created_at)} · ${finished(run) ? 'took' : 'running for'} ${duration(run)}`,
          run.params && run.params.file ? ` · file ${run.params.file}` : '')),
      h('div', { class: 'run-actions' },
        h('span', { class: 'run-state' }, stateBadge(run)),
        onRerun && run.state === 'failed' ? h('button', { class: 'btn small', type: 'button', onclick: () => onRerun(run) }, 'Re-run') : null)),
    h('div', { class: 'run-progress' },
      progressBar(total > 0 ? done : (run.state === 'succeeded' ? 1 : 0), total > 0 ? total : (run.state === 'succeeded' ? 1 : 0), `Progress of ${run.workflow}`),
      h('span', { class: 'run-count' }, total > 0 ? `${done} / ${total} items · ${pct} %` : (run.state === 'succeeded' ? '100 %' : 'counting items…'))),
    errors.length ? h('details', { class: 'run-errors', open: errors.length <= 5 ? true : null },
      h('summary', {}, `${plural(errors.length, 'item error')}`),
      h('table', { class: 'table compact' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Item'), h('th', { scope: 'col' }, 'Error'))),
        h('tbody', {}, errors.map((e) => h('tr', {}, h('td', { class: 'mono' }, String(e.item ?? '')), h('td', {}, String(e.error ?? ''))))))) : null,
    detailed && run.log && run.log.length ? h('details', { class: 'run-log' },
      h('summary', {}, `Log (${run.log.length} lines)`),
      h('pre', {}, run.log.join('\n'))) : null,
    run.state === 'succeeded' ? resultLinks(run) : null);
}

/** Polls a run every second, replacing `container`'s content, until it has finished. */
export function followRun(id, container, { onRerun, onDone } = {}) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      const run = await api.run(id);
      if (stopped) return;
      replace(container, runView(run, { onRerun }));
      if (finished(run)) { if (onDone) onDone(run); return; }
    } catch (e) {
      if (stopped) return;
      replace(container, errorBox(e));
    }
    timer = setTimeout(tick, 1000);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

async function rerun(run) {
  const started = await api.startRun(run.workflow, run.params || {});
  location.hash = link('runs', [started.id]);
}

function rerunWithErrors(run, where) {
  rerun(run).catch((e) => where.prepend(errorBox(e)));
}

async function renderDetail(main, id) {
  main.append(h('a', { class: 'back', href: link('runs') }, '← All runs'));
  const body = h('div', {}, loading('Loading run…'));
  main.append(pageHeader('Workflow run', h('span', { class: 'mono small' }, id)), body);
  const params = h('div', {});
  main.append(params);
  api.run(id).then((run) => {
    replace(params, h('section', { class: 'panel' }, h('h2', {}, 'Parameters'),
      h('dl', { class: 'facts' }, Object.entries(run.params || {}).map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', { class: 'mono' }, JSON.stringify(v)))))));
  }).catch(() => {});
  return followRun(id, body, { onRerun: (run) => rerunWithErrors(run, body) });
}

export async function render(main, route) {
  if (route.args[0]) return renderDetail(main, route.args[0]);
  const list = h('div', { class: 'run-list' }, loading('Loading runs…'));
  main.append(pageHeader('Runs', 'Import workflows and their progress. Failed runs can be started again with the same parameters.',
    h('a', { class: 'btn primary', href: link('upload') }, 'New Data Upload')), list);
  let timer = null;
  let last = null;
  const load = async () => {
    try {
      const runs = await api.runs();
      const json = JSON.stringify(runs);
      if (json !== last) {
        last = json;
        replace(list, runs.length
          ? runs.map((run) => runView(run, { onRerun: (r) => rerunWithErrors(r, list), detailed: true }))
          : emptyState('No workflow runs yet', 'Upload a zip of DICOM files in Data Upload and start an import: its progress shows here.',
            h('a', { class: 'btn primary', href: link('upload') }, 'Start a Data Upload')));
      }
      if (runs.some((r) => !finished(r))) timer = setTimeout(load, 1000);
    } catch (e) {
      last = null;
      replace(list, errorBox(e, load));
    }
  };
  await load();
  return () => clearTimeout(timer);
}
