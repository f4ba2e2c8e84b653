// Erasing series, studies and patients; copying, moving and taking series out of projects;
// deleting a project with its unshared series. Used by the series page and the projects page.
// What a caller may not do is not offered (the server's guard decides anyway; a refusal is
// shown in the dialog).
import { api } from '../api.js';
import { h, replace, actionDialog, setFlash, plural, formatSize, loading } from '../dom.js';
import { session, roleIn, mayContribute, mayManage } from '../session.js';

const ADMIN = 'admin';
const lower = (p) => String(p).toLowerCase();

/** What an erasure answer says: `Erased 1 series, 12 instances, 1 study, 1 patient.` */
export function erasureText(e) {
  const parts = [plural(e.series.length, 'series', 'series'), plural(e.instances, 'instance')];
  if (e.studies) parts.push(plural(e.studies, 'study', 'studies'));
  if (e.patients) parts.push(plural(e.patients, 'patient'));
  let text = `Erased ${parts.join(', ')}.`;
  if (e.objects_failed) {
    text += ` ${plural(e.objects_failed, 'stored file')} could not be deleted yet: the collector removes ${e.objects_failed === 1 ? 'it' : 'them'} at its next pass.`;
  }
  return text;
}

/** The series' projects other than `admin`. */
const ownProjects = (detail) => detail.projects.filter((p) => lower(p) !== ADMIN);

/**
 * Whether the caller may erase the series: administrators, or who manages every project
 * holding it (`admin` aside; a series only in `admin` is for administrators).
 */
export function mayErase(detail) {
  if (session.admin) return true;
  const own = ownProjects(detail);
  return own.length > 0 && own.every(mayManage);
}

/** Whether the caller may take the series out of `project` (its managers; never `admin`). */
export const mayTakeOut = (project) => lower(project) !== ADMIN && mayManage(project);

/** Projects the series may be copied from (viewed by the caller) and moved from (managed). */
const copySources = (detail) => [...ownProjects(detail), ...detail.projects.filter((p) => lower(p) === ADMIN)]
  .filter((p) => roleIn(p) !== null && (lower(p) !== ADMIN || session.admin));
const moveSources = (detail) => ownProjects(detail).filter(mayManage);

/** Projects the caller contributes to that do not hold the series yet (never `admin`). */
function targets(detail, known) {
  const holding = new Set(detail.projects.map(lower));
  return known.filter((p) => lower(p) !== ADMIN && !holding.has(lower(p)) && mayContribute(p));
}

/** The names of the projects the caller knows: every project for administrators. */
async function knownProjects() {
  if (!session.admin) return (session.projects || []).map((p) => p.project);
  try {
    return (await api.projects()).map((p) => p.name);
  } catch {
    return [];
  }
}

/**
 * The series of a Patient ID that the caller's gallery knows, by UID: `{series, study_uid,
 * instances, projects}` (`projects`: those of the caller's projects that list it). An
 * administrator asks `admin`, which holds every series.
 */
async function knownSeriesOfPatient(patientId) {
  const found = new Map();
  const projects = session.admin ? [ADMIN] : (session.projects || []).map((p) => p.project);
  await Promise.all(projects.map(async (project) => {
    const page = await api.series(project, { patient_id: patientId, limit: 1000 });
    for (const s of page.items) {
      if (!found.has(s.series_instance_uid)) found.set(s.series_instance_uid, { series: s, projects: new Set() });
      found.get(s.series_instance_uid).projects.add(lower(project));
    }
  }));
  return [...found.values()];
}

/** Of `known` series, the projects (of the caller's) whose managers alone may erase them. */
function unmanaged(known) {
  if (session.admin) return [];
  const out = new Set();
  for (const k of known) for (const p of k.projects) if (p !== ADMIN && !mayManage(p)) out.add(p);
  return [...out].sort();
}

const undoable = () => h('p', { class: 'irreversible' }, h('strong', {}, 'This cannot be undone.'));

function seriesWord(n) {
  return plural(n, 'series', 'series');
}

/** "Delete series": the dialog names what goes; afterwards, to `back` with what went. */
function deleteSeriesDialog(uid, detail, title, back) {
  const s = detail.series;
  const elsewhere = ownProjects(detail);
  return actionDialog({
    id: 'erase-dialog',
    title: `Delete the series “${title}”?`,
    confirmLabel: 'Delete series',
    body: [
      h('p', {}, elsewhere.length
        ? `It is erased from radport, from ${elsewhere.length === 1 ? 'project' : 'projects'} ${elsewhere.join(', ')} and from admin:`
        : 'It is erased from radport (it is only in admin):'),
      h('ul', { class: 'erase-list' },
        h('li', {}, `${plural(s.instance_count, 'instance')} (${formatSize(s.total_size)}), their stored files`),
        h('li', {}, 'its thumbnail'),
        h('li', {}, 'its validation report and findings'),
        h('li', {}, 'its datasets and places in projects'),
        h('li', {}, 'its study and patient, if nothing else is left of them')),
      undoable(),
    ],
    action: () => api.eraseSeries(uid),
  }).then((erased) => {
    if (!erased) return;
    setFlash(`Series “${title}” deleted. ${erasureText(erased)}`);
    location.hash = back;
  });
}

