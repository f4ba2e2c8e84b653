// Times the gallery of a running radport in headless Chromium: first paint and filter changes.
// Usage: node bench/gallery.mjs BASE_URL THUMBNAIL_DIR   (run by bench/gallery.sh)
//
// The page marks each finished load (`radport:gallery-rendered`, and `data-loaded` on
// #results, set in pages/gallery.js once the cards and facets are in the DOM). Measured:
// - "cards in DOM": from navigation start (first paint) or from the filter change to that mark;
// - "next frame": to the first frame painted after it (requestAnimationFrame, then a task);
// - "API": from the same start to the end of the last /api/projects/ response of that load.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The browser test's launch (and its playwright-core install, crates/radport/tests/browser/).
const { launchChromium } = await import(pathToFileURL(join(root, 'crates/radport/tests/browser/launch.mjs')).href);

const [base, thumbDir] = process.argv.slice(2);
const RUNS = Number(process.env.GALLERY_RUNS || 7);
const CYCLES = Number(process.env.GALLERY_CYCLES || 5);
const GALLERY = `${base}/#/gallery?project=admin`;
const TARGET_FIRST = 300;
const TARGET_CHANGE = 100;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (ms) => `${ms.toFixed(0)} ms`;
function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

const { context, profile } = await launchChromium('radport-bench-chromium-');
// Time of the first frame after the first finished load, and a larger resource timing buffer.
await context.addInitScript(() => {
  performance.setResourceTimingBufferSize(2000);
  const seen = new MutationObserver(() => {
    seen.disconnect();
    requestAnimationFrame(() => setTimeout(() => { window.__firstFrame = performance.now(); }));
  });
  seen.observe(document, { subtree: true, attributes: true, attributeFilter: ['data-loaded'] });
});

const consoleErrors = [];
const watch = (page) => {
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
};

/** A PNG to stand in for rendered thumbnails (a screenshot of a grey square). */
async function samplePng() {
  const page = await context.newPage();
  await page.setContent('<body style="margin:0;background:#333"><div style="width:256px;height:256px;background:radial-gradient(#ccc,#222)"></div></body>');
  const png = await page.screenshot({ clip: { x: 0, y: 0, width: 256, height: 256 } });
  await page.close();
  return png;
}

const api = async (path) => {
  const r = await fetch(base + path);
  assert(r.ok, `GET ${path} -> ${r.status}`);
  return r.json();
};

