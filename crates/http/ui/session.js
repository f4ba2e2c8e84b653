// Who is signed in, as GET /api/session says: loaded at start and after signing in or out, read
// by the header and by pages that hide what the caller may not do.
import { get } from './api.js';

/** The caller: `{access, signed_in, user, admin, must_change_password, projects}`. */
export let session = { access: 'open', signed_in: false, user: null, admin: true, must_change_password: false, projects: [] };

/** Nobody signed in, with access enforced. */
const SIGNED_OUT = { access: 'enforced', signed_in: false, user: null, admin: false, must_change_password: false, projects: [] };

export async function loadSession() {
  try {
    session = await get('/api/session');
  } catch (e) {
    // A 401 here: the browser still holds a session the server no longer accepts (revoked,
    // expired, the account disabled). That is being signed out.
    if (e.status !== 401) throw e;
    session = { ...SIGNED_OUT };
  }
  document.dispatchEvent(new CustomEvent('session', { detail: session }));
  return session;
}

/** Whether requests must sign in (and have not). */
export const needsSignIn = () => session.access === 'enforced' && !session.signed_in;

/** Whether access is enforced (accounts, tokens and sessions exist). */
export const enforced = () => session.access === 'enforced';

/** The caller's role in `project` (`manager` for administrators), or null. */
export function roleIn(project) {
  if (session.admin) return 'manager';
  const p = (session.projects || []).find((r) => r.project === String(project).toLowerCase());
  return p ? p.role : null;
}

/** Roles from least to most. */
export const ROLES = ['viewer', 'contributor', 'manager'];

/** Whether the caller may upload into `project` (contributors and managers). */
export const mayContribute = (project) => ['contributor', 'manager'].includes(roleIn(project));

/** Whether the caller may manage `project`'s members and DICOM rules. */
export const mayManage = (project) => roleIn(project) === 'manager';

/** Whether the caller may upload into some project (else upload links are not shown). */
export const mayUploadSomewhere = () => session.admin || (session.projects || []).some((p) => p.role !== 'viewer');

/** The caller's highest role in any project (`manager` for administrators), or null. */
export function highestRole() {
  if (session.admin) return 'manager';
  let best = -1;
  for (const p of session.projects || []) best = Math.max(best, ROLES.indexOf(p.role));
  return best >= 0 ? ROLES[best] : null;
}
