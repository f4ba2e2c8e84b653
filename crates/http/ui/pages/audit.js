// The audit trail (administrators): newest first, filtered by actor, action, target, outcome
// and time, a page at a time. The filters and the page are in the URL.
import { api } from '../api.js';
import { h, replace, pageHeader, errorBox, emptyState, loading, badge, plural } from '../dom.js';
import { link, navigate } from '../router.js';
import { session } from '../session.js';

const PAGE_SIZE = 50;
const FILTERS = ['actor', 'action', 'target', 'outcome', 'since'];
const OUTCOME_KIND = { success: 'ok', refused: 'error', failure: 'warning' };

/** RFC 3339 as a local date and time to the second (events come many a minute). */
function formatAt(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** `datetime-local` value (local time) as RFC 3339 UTC, or '' if not a time. */
function toRfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** RFC 3339 as a `datetime-local` value (local time). */
function toLocalInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function render(main, route) {
  if (!session.admin) {
    main.append(emptyState('Only administrators read the audit trail', null,
      h('a', { class: 'btn', href: '#/gallery' }, 'Open the gallery')));
    return;
  }
  const state = Object.fromEntries(FILTERS.map((k) => [k, route.params.get(k) || '']));
  const offset = Math.max(0, Number(route.params.get('offset')) || 0);

  const input = (key, label, placeholder) => {
    const el = h('input', { id: `audit-${key}`, name: key, type: 'text', value: state[key], placeholder, autocomplete: 'off' });
    return [h('div', { class: 'field' }, h('label', { for: `audit-${key}` }, label), el), el];
  };
  const [actorField, actor] = input('actor', 'Actor', 'user, anonymous, dicom:AE');
  const [actionField, action] = input('action', 'Action contains', 'sign-in, series, DELETE…');
  const [targetField, target] = input('target', 'Target', 'a UID, project or user');
  const outcome = h('select', { id: 'audit-outcome', name: 'outcome' },
    [['', 'Any outcome'], ['success', 'Success'], ['refused', 'Refused'], ['failure', 'Failure']]
      .map(([v, t]) => h('option', { value: v, selected: v === state.outcome ? true : null }, t)));
  const since = h('input', { id: 'audit-since', name: 'since', type: 'datetime-local', value: toLocalInput(state.since) });
  const apply = h('button', { class: 'btn primary', type: 'submit', id: 'audit-apply' }, 'Apply');
  const clear = h('a', { class: 'btn', href: link('audit') }, 'Clear');
  const form = h('form', { class: 'panel audit-filters', 'aria-label': 'Filters' },
    actorField, actionField, targetField,
    h('div', { class: 'field' }, h('label', { for: 'audit-outcome' }, 'Outcome'), outcome),
    h('div', { class: 'field' }, h('label', { for: 'audit-since' }, 'Since'), since),
    h('div', { class: 'field audit-buttons' }, apply, clear));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    navigate(link('audit', [], {
      actor: actor.value.trim(), action: action.value.trim(), target: target.value.trim(),
      outcome: outcome.value, since: toRfc3339(since.value),
    }));
  });

  const summary = h('p', { class: 'results-summary', id: 'audit-summary', 'aria-live': 'polite' });
  const results = h('div', { id: 'audit-results' }, loading('Loading the audit trail…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.append(pageHeader('Audit trail', 'Every sign-in, every read of patient data, every change and every refusal, newest first. Nothing in radport changes or deletes these rows.'),
    form, summary, results, pager);

  try {
    const page = await api.audit({ ...state, limit: PAGE_SIZE, offset });
    const first = page.total ? offset + 1 : 0;
    const last = offset + page.items.length;
    replace(summary, h('strong', { id: 'audit-total' }, plural(page.total, 'event')),
      page.total > page.items.length ? ` · showing ${first}–${last}` : '');
    replace(results, page.items.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'table compact', id: 'audit-table' },
        h('thead', {}, h('tr', {}, ['When', 'Actor', 'Address', 'Action', 'Target', 'Outcome', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, page.items.map((e) => h('tr', { dataset: { id: e.id, outcome: e.outcome } },
          h('td', { title: e.at, class: 'nowrap' }, formatAt(e.at)),
          h('td', {}, h('a', { href: link('audit', [], { ...state, actor: e.actor }), title: `Only ${e.actor}` }, e.actor)),
          h('td', { class: 'mono' }, e.address),
          h('td', {}, e.action),
          h('td', { class: 'value mono' }, e.target ? h('a', { href: link('audit', [], { ...state, target: e.target }), title: 'Only this target' }, e.target) : '—'),
          h('td', {}, badge(e.outcome, OUTCOME_KIND[e.outcome])),
          h('td', { class: 'value' }, e.detail))))))
      : emptyState('No events', FILTERS.some((k) => state[k]) ? 'Nothing matches these filters.' : 'Nothing has been recorded yet.'));
    const go = (o) => navigate(link('audit', [], { ...state, offset: o || null }));
    replace(pager, page.total > PAGE_SIZE ? [
      h('button', { class: 'btn', type: 'button', id: 'audit-newer', disabled: offset === 0 ? true : null, onclick: () => go(Math.max(0, offset - PAGE_SIZE)) }, '← Newer'),
      h('span', {}, `Page ${Math.floor(offset / PAGE_SIZE) + 1} of ${Math.ceil(page.total / PAGE_SIZE)}`),
      h('button', { class: 'btn', type: 'button', id: 'audit-older', disabled: last >= page.total ? true : null, onclick: () => go(offset + PAGE_SIZE) }, 'Older →'),
    ] : []);
  } catch (e) {
    replace(results, errorBox(e));
  }
}
