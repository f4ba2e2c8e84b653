// Who is signed in, as GET /api/session says: loaded at start and after signing in or out, read
// by the header and by pages that hide what the caller may not do.
import { get } from './api.js';

/** The caller: `{access, signed_in, user, admin, must_change_password, projects}`. */
export let session = { access: 'open', signed_in: false, user: null, admin: true, must_change_password: false, projects: [] };

export async function loadSession() {
  session = await get('/api/session');
  document.dispatchEvent(new CustomEvent('session', { detail: session }));
  return session;
}

/** Whether requests must sign in (and have not). */
export const needsSignIn = () => session.access === 'enforced' && !session.signed_in;

/** The caller's role in `project` (`manager` for administrators), or null. */
export function roleIn(project) {
  if (session.admin) return 'manager';
  const p = (session.projects || []).find((r) => r.project === String(project).toLowerCase());
  return p ? p.role : null;
}
