// Entry point: registers the pages, keeps the navigation in step with the route.
import { register, start } from './router.js';
import { h, emptyState } from './dom.js';
import { api } from './api.js';
import * as gallery from './pages/gallery.js';
import * as series from './pages/series.js';
import * as projects from './pages/projects.js';
import * as upload from './pages/upload.js';
import * as runs from './pages/runs.js';
import * as files from './pages/files.js';

register('gallery', gallery);
register('series', series);
register('projects', projects);
register('upload', upload);
register('runs', runs);
register('files', files);
register('notfound', {
  render(main) {
    document.title = 'Not found · radport';
    main.append(emptyState('This page does not exist',
      'The link may be outdated. Start from the gallery.',
      h('a', { class: 'btn primary', href: '#/gallery' }, 'Open the gallery')));
  },
});

const TITLES = { gallery: 'Gallery', series: 'Series', projects: 'Projects', upload: 'Data Upload', runs: 'Runs', files: 'Files' };

document.addEventListener('route', (e) => {
  const name = e.detail.name;
  document.title = `${TITLES[name] || 'radport'} · radport`;
  for (const a of document.querySelectorAll('.mainnav [data-nav]')) {
    const active = a.dataset.nav === name
      || (a.dataset.nav === 'gallery' && name === 'series')
      || (a.dataset.nav === 'workflows' && (name === 'upload' || name === 'runs'));
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

start();
showStatus();
