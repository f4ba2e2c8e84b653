// The radport HTTP API, as used by the pages. Errors are thrown as ApiError with the server's
// message (`{"error": "..."}`) and the status code.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The value of the CSRF cookie, which state-changing requests of a session repeat. */
export function csrfToken() {
  const pair = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith('radport_csrf='));
  return pair ? pair.slice('radport_csrf='.length) : '';
}

/** Headers a state-changing request of a session needs (none with open access). */
export function csrfHeaders() {
  const token = csrfToken();
  return token ? { 'X-CSRF-Token': token } : {};
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (method !== 'GET') Object.assign(init.headers, csrfHeaders());
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) {
    const message = json && json.error ? json.error : `${response.status} ${response.statusText}`;
    // Not signed in (any more): the app sends the user to the sign-in page and back.
    if (response.status === 401 && !path.startsWith('/api/session')) {
      document.dispatchEvent(new CustomEvent('unauthorized'));
    }
    throw new ApiError(response.status, message);
  }
  return json;
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);
export const del = (path) => request('DELETE', path);
export const put = (path, body) => request('PUT', path, body);
export const patch = (path, body) => request('PATCH', path, body);

/** Query string of the non-empty entries of an object. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

const seg = encodeURIComponent;
/** A path of several segments, each encoded (for uploaded file paths with folders). */
const pathSegments = (p) => p.split('/').map(seg).join('/');

export const api = {
  health: () => get('/api/health'),
  signIn: (name, password) => post('/api/session', { name, password }),
  signOut: () => del('/api/session'),
  changePassword: (current, fresh) => post('/api/session/password', { current, new: fresh }),
  projects: () => get('/api/projects').then((r) => r.items),
  createProject: (name) => post('/api/projects', { name }),
  datasets: (project) => get(`/api/projects/${seg(project)}/datasets`).then((r) => r.items),
  series: (project, filters) => get(`/api/projects/${seg(project)}/series${query(filters)}`),
  /** Facet counts, or null when the server has no facets endpoint. */
  facets: async (project, filters) => {
    try {
      return await get(`/api/projects/${seg(project)}/facets${query(filters)}`);
    } catch (e) {
      if (e.status === 404 || e.status === 405) return null;
      throw e;
    }
  },
  seriesDetail: (uid) => get(`/api/series/${seg(uid)}`),
  validation: (uid) => get(`/api/series/${seg(uid)}/validation`),
  thumbnailUrl: (uid) => `/api/series/${seg(uid)}/thumbnail`,
  reportUrl: (uid) => `/api/series/${seg(uid)}/validation/report`,
  seriesZipUrl: (uid) => `/api/series/${seg(uid)}/download`,
  instanceUrl: (uid, sop) => `/api/series/${seg(uid)}/instances/${seg(sop)}`,
  /** One frame of an instance as PNG (`frame`: 1-based, default the middle one; `size`: px). */
  renderedUrl: (uid, sop, { frame, size } = {}) => `/api/series/${seg(uid)}/instances/${seg(sop)}/rendered${query({ frame, size })}`,
  /** The slices of a segmentation instance, each with the image it is drawn over. */
  segmentation: (uid, sop) => get(`/api/series/${seg(uid)}/instances/${seg(sop)}/segmentation`),
  workflows: () => get('/api/workflows').then((r) => r.items),
  startRun: (name, params) => post(`/api/workflows/${seg(name)}/runs`, params),
  runs: () => get('/api/workflow-runs').then((r) => r.items),
  run: (id) => get(`/api/workflow-runs/${seg(id)}`),
  files: () => get('/api/files').then((r) => r.items),
  fileUrl: (path) => `/api/files/${pathSegments(path)}`,
  deleteFile: (path) => del(`/api/files/${pathSegments(path)}`),
  // Access control: accounts (administrators), members and DICOM rules (managers), tokens
  // (everyone's own), the audit trail (administrators).
  users: () => get('/api/users').then((r) => r.items),
  /** `{user, password}`: the password drawn for the account, shown once. */
  createUser: (name, admin) => post('/api/users', { name, admin }),
  /** `change`: `{admin?, disabled?, reset_password?}`; answers `{user, password}`. */
  updateUser: (name, change) => patch(`/api/users/${seg(name)}`, change),
  members: (project) => get(`/api/projects/${seg(project)}/members`).then((r) => r.items),
  setMember: (project, user, role) => put(`/api/projects/${seg(project)}/members/${seg(user)}`, { role }),
  removeMember: (project, user) => del(`/api/projects/${seg(project)}/members/${seg(user)}`),
  dicomRules: (project) => get(`/api/projects/${seg(project)}/dicom-rules`),
  setDicomRules: (project, rules) => put(`/api/projects/${seg(project)}/dicom-rules`, rules),
  tokens: () => get('/api/tokens').then((r) => r.items),
  /** `{token, info}`: the secret, shown once. */
  createToken: (body) => post('/api/tokens', body),
  revokeToken: (id) => del(`/api/tokens/${seg(id)}`),
  /** `{total, items}`, newest first. */
  audit: (filters) => get(`/api/audit${query(filters)}`),
};
