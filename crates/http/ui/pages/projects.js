// Projects and their datasets; create a project.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, formatTime, timeAgo, plural } from '../dom.js';
import { link } from '../router.js';
import { session, mayContribute, mayManage } from '../session.js';
import { AE_NAME_LIMIT, cutByAeTitle } from './upload.js';

function datasetsTable(project, body) {
  api.datasets(project.name).then((items) => {
    replace(body, items.length
      ? h('table', { class: 'table compact' },
        h('thead', {}, h('tr', {}, ['Dataset', 'Series', 'Last arrival', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, items.map((d) => h('tr', {},
          h('td', {}, h('a', { href: link('gallery', [], { project: project.name, dataset: d.name }) }, d.name)),
          h('td', {}, String(d.series_count)),
          h('td', { title: d.last_arrival ? formatTime(d.last_arrival) : '' }, d.last_arrival ? timeAgo(d.last_arrival) : 'never'),
          h('td', { class: 'right' }, mayContribute(project.name) ? h('a', { class: 'btn small', href: link('upload', [], { project: project.name, dataset: d.name }) }, 'Add data') : null)))))
      : h('p', { class: 'muted' }, 'No datasets yet. A dataset is created by the first upload into it.'));
  }).catch((e) => replace(body, errorBox(e, () => datasetsTable(project, body))));
}

function projectCard(project) {
  const datasets = h('div', {}, loading('Loading datasets…'));
  const card = h('article', { class: 'panel project', dataset: { project: project.name } },
    h('div', { class: 'project-head' },
      h('div', {},
        h('h2', {}, h('a', { href: link('gallery', [], { project: project.name }) }, project.name)),
        h('p', { class: 'muted' }, `${plural(project.series_count, 'series', 'series')} · ${plural(project.dataset_count, 'dataset')} · created ${formatTime(project.created_at)}`,
          project.name === 'admin' ? ' · sees every series' : ''),
        project.dicom_addressable === false
          ? h('p', { class: 'hint warning not-dicom-addressable' }, `DICOM senders cannot reach this project: kp-${project.name} is longer than an AE title's 16 characters. Upload into it from the browser or with radport upload.`)
          : null),
      h('div', { class: 'page-actions' },
        h('a', { class: 'btn', href: link('gallery', [], { project: project.name }) }, 'Gallery'),
        mayContribute(project.name) ? h('a', { class: 'btn', href: link('upload', [], { project: project.name }) }, 'Upload') : null,
        mayManage(project.name) ? h('a', { class: 'btn', href: link('project', [project.name]), dataset: { access: project.name } }, 'Members & DICOM rules') : null)),
    datasets);
  datasetsTable(project, datasets);
  return card;
}

export async function render(main) {
  const name = h('input', { id: 'project-name', name: 'name', type: 'text', required: true, autocomplete: 'off', placeholder: 'e.g. brain-study', 'aria-describedby': 'project-hint project-error' });
  const error = h('p', { class: 'field-error', id: 'project-error', role: 'alert' });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'create-project' }, 'Create project');
  const list = h('div', { class: 'project-list' }, loading('Loading projects…'));
  const hint = h('p', { class: 'hint', id: 'project-hint' });
  const updateHint = () => {
    const value = name.value.trim();
    const tooLong = value.length > AE_NAME_LIMIT;
    hint.textContent = tooLong
      ? `kp-${value} has ${value.length + 3} characters, more than an AE title's 16: DICOM senders could not reach this project (dcmsend would call kp-${cutByAeTitle(value)}). Keep it to ${AE_NAME_LIMIT} characters, or upload into it from the browser only.`
      : `Senders address a project by its AE title: kp-<name> as the called AE title (names of up to ${AE_NAME_LIMIT} characters).`;
    hint.classList.toggle('warning', tooLong);
  };
  name.addEventListener('input', updateHint);
  updateHint();

  async function load() {
    try {
      const projects = await api.projects();
      replace(list, projects.length
        ? projects.map(projectCard)
        : emptyState('No projects', 'Create a project above to start.'));
    } catch (e) {
      replace(list, errorBox(e, load));
    }
  }

  const form = h('form', { class: 'panel create-form', 'aria-labelledby': 'h-create' },
    h('h2', { id: 'h-create' }, 'New project'),
    h('div', { class: 'inline-form' },
      h('div', { class: 'field grow' },
        h('label', { for: 'project-name' }, 'Name'),
        name,
        hint),
      submit),
    error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    name.removeAttribute('aria-invalid');
    submit.disabled = true;
    try {
      const created = await api.createProject(name.value.trim());
      name.value = '';
      await load();
      const card = list.querySelector(`[data-project="${CSS.escape(created.name)}"]`);
      if (card) { card.classList.add('flash'); card.querySelector('a').focus(); }
    } catch (err) {
      error.textContent = err.status === 409 ? `A project with this name exists already (${err.message}).` : err.message;
      name.setAttribute('aria-invalid', 'true');
      name.focus();
    } finally {
      submit.disabled = false;
    }
  });

  // Only administrators create projects: the form is not shown to anyone else.
  main.append(pageHeader('Projects', 'A project groups the series of a study or a team; admin sees all of them. Datasets group the series of one upload or sender.'),
    ...[session.admin ? form : null, list].filter(Boolean));
  await load();
}
