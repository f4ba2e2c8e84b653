// Hash routes: `#/page/arg?key=value`. Each page is a module with `render(main, route)`
// that may return a cleanup function (timers, listeners), called before the next page.

const routes = new Map();
let cleanup = null;
let current = null;

export function register(name, page) {
  routes.set(name, page);
}

/** The current route: `{ name, args, params }` (params: URLSearchParams). */
export function parse(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || 'gallery', args: parts.slice(1), params: new URLSearchParams(qs || '') };
}

/** Builds a hash link. */
export function link(name, args = [], params = {}) {
  const path = [name, ...args.map(encodeURIComponent)].join('/');
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const qs = q.toString();
  return `#/${path}${qs ? `?${qs}` : ''}`;
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** Changes the URL without rendering the page again (filters already applied in place). */
export function replaceUrl(hash) {
  history.replaceState(null, '', hash);
  current = hash;
}

export async function render() {
  if (location.hash === current) return;
  current = location.hash;
  const route = parse();
  const page = routes.get(route.name) || routes.get('notfound');
  if (cleanup) {
    try { cleanup(); } catch { /* a page's cleanup must not stop the next one */ }
    cleanup = null;
  }
  const main = document.getElementById('main');
  main.replaceChildren();
  document.dispatchEvent(new CustomEvent('route', { detail: route }));
  const result = await page.render(main, route);
  if (typeof result === 'function') cleanup = result;
}

/** Records a new URL (a history entry) for state the page already shows, without rendering. */
export function pushUrl(hash) {
  if (location.hash === hash) return;
  history.pushState(null, '', hash);
  current = location.hash;
}

/** Forces the next render even if the hash did not change. */
export function refresh() {
  current = null;
  render();
}

export function start() {
  window.addEventListener('hashchange', render);
  if (!location.hash) history.replaceState(null, '', link('gallery', [], { project: 'admin' }));
  render();
}