/** A summary of known series: "3 series (42 instances) in 2 studies". */
function knownSummary(known, { studies = true } = {}) {
  const instances = known.reduce((n, k) => n + (k.series.instance_count || 0), 0);
  const studyCount = new Set(known.map((k) => k.series.study_instance_uid)).size;
  return `${seriesWord(known.length)} (${plural(instances, 'instance')})${studies ? ` in ${plural(studyCount, 'study', 'studies')}` : ''}`;
}

/**
 * "Delete study" / "Delete patient": the dialog counts the series of it that the caller's
 * gallery knows, and says that every series of it goes, also those the caller does not see.
 */
function deleteGroupDialog(kind, detail, back) {
  const s = detail.series;
  const patientId = s.patient_id;
  const study = kind === 'study';
  const counted = h('div', { id: 'erase-count' }, loading('Counting the series you can see…'));
  const who = study
    ? `the study “${s.study_description || s.study_instance_uid}”`
    : `patient ${s.patient_name || 'without a name'} (Patient ID ${patientId})`;
  return actionDialog({
    id: 'erase-dialog',
    title: study ? 'Delete every series of this study?' : 'Delete every series of this patient?',
    confirmLabel: study ? 'Delete study' : 'Delete patient',
    body: [
      h('p', {}, study
        ? `Every series of ${who} is erased, in every project (also those you do not see), with its instances, stored files, thumbnails and reports; the study goes, and its patient if nothing else is left of them.`
        : `Every series of Patient ID ${patientId}, in every project (also those you do not see), is erased with its instances, stored files, thumbnails and reports; its studies and the patient go.`),
      counted,
      undoable(),
    ],
    setup: async ({ ok, error }) => {
      if (!patientId) {
        replace(counted, h('p', {}, 'How many series it has cannot be counted here (the series has no Patient ID).'));
        return;
      }
      try {
        let known = await knownSeriesOfPatient(patientId);
        if (study) known = known.filter((k) => k.series.study_instance_uid === s.study_instance_uid);
        replace(counted, h('p', {}, h('strong', {}, `You see ${knownSummary(known, { studies: !study })}`),
          study ? ' of this study.' : ` of ${who}.`));
        const blocked = unmanaged(known);
        if (blocked.length) {
          ok.disabled = true;
          error.textContent = `You cannot delete it: some of its series are in ${blocked.join(', ')}, which you do not manage.`;
        }
      } catch (e) {
        replace(counted, h('p', {}, `The series cannot be counted (${e.message}).`));
      }
    },
    action: () => (study ? api.eraseStudy(s.study_instance_uid) : api.erasePatient(patientId)),
  }).then((erased) => {
    if (!erased) return;
    setFlash(`${study ? 'Study' : 'Patient'} deleted. ${erasureText(erased)}`);
    location.hash = back;
  });
}

/**
 * "Copy to project…" / "Move to project…": the source (projects holding the series that the
 * caller may copy or move from), the target (projects the caller contributes to that do not
 * hold it), an optional dataset name. Resolves with a sentence saying what was done, or null.
 */
function placeDialog(uid, detail, mode, sources, known) {
  const move = mode === 'move';
  const from = h('select', { id: 'place-from', name: 'from' }, sources.map((p) => h('option', { value: p }, p)));
  const to = h('select', { id: 'place-to', name: 'to', required: true });
  const dataset = h('input', { id: 'place-dataset', name: 'dataset', type: 'text', autocomplete: 'off', placeholder: 'its datasets in the source' });
  const datasetsOf = (p) => (detail.dataset_memberships || []).filter((m) => lower(m.project) === lower(p)).map((m) => m.dataset);
  const datasetHint = h('p', { class: 'hint', id: 'place-dataset-hint' });
  const fill = () => {
    const choices = targets(detail, known).filter((p) => lower(p) !== lower(from.value));
    replace(to, choices.map((p) => h('option', { value: p }, p)));
    const names = datasetsOf(from.value);
    datasetHint.textContent = `Empty: the series keeps its dataset${names.length === 1 ? '' : 's'} in ${from.value}${names.length ? ` (${names.join(', ')})` : ''}. A new name makes a dataset.`;
  };
  from.addEventListener('change', fill);
  fill();
  const field = (label, control, extra) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control, extra || null);
  return actionDialog({
    id: 'place-dialog',
    title: move ? 'Move the series to another project' : 'Copy the series to another project',
    confirmLabel: move ? 'Move' : 'Copy',
    danger: false,
    body: [
      h('p', {}, move
        ? 'The series leaves the source project and goes into the target. Nothing is copied in the archive.'
        : 'The series stays where it is and is in the target project too. Nothing is copied in the archive.'),
      field(move ? 'From project' : 'From project (its datasets)', from),
      field('To project', to),
      field('Dataset (optional)', dataset, datasetHint),
    ],
    action: async () => {
      if (!to.value) throw new Error('Choose a target project.');
      const place = { from: from.value, to: to.value };
      if (dataset.value.trim()) place.dataset = dataset.value.trim();
      await (move ? api.moveSeries(uid, place) : api.copySeries(uid, place));
      return `${move ? 'Moved' : 'Copied'} from ${place.from} to ${place.to}${place.dataset ? ` (dataset ${place.dataset})` : ''}.`;
    },
  });
}

