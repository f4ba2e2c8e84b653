// Change one's password (required after the first sign-in with a password someone else set).
import { api, ApiError } from '../api.js';
import { h, pageHeader } from '../dom.js';
import { navigate } from '../router.js';
import { loadSession, session } from '../session.js';
import { nextOf } from './login.js';

export async function render(main, route) {
  document.title = 'Change password · radport';
  const field = (id, label, autocomplete) => {
    const input = h('input', { id, name: id, type: 'password', required: true, autocomplete });
    return [h('label', { for: id }, label), input];
  };
  const [currentLabel, current] = field('password-current', 'Current password', 'current-password');
  const [newLabel, fresh] = field('password-new', 'New password (at least 10 characters)', 'new-password');
  const [againLabel, again] = field('password-again', 'New password again', 'new-password');
  const error = h('p', { class: 'field-error', id: 'password-error', role: 'alert' });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'password-submit' }, 'Change password');
  const form = h('form', { class: 'panel narrow', id: 'password-form', novalidate: true },
    currentLabel, current, newLabel, fresh, againLabel, again, error, h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    if (fresh.value !== again.value) {
      error.textContent = 'The two new passwords differ.';
      return;
    }
    submit.disabled = true;
    try {
      await api.changePassword(current.value, fresh.value);
      await loadSession();
      navigate(nextOf(route));
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : String(err);
    } finally {
      submit.disabled = false;
    }
  });
  main.append(pageHeader('Change your password',
    session.must_change_password ? 'Your password was set by someone else: choose your own before you go on.' : ''), form);
  current.focus();
}
