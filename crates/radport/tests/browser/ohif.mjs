// The OHIF viewer served by radport, in a real Chromium, with access enforced (radport's
// default): signed in through the web UI, the gallery's "Open in viewer" link
// leads to /viewer/viewer?StudyInstanceUIDs=…, where OHIF (configured by radport's
// app-config.js) reads the study over radport's DICOMweb, draws the CT (pixels of the
// viewport's canvas that are not black), and, once the SEG is opened from the study browser,
// draws its overlay (coloured pixels over the grey CT). No request leaves radport's origin,
// and the viewer's Content-Security-Policy refuses nothing OHIF needs. The viewer's DICOMweb
// requests go with the session's cookie: without a session, they are refused.
// Usage: node ohif.mjs BASE_URL SCREENSHOT_DIR (environment: RADPORT_ADMIN_PASSWORD,
// RADPORT_STUDY_UID, RADPORT_CT_UID, RADPORT_SEG_UID; see browser.rs).
import { env, assert, step, openPage } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const STUDY = env('RADPORT_STUDY_UID');
const CT = env('RADPORT_CT_UID');
const SEG = env('RADPORT_SEG_UID');
const ADMIN_PASSWORD = env('RADPORT_ADMIN_PASSWORD');
const origin = new URL(base).origin;

// OHIF logs failed loads and its own warnings as console errors: only uncaught errors count.
const { context, page, pageErrors, shot, close, signIn } = await openPage('radport-ohif-', shots, { consoleErrors: false });
page.setDefaultTimeout(60000);

