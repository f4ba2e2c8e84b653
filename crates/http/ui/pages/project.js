// One project's access (its managers and administrators): its members and their roles, and
// which DICOM senders may store into it.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, loading, confirmDialog } from '../dom.js';
import { link, navigate, refresh } from '../router.js';
import { session, loadSession, mayContribute, mayManage, ROLES } from '../session.js';

const ROLE_TEXT = {
  viewer: 'sees the series',
  contributor: 'also uploads and imports',
  manager: 'also manages members and DICOM rules',
};

function roleSelect(id, value) {
  return h('select', { id, name: 'role' },
    ROLES.map((r) => h('option', { value: r, title: ROLE_TEXT[r], selected: r === value ? true : null }, r)));
}

function membersPanel(project) {
  const list = h('div', { id: 'members-list' }, loading('Loading members…'));
  const status = h('p', { class: 'field-error', id: 'members-error', role: 'alert' });
  const saved = h('p', { class: 'hint', id: 'members-status', 'aria-live': 'polite' });
  const user = h('input', { id: 'member-user', name: 'user', type: 'text', required: true, autocomplete: 'off', list: 'member-user-options', placeholder: 'user name' });
  const options = h('datalist', { id: 'member-user-options' });
  const role = roleSelect('member-role', 'viewer');
  const add = h('button', { class: 'btn primary', type: 'submit', id: 'member-add' }, 'Add member');
  const form = h('form', { class: 'inline-form member-form', 'aria-label': 'Add a member' },
    h('div', { class: 'field member-user' }, h('label', { for: 'member-user' }, 'User'), user, options),
    h('div', { class: 'field' }, h('label', { for: 'member-role' }, 'Role'), role),
    add);

  // Administrators may list the accounts: offer their names.
  if (session.admin) {
    api.users().then((users) => replace(options, users.map((u) => h('option', { value: u.name })))).catch(() => {});
  }

  /** After a change to one's own membership, the session's roles change too. */
  const afterOwnChange = async (name) => {
    if (name !== session.user || session.admin) return false;
    await loadSession();
    if (!mayManage(project)) {
      refresh();
      return true;
    }
    return false;
  };

  async function load() {
    try {
      const members = await api.members(project);
      replace(list, members.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'members-table' },
          h('thead', {}, h('tr', {}, ['User', 'Role', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, members.map((m) => {
            const select = roleSelect(`role-${m.user}`, m.role);
            select.setAttribute('aria-label', `Role of ${m.user}`);
            select.dataset.member = m.user;
            select.addEventListener('change', async () => {
              status.textContent = '';
              saved.textContent = '';
              try {
                await api.setMember(project, m.user, select.value);
                saved.textContent = `${m.user} is now ${select.value} of ${project}.`;
                if (!(await afterOwnChange(m.user))) await load();
              } catch (e) {
                status.textContent = e.message;
                select.value = m.role;
              }
            });
            const remove = h('button', { class: 'btn small danger', type: 'button', dataset: { remove: m.user } }, 'Remove');
            remove.addEventListener('click', async () => {
              const own = m.user === session.user && !session.admin;
              if (!(await confirmDialog(`Remove ${m.user} from ${project}?`,
                own ? 'You are removing yourself: you will no longer see this project.' : `${m.user} no longer sees ${project}'s series (nor uploads into it), unless another project holds them.`,
                'Remove'))) return;
              status.textContent = '';
              try {
                await api.removeMember(project, m.user);
                saved.textContent = `${m.user} was removed from ${project}.`;
                if (!(await afterOwnChange(m.user))) await load();
              } catch (e) {
                status.textContent = e.message;
              }
            });
            return h('tr', { dataset: { member: m.user } },
              h('td', {}, h('strong', {}, m.user), m.user === session.user ? h('span', { class: 'muted small' }, ' (you)') : null),
              h('td', {}, select),
              h('td', { class: 'actions' }, remove));
          }))))
        : h('p', { class: 'muted', id: 'members-empty' }, session.admin
          ? 'No members yet: only administrators see this project.'
          : 'No members.'));
    } catch (e) {
      replace(list, errorBox(e, load));
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.textContent = '';
    saved.textContent = '';
    const name = user.value.trim();
    if (!name) {
      status.textContent = 'Name the account to add.';
      user.focus();
      return;
    }
    add.disabled = true;
    try {
      await api.setMember(project, name, role.value);
      saved.textContent = `${name} is now ${role.value} of ${project}.`;
      user.value = '';
      await load();
      const tr = list.querySelector(`tr[data-member="${CSS.escape(name)}"]`);
      if (tr) tr.classList.add('flash');
    } catch (err) {
      status.textContent = err.status === 404 ? `No account ${name} (${err.message}).` : err.message;
      user.focus();
    } finally {
      add.disabled = false;
    }
  });

  load();
  return h('section', { class: 'panel', 'aria-labelledby': 'h-members', id: 'members' },
    h('h2', { id: 'h-members' }, 'Members'),
    h('p', { class: 'hint' }, 'Viewers see the project\'s series; contributors also upload and import into it; managers also manage its members and DICOM senders. Administrators may do everything without being members.'),
    list, h('h3', { class: 'subhead' }, 'Add a member'), form, status, saved);
}

