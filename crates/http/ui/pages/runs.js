// Workflow runs: list, detail, re-run; `runView` is also used by the Data Upload wizard.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, progressBar, formatTime, formatDuration, plural } from '../dom.js';
import { mayContribute, mayUploadSomewhere } from '../session.js';
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

/** Why a failed run failed, in a sentence: its last "failed: …" log line, else its item errors. */
export function failureReason(run) {
  const line = [...(run.log || [])].reverse().find((l) => typeof l === 'string' && l.startsWith('failed: '));
  if (line) return line.slice('failed: '.length);
  const errors = run.errors || [];
  if (errors.length) return `none of the ${plural(errors.length, 'item')} could be imported (see the item errors below)`;
  return 'see the log below';
}

/** The re-run button: starts the run again with its parameters (`onRerun(run)`, a promise). */
function rerunButton(run, onRerun) {
  const message = h('span', { class: 'field-error', role: 'alert' });
  const button = h('button', {
    class: 'btn small', type: 'button', dataset: { role: 'rerun' },
    title: 'Start this workflow again with the same parameters',
  }, '↻ Re-run');
  button.addEventListener('click', async () => {
    button.disabled = true;
    button.textContent = 'Starting…';
    message.textContent = '';
    try {
      await onRerun(run);
      button.textContent = 'Re-run started';
    } catch (e) {
      message.textContent = `Could not start it again: ${e.message}`;
      button.disabled = false;
      button.textContent = '↻ Re-run';
    }
  });
  return [button, message];
}

/** A run as a panel: state, progress, errors, log, results; `onRerun` adds a re-run button. */
export function runView(run, { onRerun, detailed = true } = {}) {
  const { done, total } = run.progress || { done: 0, total: 0 };
  const pct = total > 0 ? Math.round((done / total) * 100) : (run.state === 'succeeded' ? 100 : 0);
  const errors = run.errors || [];
  const failed = run.state === 'failed';
  return h('article', { class: ['panel', 'run', `run-${run.state}`], id: `run-${run.id}`, dataset: { state: run.state } },
    h('div', { class: 'run-head' },
      h('div', {},
        h('h3', {}, h('a', { href: link('runs', [run.id]) }, run.workflow)),
        h('p', { class: 'muted' }, `Started ${formatTime(run.created_at)} · ${finished(run) ? 'took' : 'running for'} ${duration(run)}`,
          run.params && run.params.file ? ` · file ${run.params.file}` : '')),
      h('div', { class: 'run-actions' },
        h('span', { class: 'run-state' }, stateBadge(run)),
        // Re-running imports into the run's project again: its contributors and managers.
        onRerun && failed && mayContribute(run.params && typeof run.params.project === 'string' ? run.params.project : 'admin') ? rerunButton(run, onRerun) : null)),
    h('div', { class: 'run-progress' },
      // Unknown total: a moving bar while the run may still count, a plain one once it ended.
      progressBar(total > 0 ? done : (run.state === 'succeeded' ? 1 : 0), total > 0 ? total : (finished(run) ? 1 : 0), `Progress of ${run.workflow}`),
      h('span', { class: 'run-count' }, total > 0 ? `${done} / ${total} items · ${pct} %` : (run.state === 'succeeded' ? '100 %' : failed ? 'no items' : 'counting items…'))),
    failed ? h('div', { class: 'notice error run-failure' },
      h('strong', {}, 'This run failed: '), h('span', { class: 'run-failure-reason' }, failureReason(run)),
      onRerun ? h('span', { class: 'muted' }, ' Fix the cause, then re-run it with the same parameters.') : null) : null,
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

/** Starts a run again with the same parameters and opens the new run. */
async function rerun(run) {
  const started = await api.startRun(run.workflow, run.params || {});
  location.hash = link('runs', [started.id], { rerun_of: run.id });
}

async function renderDetail(main, id, route) {
  main.append(h('a', { class: 'back', href: link('runs') }, '← All runs'));
  const body = h('div', {}, loading('Loading run…'));
  const of = route.params.get('rerun_of');
  main.append(pageHeader('Workflow run', h('span', {}, h('span', { class: 'mono small' }, id),
    of ? h('span', { class: 'rerun-of' }, ' · re-run of ', h('a', { class: 'mono small', href: link('runs', [of]) }, of)) : null)), body);
  const params = h('div', {});
  main.append(params);
  api.run(id).then((run) => {
    replace(params, h('section', { class: 'panel' }, h('h2', {}, 'Parameters'),
      h('dl', { class: 'facts' }, Object.entries(run.params || {}).map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', { class: 'mono' }, JSON.stringify(v)))))));
  }).catch(() => {});
  return followRun(id, body, { onRerun: rerun });
}

export async function render(main, route) {
  if (route.args[0]) return renderDetail(main, route.args[0], route);
  const list = h('div', { class: 'run-list' }, loading('Loading runs…'));
  main.append(pageHeader('Runs', 'Import workflows and their progress. Failed runs can be started again with the same parameters.',
    (mayUploadSomewhere() ? h('a', { class: 'btn primary', href: link('upload') }, 'New Data Upload') : null)), list);
  let timer = null;
  let last = null;
  const load = async () => {
    try {
      const runs = await api.runs();
      const json = JSON.stringify(runs);
      if (json !== last) {
        last = json;
        replace(list, runs.length
          ? runs.map((run) => runView(run, { onRerun: rerun, detailed: true }))
          : emptyState('No workflow runs yet', 'Upload a zip of DICOM files in Data Upload and start an import: its progress shows here.',
            (mayUploadSomewhere() ? h('a', { class: 'btn primary', href: link('upload') }, 'Start a Data Upload') : null)));
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