/** Every request the pages make, and what came back (for the report when a step fails). */
const foreign = [];
const failed = [];
const dicomweb = [];
context.on('request', (r) => {
  const url = r.url();
  if (url.startsWith('data:') || url.startsWith('blob:')) return;
  if (new URL(url).origin !== origin) foreign.push(`${r.method()} ${url}`);
});
context.on('requestfailed', (r) => failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
context.on('response', (r) => {
  const url = r.url();
  if (url.startsWith(`${origin}/dicomweb`)) {
    const accept = r.request().headers().accept || '';
    dicomweb.push(`${r.status()} ${r.request().method()} ${url.slice(origin.length)} (Accept: ${accept}; ${r.headers()['content-type'] || 'no content type'})`);
  }
  if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${url}`);
});
/** What the Content-Security-Policy refused, as the page reports it. */
const refusals = [];
page.on('console', (m) => {
  if (/Content Security Policy|Refused to/.test(m.text())) refusals.push(m.text());
});

/** What the test saw, printed when it fails. */
function report() {
  console.log('DICOMweb requests:');
  for (const line of dicomweb) console.log(`  ${line}`);
  if (failed.length) console.log(`failed requests:\n  ${failed.join('\n  ')}`);
  if (refusals.length) console.log(`CSP refusals:\n  ${refusals.join('\n  ')}`);
  if (pageErrors.length) console.log(`page errors:\n  ${pageErrors.join('\n  ')}`);
}

/**
 * Pixels of the viewport's canvas: how many are not black, and how many are coloured (one
 * channel well apart from another: the CT is grey, a segment's fill is not).
 */
const canvasPixels = () => page.evaluate(() => {
  const canvases = [...document.querySelectorAll('.cornerstone-canvas, [data-cy="viewport-pane"] canvas')]
    .filter((c) => c.width > 0 && c.height > 0);
  let bright = 0;
  let coloured = 0;
  let red = 0;
  let total = 0;
  for (const c of canvases) {
    const ctx = c.getContext('2d', { willReadFrequently: true });
    if (!ctx) continue;
    const { data } = ctx.getImageData(0, 0, c.width, c.height);
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      total += 1;
      if (r + g + b > 60) bright += 1;
      if (Math.max(Math.abs(r - g), Math.abs(r - b), Math.abs(g - b)) > 60) coloured += 1;
      if (r - g > 60 && r - b > 60) red += 1;
    }
  }
  return { canvases: canvases.length, total, bright, coloured, red };
});

/** Waits until `test(pixels)` holds (the viewer draws asynchronously). */
async function waitForPixels(what, test, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  let last = null;
  while (Date.now() < deadline) {
    last = await canvasPixels();
    if (test(last)) return last;
    await page.waitForTimeout(500);
  }
  throw new Error(`${what}: the viewport's canvas shows ${JSON.stringify(last)}`);
}

try {
  step('without a session, radport\'s DICOMweb refuses the viewer\'s requests');
  const refused = await fetch(`${base}/dicomweb/studies?StudyInstanceUID=${encodeURIComponent(STUDY)}`);
  assert(refused.status === 401, `QIDO-RS without a session: ${refused.status}`);

  step('the gallery links the study to the viewer');
  await page.goto(`${base}/#/gallery?project=admin`);
  await page.waitForSelector('#login-form');
  await signIn('admin', ADMIN_PASSWORD);
  await page.waitForSelector('#results[data-loaded]');
  const link = page.locator(`.viewer-link[data-study="${STUDY}"]`).first();
  await link.waitFor();
  const href = await link.getAttribute('href');
  assert(href === `/viewer/viewer?StudyInstanceUIDs=${encodeURIComponent(STUDY)}`, `the viewer link: ${href}`);
  assert(await link.getAttribute('target') === '_blank', 'the viewer opens in a new tab');
  await shot('ohif-01-gallery-links');

  step('the series page links to the viewer too');
  await page.goto(`${base}/#/series/${encodeURIComponent(CT)}`);
  await page.waitForSelector('#open-in-viewer');
  assert(await page.getAttribute('#open-in-viewer', 'href') === href, 'the series page links the same study');

  step('the viewer is radport\'s, configured for its DICOMweb');
  const config = await (await page.request.get(`${base}/viewer/app-config.js`)).text();
  assert(config.includes("window.location.origin + '/dicomweb'"), 'app-config.js points at /dicomweb');
  const index = await page.request.get(`${base}/viewer/viewer?StudyInstanceUIDs=${encodeURIComponent(STUDY)}`);
  assert(index.status() === 200, `the viewer's client route answers ${index.status()}`);
  assert(/script-src 'self'/.test(index.headers()['content-security-policy'] || ''), 'the viewer has its CSP');

  const qido = await page.request.get(`${base}/dicomweb/studies?StudyInstanceUID=${encodeURIComponent(STUDY)}`);
  assert(qido.status() === 200, `radport answers QIDO-RS at /dicomweb/studies: ${qido.status()} ${(await qido.text()).slice(0, 200)}`);

  step('OHIF opens the study and draws the CT');
  // As a user who has taken OHIF's introductory tour (its overlay would catch the clicks).
  await page.addInitScript(() => localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])));
  // In this tab (the link opens a new one).
  await page.goto(`${base}${href}`);
  const p = page;
  await p.waitForSelector('[data-cy="study-browser-thumbnail"]');
  await p.waitForSelector('.cornerstone-canvas');
  const ct = await waitForPixels('the CT is drawn', (px) => px.bright > px.total * 0.05);
  assert(ct.coloured < ct.total * 0.001, `the CT alone is grey: ${JSON.stringify(ct)}`);
  await p.screenshot({ path: `${shots}/ohif-02-ct.png` });

  step('the SEG is in the study browser; opened, its overlay is drawn over the CT');
  const segThumb = p.locator('[data-cy="study-browser-thumbnail-no-image"]').filter({ hasText: /SEG/ }).first();
  await segThumb.waitFor();
  await segThumb.dblclick();
  // OHIF shows the SEG over its CT at once, and asks whether to load it as a segmentation.
  const overlay = await waitForPixels('the SEG\'s overlay is drawn', (px) => px.coloured > 50, 60);
  await p.screenshot({ path: `${shots}/ohif-03-seg-preview.png` });

  step('loaded, the SEG\'s segments are listed and drawn in their colours, slice by slice');
  const yes = p.getByRole('button', { name: /^yes$/i });
  if (await yes.first().isVisible().catch(() => false)) await yes.first().click();
  else await p.getByRole('button', { name: /^load$/i }).first().click();
  // The segmentation panel (opened from the right side bar if it is not) lists both segments.
  await p.waitForFunction(() => document.querySelector('[data-cy$="-btn"][data-cy*="egmentation"]'));
  if (!(await p.getByText('Square', { exact: true }).first().isVisible().catch(() => false))) {
    await p.locator('[data-cy$="-btn"][data-cy*="egmentation"]').first().click();
  }
  await p.getByText('Square', { exact: true }).first().waitFor();
  await p.getByText('Disc', { exact: true }).first().waitFor();
  // Every slice has a segment on it; the square (segment 1, in the SEG's recommended red) is
  // on slices 0 to 2: scrolling through the four slices shows it.
  const viewport = await p.locator('.cornerstone-canvas').first().boundingBox();
  await p.mouse.move(viewport.x + viewport.width / 2, viewport.y + viewport.height / 2);
  const seen = [];
  for (const direction of [1, -1]) {
    for (let k = 0; k < 4; k += 1) {
      const px = await canvasPixels();
      seen.push(px);
      if (px.red > 50) break;
      await p.mouse.wheel(0, direction * 120);
      await p.waitForTimeout(700);
    }
    if (seen.some((px) => px.red > 50)) break;
  }
  await p.screenshot({ path: `${shots}/ohif-04-seg-loaded.png` });
  assert(seen.every((px) => px.coloured > 50 && px.bright > px.total * 0.05), `a segment over the CT on every slice: ${JSON.stringify(seen)}`);
  assert(seen.some((px) => px.red > 50), `the square in red on some slice: ${JSON.stringify(seen)}`);
  assert(overlay.coloured > 50, 'preview');

  step('nothing left radport\'s origin; the CSP refused nothing');
  assert(foreign.length === 0, `requests to other origins:\n  ${foreign.join('\n  ')}`);
  assert(refusals.length === 0, `the CSP refused:\n  ${refusals.join('\n  ')}`);
  assert(pageErrors.length === 0, `page errors:\n  ${pageErrors.join('\n  ')}`);
  report();
  console.log('ohif: all checks passed');
} catch (e) {
  report();
  await page.screenshot({ path: `${shots}/ohif-failed.png` }).catch(() => {});
  throw e;
} finally {
  await close();
}
