// Accounts (administrators): list, create (the drawn password shown once), disable and enable,
// reset the password (shown once), grant and withdraw administration.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, formatTime, confirmDialog, secretBox } from '../dom.js';
import { link } from '../router.js';
import { session } from '../session.js';

export async function render(main) {
  if (!session.admin) {
    main.append(emptyState('Only administrators manage accounts',
      'Ask an administrator of this radport to create or change an account.',
      h('a', { class: 'btn', href: '#/gallery' }, 'Open the gallery')));
    return;
  }
  const name = h('input', { id: 'user-name-new', name: 'name', type: 'text', required: true, autocomplete: 'off', placeholder: 'e.g. alice', 'aria-describedby': 'user-hint user-error' });
  const admin = h('input', { id: 'user-admin-new', name: 'admin', type: 'checkbox' });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'create-user' }, 'Create account');
  const error = h('p', { class: 'field-error', id: 'user-error', role: 'alert' });
  const shown = h('div', { id: 'user-secret' });
  const list = h('div', { id: 'user-list' }, loading('Loading accounts…'));

  const form = h('form', { class: 'panel create-form', 'aria-labelledby': 'h-new-user' },
    h('h2', { id: 'h-new-user' }, 'New account'),
    h('div', { class: 'inline-form' },
      h('div', { class: 'field grow' },
        h('label', { for: 'user-name-new' }, 'User name'), name,
        h('p', { class: 'hint', id: 'user-hint' }, 'Letters, digits, dot, underscore and hyphen. A password is drawn for the account, shown here once; it is changed at the first sign-in.')),
      h('div', { class: 'field checkbox-field' }, h('label', { for: 'user-admin-new' }, admin, ' Administrator')),
      submit),
    error);

  /** Shows a drawn password once, above the list. */
  const showPassword = (user, password, what) => {
    replace(shown, secretBox(`${what} for ${user}:`, password,
      `Give it to ${user} in person or over a channel you trust; it is not shown again. ${user} chooses a new one at the next sign-in.`, 'user-password'));
    shown.scrollIntoView({ block: 'nearest' });
  };

  async function act(user, change, question, text, label) {
    if (question && !(await confirmDialog(question, text, label))) return;
    try {
      const result = await api.updateUser(user.name, change);
      if (result && result.password) showPassword(user.name, result.password, 'New password');
      else replace(shown);
      await load();
    } catch (e) {
      replace(shown, errorBox(e));
    }
  }

  function row(user) {
    const self = user.name === session.user;
    const actions = [
      h('button', {
        class: 'btn small', type: 'button', dataset: { action: 'reset' },
        onclick: () => act(user, { reset_password: true }, `Draw a new password for ${user.name}?`,
          `The current password stops working; the new one is shown here once and must be changed at the next sign-in.`, 'Reset password'),
      }, 'Reset password'),
      self ? null : h('button', {
        class: ['btn small', user.disabled ? null : 'danger'], type: 'button', dataset: { action: user.disabled ? 'enable' : 'disable' },
        onclick: () => (user.disabled
          ? act(user, { disabled: false })
          : act(user, { disabled: true }, `Disable ${user.name}?`, `${user.name} can no longer sign in, and the account's tokens stop working, until it is enabled again.`, 'Disable')),
      }, user.disabled ? 'Enable' : 'Disable'),
      self ? null : h('button', {
        class: 'btn small', type: 'button', dataset: { action: user.admin ? 'unadmin' : 'admin' },
        onclick: () => (user.admin
          ? act(user, { admin: false }, `Withdraw administration from ${user.name}?`, `${user.name} keeps the project roles the account has.`, 'Withdraw')
          : act(user, { admin: true }, `Make ${user.name} an administrator?`, 'Administrators may do everything: every project, every account, the audit trail.', 'Make administrator')),
      }, user.admin ? 'Remove admin' : 'Make admin'),
    ];
    return h('tr', { dataset: { user: user.name }, class: user.disabled ? 'disabled' : null },
      h('td', {}, h('strong', {}, user.name), self ? h('span', { class: 'muted small' }, ' (you)') : null),
      h('td', {}, user.admin ? badge('admin', 'info') : h('span', { class: 'muted' }, '—')),
      h('td', {}, user.disabled ? badge('disabled', 'error') : badge('active', 'ok')),
      h('td', {}, user.must_change_password ? badge('must change', 'warning') : h('span', { class: 'muted' }, '—')),
      h('td', {}, user.projects.length
        ? h('span', { class: 'chips' }, user.projects.map((p) => h('a', { class: 'chip', href: link('project', [p.project]), title: `${p.role} in ${p.project}` }, `${p.project}: ${p.role}`)))
        : h('span', { class: 'muted' }, 'none')),
      h('td', { title: user.created_at }, formatTime(user.created_at)),
      h('td', { class: 'actions' }, actions));
  }

  async function load() {
    try {
      const users = await api.users();
      replace(list, users.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'users-table' },
          h('thead', {}, h('tr', {}, ['Name', 'Admin', 'State', 'Password', 'Projects', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, users.map(row))))
        : emptyState('No accounts', 'Create the first one above.'));
    } catch (e) {
      replace(list, errorBox(e, load));
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    name.removeAttribute('aria-invalid');
    submit.disabled = true;
    try {
      const created = await api.createUser(name.value.trim(), admin.checked);
      name.value = '';
      admin.checked = false;
      if (created.password) showPassword(created.user.name, created.password, 'Password');
      await load();
      const tr = list.querySelector(`tr[data-user="${CSS.escape(created.user.name)}"]`);
      if (tr) tr.classList.add('flash');
    } catch (err) {
      error.textContent = err.status === 409 ? `An account with this name exists already (${err.message}).` : err.message;
      name.setAttribute('aria-invalid', 'true');
      name.focus();
    } finally {
      submit.disabled = false;
    }
  });

  main.append(pageHeader('Users', 'Accounts of this radport. Roles in a project are given on its page (Projects ▸ Members & DICOM rules).'),
    form, shown, list);
  await load();
}