try {
  // Half of the first page gets a thumbnail; the others stay without (404 path).
  const first = await api('/api/projects/admin/series?limit=24');
  const total = first.total;
  const png = await samplePng();
  const withThumb = first.items.slice(0, 12).map((s) => s.series_instance_uid);
  for (const uid of withThumb) writeFileSync(join(thumbDir, `${uid}.png`), png);

  // Headers of both thumbnail paths.
  const thumbOk = await fetch(`${base}/api/series/${withThumb[0]}/thumbnail`);
  const etag = thumbOk.headers.get('etag');
  const revalidated = await fetch(`${base}/api/series/${withThumb[0]}/thumbnail`, { headers: { 'If-None-Match': etag } });
  const missingUid = first.items[23].series_instance_uid;
  let t = performance.now();
  const thumbMissing = await fetch(`${base}/api/series/${missingUid}/thumbnail`);
  const missingMs = performance.now() - t;
  const missingBody = await thumbMissing.json();

  // The server has answered before (its SQLite connections are open): the empty cache below
  // is the browser's, not a server that has just started.
  for (let i = 0; i < 3; i++) {
    await Promise.all([api('/api/projects/admin/series?limit=24'), api('/api/projects/admin/facets'), api('/api/projects')]);
  }

  // 1. First paint: RUNS page loads in one browser profile (the first with an empty cache).
  const loads = [];
  for (let run = 0; run < RUNS; run++) {
    const page = await context.newPage();
    watch(page);
    await page.goto(GALLERY);
    const m = await page.evaluate(async () => {
      const mark = () => performance.getEntriesByName('radport:gallery-rendered')[0];
      while (!mark() || window.__firstFrame === undefined) await new Promise((r) => setTimeout(r, 5));
      const rendered = mark().startTime;
      const cards = performance.getEntriesByName('radport:gallery-cards')[0].startTime;
      const calls = performance.getEntriesByType('resource')
        .filter((e) => e.name.includes('/api/projects/admin/') && e.responseEnd <= rendered);
      const api = calls.reduce((a, e) => Math.max(a, e.responseEnd), 0);
      const apiStart = calls.reduce((a, e) => Math.min(a, e.startTime), Infinity);
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      // Thumbnails: lazy, and the ones in the viewport settle (loaded or missing) soon.
      const imgs = [...document.querySelectorAll('#series-grid .series-card img')];
      const inView = (i) => i.getBoundingClientRect().top < innerHeight;
      const start = performance.now();
      while (!imgs.filter(inView).every((i) => i.complete) && performance.now() - start < 10000) {
        await new Promise((r) => setTimeout(r, 5));
      }
      // Thumbnail fetches of this load: from the network, or from the HTTP cache (nothing
      // transferred), and how many were missing (404).
      const thumbs = performance.getEntriesByType('resource').filter((e) => e.name.includes('/thumbnail'));
      return {
        thumbRequests: thumbs.filter((e) => e.transferSize > 0).length,
        thumbCached: thumbs.filter((e) => e.transferSize === 0).length,
        thumb404: thumbs.filter((e) => e.responseStatus === 404).length,
        userAgent: navigator.userAgent,
        rendered,
        cardsAt: cards,
        frame: window.__firstFrame,
        api,
        apiStart,
        fcp: fcp ? fcp.startTime : null,
        thumbsSettled: performance.now(),
        cards: document.querySelectorAll('#series-grid .series-card').length,
        lazy: imgs.filter((i) => i.loading === 'lazy').length,
        inView: imgs.filter(inView).length,
        loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
        total: document.querySelector('#result-total').textContent,
      };
    });
    loads.push(m);
    await page.close();
  }
  assert(loads.every((l) => l.cards === 24), `24 cards: ${loads.map((l) => l.cards)}`);

  // 2. Filter changes: CYCLES times modality → dataset → text → next page → clear, on one page,
  // with other values each time (nothing the page fetched before), at a user's pace: the next
  // change once the visible thumbnails of the last one have settled.
  const page = await context.newPage();
  watch(page);
  await page.goto(GALLERY);
  await page.waitForSelector('#results[data-loaded]');
  const MODALITIES = ['CT', 'MR', 'PT', 'CR', 'US'];
  const steps = (cycle) => [
    ['modality (CT, MR, PT, CR, US)', { select: '#f-modality', value: MODALITIES[cycle % MODALITIES.length] }],
    ['+ dataset (the largest under it)', { select: '#f-dataset', value: 1 }],
    ['+ text search "Name4…8" (Enter)', { text: '#f-q', value: `Name${4 + (cycle % 5)}` }],
    ['next page', { click: '.pager button:last-child' }],
    ['clear filters', { click: '#f-clear' }],
  ];
  const changes = new Map(steps(0).map(([name]) => [name, []]));
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    for (const [name, action] of steps(cycle)) {
      const m = await page.evaluate(async (a) => {
        const results = document.querySelector('#results');
        const before = Number(results.dataset.loaded || 0);
        performance.clearResourceTimings();
        const t0 = performance.now();
        if (a.select) {
          const sel = document.querySelector(a.select);
          sel.value = typeof a.value === 'number' ? sel.options[a.value].value : a.value;
          sel.dispatchEvent(new Event('change', { bubbles: true }));
        } else if (a.text) {
          const input = document.querySelector(a.text);
          input.value = a.value;
          input.dispatchEvent(new Event('input', { bubbles: true }));
          input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
        } else {
          document.querySelector(a.click).click();
        }
        const done = () => {
          const m = performance.getEntriesByName('radport:gallery-rendered')[0];
          return m && m.detail.load > before && !m.detail.quiet ? m.startTime : null;
        };
        const rendered = await new Promise((resolve) => {
          if (done() !== null) { resolve(done()); return; }
          const obs = new MutationObserver(() => {
            if (done() !== null) { obs.disconnect(); resolve(done()); }
          });
          obs.observe(results, { attributes: true, attributeFilter: ['data-loaded'] });
        });
        const frame = await new Promise((r) => requestAnimationFrame(() => setTimeout(() => r(performance.now()))));
        const cards = performance.getEntriesByName('radport:gallery-cards')[0];
        // Per request: from its start to its end (the server's time plus the loopback).
        const took = (part) => performance.getEntriesByType('resource')
          .filter((e) => e.name.includes(`/api/projects/admin/${part}`) && e.startTime >= t0)
          .map((e) => e.responseEnd - e.startTime)[0] ?? null;
        const api = performance.getEntriesByType('resource')
          .filter((e) => e.name.includes('/api/projects/admin/') && e.startTime >= t0)
          .reduce((acc, e) => Math.max(acc, e.responseEnd), t0);
        const requests = performance.getEntriesByType('resource')
          .filter((e) => e.name.includes('/api/projects/admin/') && e.startTime >= t0).length;
        return {
          cardsAt: cards && cards.detail.load > before ? cards.startTime - t0 : null,
          seriesMs: took('series'),
          facetsMs: took('facets'),
          rendered: rendered - t0,
          frame: frame - t0,
          api: api - t0,
          requests,
          hash: location.hash,
          total: document.querySelector('#result-total')?.textContent || '0 series',
          cards: document.querySelectorAll('#series-grid .series-card').length,
        };
      }, action);
      changes.get(name).push(m);
      await page.evaluate(async () => {
        const imgs = [...document.querySelectorAll('#series-grid .series-card img')].filter((i) => i.getBoundingClientRect().top < innerHeight);
        const start = performance.now();
        while (!imgs.every((i) => i.complete) && performance.now() - start < 10000) await new Promise((r) => setTimeout(r, 10));
      });
      await page.waitForTimeout(300);
    }
  }
  await page.close();

  // Tables.
  const cold = loads[0];
  const warm = loads.slice(1);
  const row = (cells) => console.log(`| ${cells.join(' | ')} |`);
  console.log(`${/Chrome\/[\d.]+/.exec(cold.userAgent)?.[0] ?? 'Chromium'} headless, 1440×900, ${total.toLocaleString('en')} series in the catalog (SQLite), release build.`);
  console.log(`First paint: ${RUNS} page loads in one profile (the first with an empty HTTP cache; median of the other ${RUNS - 1}).`);
  console.log(`Filter changes: median of ${CYCLES} sequences; times from the change event. Requests: time from sent to answered, seen from the page.`);
  console.log();
  row(['step', 'series request', 'facets request', 'cards in DOM', 'cards + facets in DOM', 'next frame', 'target', 'met']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---']);
  const ok = (v, target) => (v < target ? 'yes' : '**no**');
  const med = (xs, key) => fmt(median(xs.map((x) => x[key])));
  row(['first paint, empty cache (from navigation)', '', '', fmt(cold.cardsAt), fmt(cold.rendered), fmt(cold.frame), `< ${TARGET_FIRST} ms`, ok(cold.frame, TARGET_FIRST)]);
  const wf = median(warm.map((l) => l.frame));
  row(['first paint, warm cache (from navigation)', '', '', med(warm, 'cardsAt'), med(warm, 'rendered'), fmt(wf), `< ${TARGET_FIRST} ms`, ok(wf, TARGET_FIRST)]);
  for (const [name, ms] of changes) {
    const f = median(ms.map((m) => m.frame));
    const facets = ms.filter((m) => m.facetsMs !== null);
    row([`${name} → ${[...new Set(ms.map((m) => m.total.replace(/ series$/, '')))].join(' / ')} series`,
      med(ms, 'seriesMs'), facets.length ? med(facets, 'facetsMs') : '(reused)', med(ms, 'cardsAt'), med(ms, 'rendered'), fmt(f),
      `< ${TARGET_CHANGE} ms`, ok(f, TARGET_CHANGE)]);
  }
  console.log();
  console.log(`API requests per filter change: ${[...changes].map(([n, ms]) => `${n.split(' ')[0]} ${ms[0].requests}`).join(', ')}.`);
  console.log(`First paint: the page's API requests start at ${fmt(cold.apiStart)} (empty cache), ${fmt(median(warm.map((l) => l.apiStart)))} (warm), once its modules are loaded; the last answer is in at ${fmt(cold.api)} / ${fmt(median(warm.map((l) => l.api)))}.`);
  console.log(`Other paints: first contentful paint ${fmt(median(warm.map((l) => l.fcp)))} (warm); visible thumbnails settled (loaded or missing) at ${fmt(cold.thumbsSettled)} (empty cache), ${fmt(median(warm.map((l) => l.thumbsSettled)))} (warm).`);
  console.log();
  console.log('Thumbnails:');
  console.log(`- ${cold.lazy} of ${cold.cards} card images have loading=lazy; ${cold.inView} are in the first viewport; requests at first paint: ${cold.thumbRequests} (${cold.thumb404} missing → 404), ${cold.loaded} drawn.`);
  console.log(`- warm loads (median): ${median(warm.map((l) => l.thumbCached))} thumbnails from the HTTP cache, ${median(warm.map((l) => l.thumbRequests))} requests reach the server, ${median(warm.map((l) => l.thumb404))} of them 404.`);
  console.log(`- a rendered thumbnail: ${thumbOk.status} ${thumbOk.headers.get('content-type')}, Cache-Control "${thumbOk.headers.get('cache-control')}", ETag ${etag}; revalidated with If-None-Match: ${revalidated.status}.`);
  console.log(`- a missing one: ${thumbMissing.status} ${thumbMissing.headers.get('content-type')} in ${fmt(missingMs)}, Cache-Control "${thumbMissing.headers.get('cache-control') ?? '(none)'}": ${missingBody.error}`);
  console.log(`- browser console errors during the run: ${consoleErrors.length}${consoleErrors.length ? ` (e.g. ${[...new Set(consoleErrors)].slice(0, 2).join('; ')})` : ''}.`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
