// The caller's API tokens (every signed-in user): list, make one (the secret shown once),
// revoke; and the web sessions, which are tokens too.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, formatTime, timeAgo, confirmDialog, secretBox } from '../dom.js';
import { session, enforced, highestRole, ROLES } from '../session.js';

/** What the sign-in makes for a browser (radport_access::SESSION_TOKEN_NAME). */
const WEB_SESSION = 'web session';

function stateOf(token) {
  if (token.revoked_at) return ['revoked', 'muted'];
  if (token.expires_at && new Date(token.expires_at).getTime() <= Date.now()) return ['expired', 'muted'];
  return ['active', 'ok'];
}
const active = (token) => stateOf(token)[0] === 'active';

/** A sign-in's token: its name, no limits, and 12 hours to live. */
function isWebSession(t) {
  if (t.name !== WEB_SESSION || t.role || t.projects || !t.expires_at) return false;
  const lifetime = new Date(t.expires_at).getTime() - new Date(t.created_at).getTime();
  return Math.abs(lifetime - 12 * 3600 * 1000) < 5 * 60 * 1000;
}

export async function render(main) {
  if (!enforced() || !session.signed_in) {
    main.append(pageHeader('My tokens'), emptyState('Tokens belong to accounts',
      enforced() ? 'Sign in to make and revoke your tokens.' : 'With open access (--access open) there are no accounts: scripts need no token.'));
    return;
  }
  const top = highestRole();
  // Projects a token may be limited to: the caller's (administrators: every project).
  const projectBox = h('div', { class: 'checks', id: 'token-projects' }, loading('Loading projects…'));
  const projectsOf = session.admin
    ? api.projects().then((ps) => ps.map((p) => p.name))
    : Promise.resolve((session.projects || []).map((p) => p.project));
  projectsOf.then((names) => replace(projectBox, names.length
    ? names.map((n) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'project', value: n }), ' ', n))
    : h('span', { class: 'muted' }, 'You are a member of no project.')))
    .catch((e) => replace(projectBox, errorBox(e)));

  const name = h('input', { id: 'token-name', name: 'name', type: 'text', required: true, autocomplete: 'off', placeholder: 'e.g. CI import script' });
  const role = h('select', { id: 'token-role', name: 'role' },
    h('option', { value: '' }, session.admin ? 'as I am (administrator)' : 'my own roles'),
    ROLES.slice(0, ROLES.indexOf(top) + 1).map((r) => h('option', { value: r }, `at most ${r}`)));
  const days = h('input', { id: 'token-days', name: 'expires_in_days', type: 'number', min: '1', max: '3650', value: '90', inputmode: 'numeric' });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'token-create' }, 'Create token');
  const error = h('p', { class: 'field-error', id: 'token-error', role: 'alert' });
  const shown = h('div', { id: 'token-shown' });
  const list = h('div', { id: 'token-list' }, loading('Loading tokens…'));
  const sessions = h('div', { id: 'session-list' });

  const form = h('form', { class: 'panel create-form', 'aria-labelledby': 'h-new-token' },
    h('h2', { id: 'h-new-token' }, 'New token'),
    h('div', { class: 'token-grid' },
      h('div', { class: 'field' }, h('label', { for: 'token-name' }, 'Name'), name,
        h('p', { class: 'hint' }, 'What it is for, to recognise it later.')),
      h('div', { class: 'field' }, h('label', { for: 'token-role' }, 'Role'), role,
        h('p', { class: 'hint' }, 'Never more than you have in a project.')),
      h('div', { class: 'field' }, h('label', { for: 'token-days' }, 'Expires in (days)'), days,
        h('p', { class: 'hint' }, '1 to 3650; empty: never.'))),
    h('fieldset', { class: 'field' }, h('legend', {}, 'Projects'), projectBox,
      h('p', { class: 'hint' }, 'None ticked: every project of yours, also ones you join later.')),
    error, h('div', { class: 'form-actions' }, submit));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const body = { name: name.value.trim() };
    if (role.value) body.role = role.value;
    const projects = [...projectBox.querySelectorAll('input[name=project]:checked')].map((c) => c.value);
    if (projects.length) body.projects = projects;
    if (days.value.trim()) body.expires_in_days = Number(days.value);
    submit.disabled = true;
    try {
      const made = await api.createToken(body);
      replace(shown, secretBox(`Token “${made.info.name}”:`, made.token,
        'Copy it now: radport keeps only a hash of it and cannot show it again. Send it as "Authorization: Bearer <token>" (or radport --token).', 'token-secret'));
      name.value = '';
      for (const c of projectBox.querySelectorAll('input[name=project]')) c.checked = false;
      await load();
      shown.scrollIntoView({ block: 'nearest' });
    } catch (err) {
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });

  async function revoke(token, question, text) {
    if (!(await confirmDialog(question, text, 'Revoke'))) return;
    try {
      await api.revokeToken(token.id);
      await load();
    } catch (e) {
      replace(shown, errorBox(e));
    }
  }

  function tokenRow(t) {
    const [state, kind] = stateOf(t);
    return h('tr', { dataset: { token: t.id, name: t.name }, class: state === 'active' ? null : 'inactive' },
      h('td', {}, h('strong', {}, t.name)),
      h('td', {}, t.role || h('span', { class: 'muted' }, 'own roles')),
      h('td', {}, t.projects ? h('span', { class: 'chips' }, t.projects.map((p) => h('span', { class: 'chip' }, p))) : h('span', { class: 'muted' }, 'all of mine')),
      h('td', { title: t.created_at }, formatTime(t.created_at)),
      h('td', { title: t.expires_at || '' }, t.expires_at ? formatTime(t.expires_at) : 'never'),
      h('td', { title: t.last_used_at || '' }, t.last_used_at ? timeAgo(t.last_used_at) : 'never'),
      h('td', {}, badge(state, kind)),
      h('td', { class: 'actions' }, state === 'active'
        ? h('button', {
          class: 'btn small danger', type: 'button', dataset: { revoke: t.id },
          onclick: () => revoke(t, `Revoke “${t.name}”?`, 'Whatever uses it is refused from now on. This cannot be undone; make a new token instead.'),
        }, 'Revoke')
        : null));
  }

  async function load() {
    try {
      const tokens = await api.tokens();
      const own = tokens.filter((t) => !isWebSession(t));
      const webSessions = tokens.filter((t) => isWebSession(t) && active(t));
      replace(list, own.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'tokens-table' },
          h('thead', {}, h('tr', {}, ['Name', 'Role', 'Projects', 'Created', 'Expires', 'Last used', 'State', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, own.map(tokenRow))))
        : h('p', { class: 'muted', id: 'tokens-empty' }, 'No tokens yet. Make one above for a script or for the radport command line (or use radport login).'));
      replace(sessions, webSessions.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'table compact', id: 'sessions-table' },
          h('thead', {}, h('tr', {}, ['Signed in', 'Expires', 'Last used', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, webSessions.map((t) => h('tr', { dataset: { session: t.id } },
            h('td', { title: t.created_at }, formatTime(t.created_at)),
            h('td', { title: t.expires_at || '' }, formatTime(t.expires_at)),
            h('td', { title: t.last_used_at || '' }, t.last_used_at ? timeAgo(t.last_used_at) : 'never'),
            h('td', { class: 'actions' }, h('button', {
              class: 'btn small', type: 'button',
              onclick: () => revoke(t, 'Sign this session out?', 'The browser that holds it must sign in again. If it is this one, you are sent to the sign-in page.'),
            }, 'Sign out')))))))
        : h('p', { class: 'muted' }, 'None.'));
    } catch (e) {
      replace(list, errorBox(e, load));
    }
  }

  main.append(pageHeader('My tokens', `API tokens of ${session.user} for scripts and the command line: each acts for you, limited to the role and projects it was made with.`),
    form, shown,
    h('section', { class: 'panel', 'aria-labelledby': 'h-tokens' }, h('h2', { id: 'h-tokens' }, 'Tokens'), list),
    h('section', { class: 'panel', 'aria-labelledby': 'h-sessions' }, h('h2', { id: 'h-sessions' }, 'Web sessions'),
      h('p', { class: 'hint' }, 'Browsers signed in as you (one of them is this one). A session lasts 12 hours; sign out of one you do not recognise.'),
      sessions));
  await load();
}