/**
 * Taking the series out of `project` (its managers). Resolves with a sentence, or null.
 */
export function takeOutDialog(uid, detail, project) {
  const others = ownProjects(detail).filter((p) => lower(p) !== lower(project));
  return actionDialog({
    id: 'take-out-dialog',
    title: `Take the series out of ${project}?`,
    confirmLabel: 'Take out',
    body: [
      h('p', {}, 'Nothing is erased: ', others.length
        ? `the series stays in ${others.join(', ')} and in admin.`
        : 'the series stays in admin, where only administrators see it.'),
      h('p', {}, `Members of ${project} who see it through ${project} alone no longer see it.`),
    ],
    action: async () => {
      await api.removeFromProject(project, uid);
      return `Taken out of ${project}.`;
    },
  });
}

/**
 * The series page's controls: copy and move (to the projects the caller contributes to), and
 * delete series, study and patient. `done(message)`: after a copy or move (the page shows the
 * new projects). `back`: where to go after an erasure. Null when the caller may do none of it.
 */
export async function manageControls(uid, detail, title, { back, done }) {
  const known = await knownProjects();
  const copyFrom = copySources(detail);
  const moveFrom = moveSources(detail);
  const anyTarget = (sources) => sources.some((src) => targets(detail, known).some((t) => lower(t) !== lower(src)));
  const button = (id, text, onclick, danger) => h('button', { class: ['btn', 'small', danger ? 'danger' : null], type: 'button', id, onclick }, text);
  const place = (mode, sources) => async () => {
    const message = await placeDialog(uid, detail, mode, sources, known);
    if (message) done(message);
  };
  const moving = [
    anyTarget(copyFrom) ? button('copy-series', 'Copy to project…', place('copy', copyFrom)) : null,
    anyTarget(moveFrom) ? button('move-series', 'Move to project…', place('move', moveFrom)) : null,
  ].filter(Boolean);
  const s = detail.series;
  const erasing = mayErase(detail) ? [
    button('delete-series', 'Delete series', () => deleteSeriesDialog(uid, detail, title, back), true),
    s.study_instance_uid ? button('delete-study', 'Delete study', () => deleteGroupDialog('study', detail, back), true) : null,
    s.patient_id ? button('delete-patient', 'Delete patient', () => deleteGroupDialog('patient', detail, back), true) : null,
  ].filter(Boolean) : [];
  if (!moving.length && !erasing.length) return null;
  return h('section', { class: 'panel manage', 'aria-labelledby': 'h-manage', id: 'manage' },
    h('h2', { id: 'h-manage' }, 'Manage'),
    moving.length ? h('div', { class: 'manage-row' }, h('span', { class: 'manage-label' }, 'Projects'), moving) : null,
    erasing.length ? h('div', { class: 'manage-row' }, h('span', { class: 'manage-label' }, 'Erase'), erasing) : null,
    erasing.length ? h('p', { class: 'hint' }, 'Deleting erases from every project: instances, stored files, thumbnail, report. It cannot be undone.') : null);
}

/**
 * Deleting a project (administrators): the dialog counts the series only this project holds
 * and offers to erase them with it (unchecked). Resolves with a sentence saying what went, or
 * null.
 */
export function deleteProjectDialog(project) {
  const erase = h('input', { type: 'checkbox', id: 'erase-unshared', name: 'erase_unshared_series' });
  const choice = h('div', { id: 'unshared-choice' }, loading('Counting the series only this project holds…'));
  let unshared = 0;
  return actionDialog({
    id: 'delete-project-dialog',
    title: `Delete project ${project}?`,
    confirmLabel: 'Delete project',
    body: [
      h('p', {}, `Its datasets go, and its series leave it: they stay in admin and in their other projects.`),
      choice,
    ],
    setup: async () => {
      try {
        unshared = await api.unsharedSeries(project);
        replace(choice, unshared > 0
          ? h('div', { class: 'field checkbox-line' },
            h('label', { for: 'erase-unshared' }, erase, ` Also erase the ${seriesWord(unshared)} no other project holds`),
            h('p', { class: 'hint' }, 'Their instances, stored files, thumbnails and reports are erased. This cannot be undone.'))
          : h('p', { class: 'hint', id: 'no-unshared' }, 'Every series of it is in another project too: none would be left only in admin.'));
      } catch (e) {
        replace(choice, h('p', { class: 'hint' }, `The series only this project holds cannot be counted (${e.message}).`));
      }
    },
    action: async () => {
      const erased = await api.deleteProject(project, erase.checked);
      const what = erased && erased.series.length ? erasureText(erased) : (unshared ? `Its ${seriesWord(unshared)} stay in admin.` : '');
      return `Project ${project} deleted. ${what}`.trim();
    },
  });
}