/** Lines of a textarea, trimmed, without empty ones. */
const lines = (text) => text.split(/[\n,]/).map((l) => l.trim()).filter(Boolean);

function dicomRulesPanel(project) {
  const titles = h('textarea', { id: 'rules-ae-titles', name: 'calling_ae_titles', rows: '5', spellcheck: 'false', 'aria-describedby': 'rules-ae-hint', placeholder: 'anyone' });
  const networks = h('textarea', { id: 'rules-networks', name: 'networks', rows: '5', spellcheck: 'false', 'aria-describedby': 'rules-net-hint', placeholder: 'anyone' });
  const error = h('p', { class: 'field-error', id: 'rules-error', role: 'alert' });
  const saved = h('p', { class: 'hint', id: 'rules-status', 'aria-live': 'polite' });
  const summary = h('p', { class: 'rules-summary', id: 'rules-summary' });
  const save = h('button', { class: 'btn primary', type: 'submit', id: 'rules-save' }, 'Save DICOM rules');
  const body = h('div', {}, loading('Loading DICOM rules…'));

  const describe = (rules) => {
    const t = rules.calling_ae_titles;
    const n = rules.networks;
    summary.textContent = !t.length && !n.length
      ? `Any sender may store into ${project} (no rules).`
      : `Only ${t.length ? `calling AE titles ${t.join(', ')}` : 'any calling AE title'}, from ${n.length ? n.join(', ') : 'any address'}, may store into ${project}.`;
  };
  const show = (rules) => {
    titles.value = rules.calling_ae_titles.join('\n');
    networks.value = rules.networks.join('\n');
    describe(rules);
  };

  const form = h('form', { class: 'rules-form', 'aria-label': 'DICOM senders' },
    summary,
    h('div', { class: 'rules-grid' },
      h('div', { class: 'field' },
        h('label', { for: 'rules-ae-titles' }, 'Calling AE titles (one per line)'), titles,
        h('p', { class: 'hint', id: 'rules-ae-hint' }, 'The sender\'s own AE title (dcmsend -aet), 1 to 16 characters. Empty: any AE title.')),
      h('div', { class: 'field' },
        h('label', { for: 'rules-networks' }, 'Networks (one per line)'), networks,
        h('p', { class: 'hint', id: 'rules-net-hint' }, 'CIDR (10.20.0.0/16, 2001:db8::/32) or single addresses. Empty: any address.'))),
    error,
    h('div', { class: 'form-actions' }, save, saved));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    saved.textContent = '';
    titles.removeAttribute('aria-invalid');
    networks.removeAttribute('aria-invalid');
    save.disabled = true;
    try {
      const stored = await api.setDicomRules(project, { calling_ae_titles: lines(titles.value), networks: lines(networks.value) });
      show(stored);
      saved.textContent = 'Saved. New associations are checked against these rules.';
    } catch (err) {
      error.textContent = err.message;
      const field = /network|address|cidr|prefix/i.test(err.message) ? networks : titles;
      field.setAttribute('aria-invalid', 'true');
      field.focus();
    } finally {
      save.disabled = false;
    }
  });

  async function load() {
    try {
      show(await api.dicomRules(project));
      replace(body, form);
    } catch (e) {
      replace(body, errorBox(e, load));
    }
  }
  load();
  return h('section', { class: 'panel', 'aria-labelledby': 'h-rules', id: 'dicom-rules' },
    h('h2', { id: 'h-rules' }, 'DICOM senders'),
    h('p', { class: 'hint' }, `Which DICOM senders may store into ${project} (called AE title kp-${project}). An empty list allows anyone for its part: a project without rules takes instances from any sender. A sender outside the rules is refused (A-ASSOCIATE-RJ) and the refusal is in the audit trail.`),
    body);
}

export async function render(main, route) {
  const project = (route.args[0] || '').toLowerCase();
  if (!project) {
    navigate('#/projects');
    return;
  }
  document.title = `${project} · radport`;
  const manage = mayManage(project);
  main.append(
    h('a', { class: 'back', href: '#/projects' }, '← Projects'),
    pageHeader(`Project ${project}`, manage ? 'Who may see and change this project, and which DICOM senders may store into it.' : null,
      h('a', { class: 'btn', href: link('gallery', [], { project }) }, 'Gallery'),
      mayContribute(project) ? h('a', { class: 'btn', href: link('upload', [], { project }) }, 'Upload') : null));
  if (!manage) {
    main.append(h('p', { class: 'notice info', id: 'not-manager' }, h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, 'i'),
      h('span', {}, `Only ${project}'s managers and administrators see its members and DICOM senders.`)));
    return;
  }
  main.append(h('div', { class: 'access-layout' }, membersPanel(project), dicomRulesPanel(project)));
}
