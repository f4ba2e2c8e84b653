// Entry point: registers the pages, keeps the navigation in step with the route.
import { register, start, navigate, parse } from './router.js';
import { h, emptyState } from './dom.js';
import { api } from './api.js';
import { loadSession, needsSignIn, session, mayUploadSomewhere } from './session.js';
import * as login from './pages/login.js';
import * as password from './pages/password.js';
import * as gallery from './pages/gallery.js';
import * as series from './pages/series.js';
import * as projects from './pages/projects.js';
import * as upload from './pages/upload.js';
import * as runs from './pages/runs.js';
import * as files from './pages/files.js';
import * as users from './pages/users.js';
import * as project from './pages/project.js';
import * as tokens from './pages/tokens.js';
import * as audit from './pages/audit.js';

register('gallery', gallery);
register('series', series);
register('projects', projects);
register('upload', upload);
register('runs', runs);
register('files', files);
register('login', login);
register('password', password);
register('users', users);
register('project', project);
register('tokens', tokens);
register('audit', audit);
register('notfound', {
  render(main) {
    document.title = 'Not found · radport';
    main.append(emptyState('This page does not exist',
      'The link may be outdated. Start from the gallery.',
      h('a', { class: 'btn primary', href: '#/gallery' }, 'Open the gallery')));
  },
});

const TITLES = { gallery: 'Gallery', series: 'Series', projects: 'Projects', upload: 'Data Upload', runs: 'Runs', files: 'Files', login: 'Sign in', password: 'Change password', users: 'Users', project: 'Project', tokens: 'My tokens', audit: 'Audit trail' };

/** Where the user is, as the `next` of the sign-in page. */
const here = () => (location.hash && !location.hash.startsWith('#/login') ? location.hash : '#/gallery?project=admin');

/**
 * With access enforced, a page needs a session: to the sign-in page (or the password page).
 * `ended`: the session was there and is not any more (the sign-in page says so).
 */
function gate(name, ended = false) {
  if (needsSignIn() && name !== 'login') {
    navigate(`#/login?next=${encodeURIComponent(here())}${ended ? '&ended=1' : ''}`);
    return false;
  }
  if (session.must_change_password && name !== 'password' && name !== 'login') {
    navigate(`#/password?next=${encodeURIComponent(here())}`);
    return false;
  }
  return true;
}

// An API call answered 401: the session ended (signed out elsewhere, revoked, expired).
document.addEventListener('unauthorized', () => {
  const wasSignedIn = session.signed_in;
  loadSession().catch(() => {}).finally(() => gate(parse().name, wasSignedIn));
});

/** The signed-in user and "Sign out" in the header (nothing with open access). */
function showUser() {
  const el = document.getElementById('user-area');
  if (session.access !== 'enforced') {
    el.replaceChildren(h('span', { class: 'muted small', title: 'Anyone who reaches this server may do everything (--access open)' }, 'open access'));
    return;
  }
  if (!session.signed_in) {
    el.replaceChildren();
    return;
  }
  const tokensLink = h('a', { class: 'btn small', href: '#/tokens', id: 'nav-tokens', dataset: { nav: 'tokens' } }, 'My tokens');
  const out = h('button', { class: 'btn small', type: 'button', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => {
    try { await api.signOut(); } catch { /* signed out either way */ }
    await loadSession();
    navigate('#/login');
  });
  el.replaceChildren(...[h('span', { id: 'user-name' }, session.user), session.admin ? h('span', { class: 'badge' }, 'admin') : null, tokensLink, out].filter(Boolean));
}

/** Navigation the caller may use: Admin ▸ Users, Audit for administrators; Data Upload for
 * whoever may upload somewhere. */
function showNav() {
  document.getElementById('nav-admin').hidden = !session.admin;
  document.querySelector('.mainnav a[data-nav="upload"]').hidden = !mayUploadSomewhere();
}
document.addEventListener('session', () => { showUser(); showNav(); });

document.addEventListener('route', (e) => {
  const name = e.detail.name;
  if (!gate(name)) return;
  document.title = `${TITLES[name] || 'radport'} · radport`;
  for (const a of document.querySelectorAll('.mainnav [data-nav], #user-area [data-nav]')) {
    const active = a.dataset.nav === name
      || (a.dataset.nav === 'gallery' && name === 'series')
      || (a.dataset.nav === 'workflows' && (name === 'upload' || name === 'runs'))
      || (a.dataset.nav === 'projects' && name === 'project')
      || (a.dataset.nav === 'admin' && (name === 'users' || name === 'audit'));
    a.classList.toggle('active', active);
    if (a.tagName === 'A') {
      if (active) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }
  document.getElementById('main').focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

async function showStatus() {
  const el = document.getElementById('server-status');
  try {
    const health = await api.health();
    const d = health.deployment || {};
    el.replaceChildren(
      h('span', { class: 'dot ok', 'aria-hidden': 'true' }),
      h('span', {}, `DICOM ${d.ae_title || ''} on ${d.dicom_host || '?'}:${d.dicom_port || '?'}`),
      h('span', { class: 'muted' }, ` · v${health.version}`));
  } catch (e) {
    el.replaceChildren(h('span', { class: 'dot bad', 'aria-hidden': 'true' }), h('span', {}, `Server unreachable: ${e.message}`));
  }
}

loadSession().catch(() => {}).finally(() => {
  showUser();
  showNav();
  start();
  showStatus();
});
