// Sign in (with access enforced): name and password, or single sign-on at the OpenID provider
// when the server offers it; then back to the page that asked.
import { api, ApiError } from '../api.js';
import { h, pageHeader } from '../dom.js';
import { navigate } from '../router.js';
import { loadSession, session } from '../session.js';

/** Where to go after signing in: the page that sent the user here, else the gallery. */
export const nextOf = (route) => {
  const next = route.params.get('next') || '';
  return next.startsWith('#/') && !next.startsWith('#/login') ? next : '#/gallery?project=admin';
};

export async function render(main, route) {
  document.title = 'Sign in · radport';
  const name = h('input', { id: 'login-name', name: 'username', type: 'text', required: true, autocomplete: 'username' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  const error = h('p', { class: 'field-error', id: 'login-error', role: 'alert' });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'login-submit' }, 'Sign in');
  const form = h('form', { class: 'panel narrow', id: 'login-form', novalidate: true },
    h('label', { for: 'login-name' }, 'User name'), name,
    h('label', { for: 'login-password' }, 'Password'), password,
    error, h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      const s = await api.signIn(name.value.trim(), password.value);
      await loadSession();
      navigate(s.must_change_password ? `#/password?next=${encodeURIComponent(nextOf(route))}` : nextOf(route));
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : String(err);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  // A refused single sign-on comes back here with its reason.
  const ssoError = route.params.get('sso_error');
  if (ssoError) error.textContent = `Single sign-on failed: ${ssoError}`;
  const ended = route.params.get('ended')
    ? h('p', { class: 'notice info', id: 'session-ended' }, h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, 'i'),
      h('span', {}, 'Your session has ended (signed out elsewhere, revoked or expired). Sign in again to go back where you were.'))
    : null;
  main.append(pageHeader('Sign in', 'This radport asks who you are. Your administrator gives you an account.'), ...[ended].filter(Boolean));
  const sso = session.single_sign_on;
  if (sso) {
    const returnTo = `/${nextOf(route)}`;
    main.append(h('div', { class: 'panel narrow', id: 'sso' },
      h('a', { class: 'btn primary', id: 'sso-login', href: `${sso.login}?return_to=${encodeURIComponent(returnTo)}` },
        `Sign in with ${sso.display_name}`),
      h('p', { class: 'muted' }, 'or with a local account:')));
  }
  main.append(form);
  name.focus();
}
