// Drives radport's web UI in a real Chromium and asserts what a user would see.
// Usage: node e2e.mjs BASE_URL SCREENSHOT_DIR (environment: see crates/radport/tests/browser.rs)
import { launchChromium } from './launch.mjs';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, readdirSync, copyFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';

const [base, shots] = process.argv.slice(2);
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const DICOM_PORT = env('RADPORT_DICOM_PORT');
const ZIP = env('RADPORT_ZIP');
const CT_UID = env('RADPORT_CT_UID');
const MR_UID = env('RADPORT_MR_UID');
const ZIP_UID = env('RADPORT_ZIP_UID');
const XSS_NAME = env('RADPORT_XSS_NAME');
const LATER_ZIP = env('RADPORT_LATER_ZIP');
const LATER_UID = env('RADPORT_LATER_UID');
const FOLDER = env('RADPORT_FOLDER');
const FOLDER_UID = env('RADPORT_FOLDER_UID');
const FOLDER_COUNT = Number(env('RADPORT_FOLDER_COUNT'));
const FRAMES_DIR = env('RADPORT_FRAMES_DIR');
const FRAMES_UID = env('RADPORT_FRAMES_UID');
const SEG_DIR = env('RADPORT_SEG_DIR');
const SEG_UID = env('RADPORT_SEG_UID');
const SEG_CT_DIR = env('RADPORT_SEG_CT_DIR');
const SEG_CT_UID = env('RADPORT_SEG_CT_UID');
const SEG_INSIDE = env('RADPORT_SEG_INSIDE').split(',').map(Number);
const SEG_OUTSIDE = env('RADPORT_SEG_OUTSIDE').split(',').map(Number);
mkdirSync(shots, { recursive: true });

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
const step = (text) => console.log(`-- ${text}`);

const { context, profile } = await launchChromium('radport-chromium-');
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20000);
const dialogs = [];
const pageErrors = [];
page.on('dialog', async (d) => { dialogs.push(`${d.type()}: ${d.message()}`); await d.dismiss(); });
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(`console: ${m.text()}`); });

const api = async (path) => {
  const r = await page.request.get(base + path);
  assert(r.ok(), `GET ${path} -> ${r.status()}`);
  return r.json();
};
async function shot(name) {
  // From the top, once bars and transitions have settled.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(400);
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}
const cards = () => page.locator('#series-grid .series-card');
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
/** The bytes of an uploaded file, as the API serves them. */
async function uploadedBytes(path) {
  const r = await page.request.get(`${base}/api/files/${path.split('/').map(encodeURIComponent).join('/')}`);
  assert(r.ok(), `GET /api/files/${path} -> ${r.status()}`);
  return r.body();
}
/** Every request the page sends to the tus endpoint, in order (aborted ones too). */
const tusLog = [];
page.on('request', (r) => {
  if (!/\/api\/uploads(\/|$)/.test(new URL(r.url()).pathname)) return;
  tusLog.push({ method: r.method(), url: r.url(), offset: r.headers()['upload-offset'] });
});
/** A tus upload from here (not from the page): POST, then one PATCH. */
async function uploadFromNode(name, bytes) {
  const created = await page.request.post(`${base}/api/uploads`, {
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(bytes.length), 'Upload-Metadata': `filename ${Buffer.from(name).toString('base64')}` },
  });
  assert(created.status() === 201, `tus POST -> ${created.status()}`);
  const patched = await page.request.patch(base + created.headers().location, {
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
    data: bytes,
  });
  assert(patched.status() === 204, `tus PATCH -> ${patched.status()}`);
}
/** Files under `dir`, as paths relative to its parent (`study/ct/x.dcm`), without dotfiles. */
function folderFiles(dir) {
  const out = [];
  const walk = (d, prefix) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  walk(dir, `${basename(dir)}/`);
  return out.sort();
}
async function waitForRun(id, states = ['succeeded', 'failed']) {
  for (let i = 0; i < 120; i++) {
    const run = await api(`/api/workflow-runs/${id}`);
    if (states.includes(run.state)) return run;
    await page.waitForTimeout(500);
  }
  throw new Error(`run ${id} did not finish`);
}
const hashParams = () => new URLSearchParams(new URL(page.url()).hash.split('?')[1] || '');

async function thumbnailsLoaded(scope) {
  await page.waitForFunction((sel) => {
    const imgs = [...document.querySelectorAll(sel)];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, scope, { timeout: 30000 });
}

try {
  step('/ opens the gallery of admin with both series and their thumbnails');
  await page.goto(base + '/');
  await page.waitForSelector('#series-grid');
  assert(hashParams().get('project') === 'admin', `URL ${page.url()}`);
  await page.waitForFunction(() => document.querySelectorAll('#series-grid .series-card').length === 2);
  for (const uid of [CT_UID, MR_UID]) {
    await page.locator(`.series-card[data-uid="${uid}"] img`).scrollIntoViewIfNeeded();
    await thumbnailsLoaded(`.series-card[data-uid="${uid}"] img`);
  }
  assert((await page.textContent('#result-total')).includes('2 series'), 'total shown');
  assert(await page.locator('.topbar .brand').isVisible(), 'top bar');

  step('a Patient Name that is markup shows as text, and runs nothing');
  const mrCard = page.locator(`.series-card[data-uid="${MR_UID}"]`);
  assert((await mrCard.locator('.patient-name').textContent()) === XSS_NAME, 'literal patient name in the card');
  assert((await mrCard.locator('.card-title').textContent()).startsWith('<img src=x'), 'literal description');
  assert(await page.evaluate(() => document.querySelectorAll('main script, main img[src="x"]').length) === 0, 'no injected elements');
  await shot('gallery');

  step('filter by modality: URL and cards follow');
  await page.selectOption('#f-modality', 'MR');
  await page.waitForFunction(() => location.hash.includes('modality=MR'));
  await page.waitForFunction(() => document.querySelectorAll('#series-grid .series-card').length === 1);
  assert(await page.locator(`.series-card[data-uid="${MR_UID}"]`).count() === 1, 'the MR card is the one left');
  await page.selectOption('#f-modality', 'CT');
  await page.waitForFunction(() => location.hash.includes('modality=CT'));
  await page.waitForFunction((uid) => {
    const c = document.querySelectorAll('#series-grid .series-card');
    return c.length === 1 && c[0].dataset.uid === uid;
  }, CT_UID);
  await page.selectOption('#f-modality', '');
  await page.waitForFunction(() => !location.hash.includes('modality=') && document.querySelectorAll('#series-grid .series-card').length === 2);

  step('filter by body part: facet counts beside each value, URL and cards follow');
  const optionTexts = (sel) => page.$$eval(`${sel} option`, (os) => os.map((o) => o.textContent));
  await page.waitForFunction(() => [...document.querySelectorAll('#f-body-part option')].some((o) => o.textContent === 'HEAD (1)'));
  {
    const facets = await api('/api/projects/admin/facets');
    const expected = ['All body parts', ...facets.body_part.filter((v) => v.value).map((v) => `${v.value} (${v.count})`)];
    assert(JSON.stringify(await optionTexts('#f-body-part')) === JSON.stringify(expected), `body part options ${await optionTexts('#f-body-part')} vs ${expected}`);
    assert(expected.includes('CHEST (1)') && expected.includes('HEAD (1)'), `the API counts both body parts: ${expected}`);
  }
  await page.selectOption('#f-body-part', 'HEAD');
  await page.waitForFunction(() => location.hash.includes('body_part=HEAD'));
  await page.waitForFunction((uid) => {
    const c = document.querySelectorAll('#series-grid .series-card');
    return c.length === 1 && c[0].dataset.uid === uid;
  }, MR_UID);
  assert((await page.textContent('#result-total')).includes('1 series'), 'total under the body part filter');
  // The other facets count under the body part filter; its own keeps its alternatives.
  await page.waitForFunction(() => {
    const texts = [...document.querySelectorAll('#f-modality option')].map((o) => o.textContent);
    return texts.includes('MR (1)') && !texts.some((t) => t.startsWith('CT'));
  });
  assert((await optionTexts('#f-body-part')).includes('CHEST (1)'), 'CHEST stays selectable');
  assert(await page.inputValue('#f-body-part') === 'HEAD', 'HEAD selected');
  await shot('gallery-body-part');
  // Combined with a modality that has no HEAD series: nothing matches.
  await page.goto(`${base}/#/gallery?project=admin&modality=CT&body_part=HEAD`);
  await page.waitForSelector('.results .empty');
  await page.waitForFunction(() => [...document.querySelectorAll('#f-body-part option')].some((o) => o.textContent === 'CHEST (1)')
    && [...document.querySelectorAll('#f-body-part option')].some((o) => o.textContent === 'HEAD (0)'));
  // The URL alone brings the filter back.
  await page.goto(`${base}/#/gallery?project=admin&body_part=chest`);
  await page.waitForFunction((uid) => {
    const c = document.querySelectorAll('#series-grid .series-card');
    return c.length === 1 && c[0].dataset.uid === uid;
  }, CT_UID);
  // The select is filled when the facet counts arrive, which may be after the cards.
  await page.waitForFunction(() => document.querySelector('#f-body-part')?.value === 'CHEST', null, { timeout: 10000 })
    .catch(() => {});
  assert(await page.inputValue('#f-body-part') === 'CHEST', 'body part from the URL (any case)');
  await page.selectOption('#f-body-part', '');
  await page.waitForFunction(() => !location.hash.includes('body_part=') && document.querySelectorAll('#series-grid .series-card').length === 2);

  step('filter by validation status: the cards are those the API finds');
  for (const [value, query] of [['errors', 'has_errors=true'], ['valid', 'has_errors=false&has_warnings=false'], ['warnings', 'has_errors=false&has_warnings=true'], ['unvalidated', 'validated=false']]) {
    const expected = (await api(`/api/projects/admin/series?${query}`)).items.map((s) => s.series_instance_uid).sort();
    await page.selectOption('#f-validation', value);
    await page.waitForFunction((v) => location.hash.includes(`validation=${v}`), value);
    await page.waitForFunction((n) => (n === 0
      ? document.querySelector('.results .empty') !== null
      : document.querySelectorAll('#series-grid .series-card').length === n), expected.length);
    const shown = (await cards().evaluateAll((els) => els.map((e) => e.dataset.uid))).sort();
    assert(JSON.stringify(shown) === JSON.stringify(expected), `validation=${value}: ${shown} vs ${expected}`);
    if (value === 'errors') {
      assert(expected.length >= 1 && expected.length < 3, 'some series have errors');
      await shot('gallery-filtered');
    }
    if (expected.length === 0) await shot('gallery-no-match');
  }
  // The URL alone brings the filters back.
  await page.goto(`${base}/#/gallery?project=admin&modality=MR&validation=errors`);
  await page.waitForFunction(() => document.querySelectorAll('#series-grid .series-card').length === 1);
  assert(await page.inputValue('#f-modality') === 'MR', 'modality from the URL');
  assert(await page.inputValue('#f-validation') === 'errors', 'validation from the URL');

  step('facet counts show when the server has them (a stand-in answer here)');
  await page.route('**/api/projects/admin/facets*', (route) => route.fulfill({
    json: {
      modality: [{ value: 'CT', count: 1 }, { value: 'MR', count: 1 }],
      dataset: [{ value: 'sent', count: 2 }],
      body_part: [],
      validation: [{ value: 'errors', count: 2 }, { value: 'warnings', count: 0 }, { value: 'valid', count: 0 }, { value: 'unvalidated', count: 0 }],
    },
  }));
  await page.goto(`${base}/#/gallery?project=admin`);
  await page.waitForFunction(() => [...document.querySelectorAll('#f-modality option')].some((o) => o.textContent === 'MR (1)'));
  await page.waitForFunction(() => [...document.querySelectorAll('#f-validation option')].some((o) => o.textContent === 'With errors (2)'));
  await page.unroute('**/api/projects/admin/facets*');
  await page.goto(`${base}/#/gallery?project=admin&modality=MR&validation=errors`);
  await page.waitForFunction(() => document.querySelectorAll('#series-grid .series-card').length === 1);

  step('missing thumbnails: a recent series waits for its preview, an old one says "No preview" and is asked once');
  {
    let thumbRequests = 0;
    await page.route('**/api/series/*/thumbnail*', (route) => { thumbRequests++; return route.fulfill({ status: 404, json: { error: 'not rendered yet' } }); });
    await page.goto(`${base}/#/gallery?project=admin&q=PAT-`);
    await page.waitForSelector('#series-grid .thumb[data-state=pending]');
    assert((await page.textContent('#series-grid .thumb[data-state=pending]')).includes('Rendering preview'), 'a recent series: rendering');
    // The same series, arrived long ago (the list answer aged in flight).
    await page.route('**/api/projects/admin/series*', async (route) => {
      const answer = await (await route.fetch()).json();
      for (const item of answer.items) item.last_arrival = '2020-01-01T00:00:00Z';
      await route.fulfill({ json: answer });
    });
    await page.goto(`${base}/#/gallery?project=admin`);
    await page.waitForFunction(() => {
      const t = [...document.querySelectorAll('#series-grid .thumb')];
      return t.length === 2 && t.every((x) => x.dataset.state === 'missing');
    });
    assert((await page.textContent('#series-grid .thumb[data-state=missing]')).includes('No preview'), 'an old series: no preview');
    assert(await page.$$eval('#series-grid .thumb .spinner', (els) => els.every((e) => getComputedStyle(e).display === 'none')), 'no spinner');
    thumbRequests = 0;
    await page.waitForTimeout(3000); // longer than the first retry delay
    assert(thumbRequests === 0, `no retries: ${thumbRequests}`);
    await page.goto(`${base}/#/gallery?project=admin&sort=study_date`);
    await page.waitForFunction(() => document.querySelectorAll('#series-grid .thumb[data-state=missing]').length === 2);
    assert(thumbRequests === 0, `not asked again on the next render: ${thumbRequests}`);
    await shot('gallery-no-preview');
    await page.unroute('**/api/projects/admin/series*');
    await page.unroute('**/api/series/*/thumbnail*');
  }
  await page.goto(`${base}/#/gallery?project=admin&modality=MR&validation=errors`);
  await page.waitForFunction(() => document.querySelectorAll('#series-grid .series-card').length === 1);

  step('series detail: metadata, validation, report link, downloads');
  await page.click(`.series-card[data-uid="${MR_UID}"]`);
  await page.waitForFunction((uid) => location.hash === `#/series/${uid}`, MR_UID);
  await page.waitForSelector('#metadata');
  assert((await page.textContent('#series-patient')) === XSS_NAME, 'literal patient name on the detail page');
  await thumbnailsLoaded('.preview img');

  step('series detail: the slice viewer scrolls through the slices (keys, wheel, range), one rendered frame each');
  const slice = () => page.evaluate(() => {
    const img = document.querySelector('#slice-image');
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    let sum = 0;
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) sum += data[i];
    return { src: img.getAttribute('src'), shown: img.dataset.slice, width: img.naturalWidth, sum, label: document.querySelector('#slice-label').textContent };
  });
  const sliceShown = (k) => page.waitForFunction((n) => {
    const img = document.querySelector('#slice-image');
    return img && img.dataset.slice === String(n) && img.complete && img.naturalWidth > 0
      && document.querySelector('.preview .thumb').dataset.state === 'loaded';
  }, k);
  await sliceShown(3);
  const middle = await slice();
  assert(middle.label === 'slice 3 / 4', `starts in the middle: ${middle.label}`);
  assert(middle.width === 512 && middle.src.includes('/rendered?size=512'), `a rendered frame: ${middle.src} ${middle.width}`);
  await page.focus('#slice-viewer');
  await page.keyboard.press('ArrowDown');
  await sliceShown(2);
  const below = await slice();
  assert(below.label === 'slice 2 / 4', below.label);
  assert(below.src !== middle.src && below.sum !== middle.sum, `another image: ${below.sum} vs ${middle.sum}`);
  await page.keyboard.press('Home');
  await sliceShown(1);
  const firstSlice = await slice();
  assert(firstSlice.sum !== below.sum && firstSlice.label === 'slice 1 / 4', 'Home: the first slice');
  await page.hover('#slice-image');
  await page.mouse.wheel(0, 100);
  await sliceShown(2);
  assert((await slice()).sum === below.sum, 'the wheel scrolls, and slice 2 is slice 2 again');
  for (let i = 0; i < 4; i++) await page.mouse.wheel(0, 100);
  await sliceShown(4);
  assert((await slice()).label === 'slice 4 / 4', 'stops at the last slice');
  await page.focus('#slice-range');
  await page.keyboard.press('ArrowLeft');
  await sliceShown(3);
  assert((await slice()).sum === middle.sum && await page.inputValue('#slice-range') === '3', 'the range input, by keyboard');
  await page.locator('#slice-range').fill('1');
  await sliceShown(1);
  assert(await page.isDisabled('#slice-prev') && !(await page.isDisabled('#slice-next')), 'buttons follow the ends');
  const nameRow = page.locator('#metadata tr', { hasText: 'PatientName' });
  assert((await nameRow.locator('td.value').textContent()) === XSS_NAME, 'PatientName in the metadata table');
  await page.fill('#meta-search', 'modality');
  await page.waitForFunction(() => [...document.querySelectorAll('#metadata tbody tr')].filter((r) => !r.hidden).length >= 1);
  assert(await page.locator('#metadata tbody tr:not([hidden])', { hasText: 'MR' }).count() >= 1, 'search finds Modality');
  await page.fill('#meta-search', '');
  assert(await page.locator('#instances tbody tr').count() === 4, 'four instances');
  const download = await page.request.get(base + await page.getAttribute('#instances tbody tr:first-child a', 'href'));
  assert(download.ok() && download.headers()['content-type'] === 'application/dicom', 'instance download');
  const zip = await page.request.get(base + await page.getAttribute('#download-series', 'href'));
  const zipBytes = await zip.body();
  assert(zip.ok() && zip.headers()['content-type'] === 'application/zip' && zipBytes.subarray(0, 2).toString() === 'PK', 'series zip download');
  await page.waitForSelector('#report-link');
  const [report] = await Promise.all([context.waitForEvent('page'), page.click('#report-link')]);
  await report.waitForLoadState();
  // This series' report: its heading, its Series Instance UID, and findings of its own (the MR
  // series is sent with errors: the filter above found it under "With errors").
  assert((await report.textContent('h1')) === 'DICOM validation report', 'the report heading');
  assert((await report.textContent('body > p code')) === MR_UID, "the report names this series' UID");
  assert(await report.locator('#by-module').count() === 1, 'the report lists findings by module');
  assert(Number(await report.textContent('#errors')) > 0, 'the report counts the errors the gallery filtered on');
  assert(await report.evaluate(() => document.contentType) === 'text/html', 'report is HTML');
  await report.close();
  await shot('series');

  step('projects: create one, and a duplicate is refused inline');
  await page.click('.mainnav a[data-nav=projects]');
  await page.waitForSelector('#project-name');
  await page.waitForSelector('[data-project=admin]');
  await page.fill('#project-name', 'brain-study');
  await page.click('#create-project');
  await page.waitForSelector('[data-project=brain-study]');
  assert((await api('/api/projects')).items.some((p) => p.name === 'brain-study'), 'created in the API');
  await page.fill('#project-name', 'brain-study');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#project-error').textContent.includes('exists'));
  await page.fill('#project-name', '');
  // admin's count is of the datasets its card lists (every project's), not 0.
  const adminDatasets = (await api('/api/projects/admin/datasets')).items.length;
  assert(adminDatasets > 0, 'admin has datasets by now');
  await page.waitForFunction((n) => document.querySelectorAll('[data-project=admin] table tbody tr').length === n, adminDatasets);
  const adminLine = await page.textContent('[data-project=admin] .muted');
  assert(adminLine.includes(`${adminDatasets} dataset`), `admin's card counts its ${adminDatasets} datasets: ${adminLine}`);
  await shot('projects');

  step('names longer than an AE title carries: said where they are chosen, and no dcmsend command that would misroute');
  await page.fill('#project-name', 'a-very-long-project-name');
  await page.waitForFunction(() => document.querySelector('#project-hint').classList.contains('warning'));
  assert((await page.textContent('#project-hint')).includes('kp-a-very-long-'), 'the hint shows what a sender would call');
  await page.click('#create-project');
  await page.waitForSelector('[data-project=a-very-long-project-name] .not-dicom-addressable');
  const projectsNow = (await api('/api/projects')).items;
  assert(projectsNow.find((p) => p.name === 'a-very-long-project-name').dicom_addressable === false, 'the API says so');
  assert(projectsNow.find((p) => p.name === 'brain-study').dicom_addressable === true, 'a short name is addressable');
  assert(await page.locator('[data-project=brain-study] .not-dicom-addressable').count() === 0, 'no warning on a short name');
  await page.click('.mainnav a[data-nav=upload]');
  await page.waitForSelector('#up-project option[value=brain-study]', { state: 'attached' });
  await page.selectOption('#up-project', 'brain-study');
  await page.fill('#up-dataset', 'brain-mri-2024-followup');
  await page.waitForFunction(() => document.querySelector('#up-dataset-hint').classList.contains('warning'));
  assert((await page.textContent('#up-dataset-hint')).includes('“brain-mri-202”'), 'the hint names the dataset the images would land in');
  await page.click('#up-next');
  await page.click('#tab-dicom');
  await page.waitForSelector('#dcmsend-too-long');
  assert(await page.locator('#dcmsend-command').count() === 0, 'no dcmsend command for a name it cannot carry');
  assert((await page.textContent('#dcmsend-too-long')).includes('kp-brain-mri-202'), 'it says what would arrive');
  await shot('upload-name-too-long');
  await page.click('#use-browser-upload');
  await page.waitForSelector('#up-files', { state: 'attached' });
  assert((await page.request.delete(`${base}/api/projects/a-very-long-project-name`)).ok(), 'the long project deleted');

  step('an empty project shows what to do first');
  await page.goto(`${base}/#/gallery?project=brain-study`);
  await page.waitForSelector('.results .empty');
  assert((await page.textContent('.results .empty')).includes('Data Upload'), 'empty state points to Data Upload');
  await shot('gallery-empty');

  step('Data Upload: step 1 destination');
  await page.click('.mainnav a[data-nav=upload]');
  await page.waitForSelector('#up-project option[value=brain-study]', { state: 'attached' });
  await page.selectOption('#up-project', 'brain-study');
  await page.fill('#up-dataset', 'zipped');
  await shot('upload-step1');
  await page.click('#up-next');

  step('Data Upload: the dcmsend command of this deployment');
  await page.click('#tab-dicom');
  const health = await api('/api/health');
  const command = `dcmsend -v ${health.deployment.dicom_host} ${DICOM_PORT} --aetitle kp-zipped --call kp-brain-study --scan-directories --scan-pattern '*.dcm' --recurse DIR`;
  await page.waitForFunction((c) => document.querySelector('#dcmsend-command').textContent === c, command);
  assert(String(health.deployment.dicom_port) === DICOM_PORT, 'health reports the DICOM port');
  await shot('upload-dcmsend');

  step('Data Upload: a zip through the browser (tus)');
  await page.click('#tab-browser');
  await page.setInputFiles('#up-files', ZIP);
  await page.waitForSelector('.upload-status.ok');
  assert((await page.textContent('#upload-total')).includes('1 of 1 file uploaded'), 'total progress');
  assert(await page.getAttribute('.upload-item .progress', 'aria-valuenow') === '100', 'per-file bar at 100 %');
  assert((await api('/api/files')).items.some((f) => f.path === 'series.zip'), 'the upload is a file');
  await shot('upload-files');

  step('Data Upload: import workflow, followed to the end');
  await page.click('#up-next-import');
  await page.waitForSelector('#wf-param-file');
  assert(await page.inputValue('#wf-select') === 'import-dicoms-from-data-upload', 'default workflow');
  assert(await page.inputValue('#wf-param-file') === 'series.zip', 'file prefilled');
  assert(await page.inputValue('#wf-param-project') === 'brain-study', 'project prefilled');
  assert(await page.inputValue('#wf-param-dataset') === 'zipped', 'dataset prefilled');
  await page.uncheck('#wf-param-delete_original_file'); // kept for the Files page below
  await page.click('#wf-start');
  await page.waitForSelector('#wf-runs .run[data-state=succeeded]', { timeout: 60000 });
  assert((await page.textContent('#wf-runs .run-count')).includes('100 %'), 'progress reached 100 %');
  assert(await page.getAttribute('#wf-runs .run .progress', 'aria-valuenow') === '100', 'bar at 100 %');
  await shot('upload-import');
  await page.click('#wf-runs [data-role=gallery-link]');
  await page.waitForFunction(() => location.hash.includes('dataset=zipped') && location.hash.includes('project=brain-study'));
  await page.waitForFunction((uid) => document.querySelector(`.series-card[data-uid="${uid}"]`) !== null, ZIP_UID);
  assert(await cards().count() === 1, 'only the imported series in its dataset');
  await thumbnailsLoaded(`.series-card[data-uid="${ZIP_UID}"] img`);
  await shot('gallery-imported');

  step('Runs: the run with its state and progress');
  await page.click('.mainnav a[data-nav=runs]');
  await page.waitForSelector('.run[data-state=succeeded]');
  await shot('runs');

  step('Files: the kept upload is listed, then deleted after confirmation');
  await page.click('.mainnav a[data-nav=files]');
  await page.waitForSelector('#files tr[data-path="series.zip"]');
  await shot('files');
  await page.click('#files tr[data-path="series.zip"] button.danger');
  await page.waitForSelector('dialog.modal[open]');
  await shot('files-confirm');
  await page.click('dialog.modal button.danger');
  await page.waitForSelector('.empty');
  assert(!(await api('/api/files')).items.some((f) => f.path === 'series.zip'), 'deleted in the API');

  step('keyboard: Tab reaches a series card, Enter opens it');
  await page.goto(`${base}/#/gallery?project=admin`);
  await page.waitForSelector('#series-grid');
  let onCard = false;
  for (let i = 0; i < 40 && !onCard; i++) {
    await page.keyboard.press('Tab');
    onCard = await page.evaluate(() => document.activeElement.classList.contains('series-card'));
  }
  assert(onCard, 'a card takes the focus');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash.startsWith('#/series/'));

  step('folder: a directory dragged onto the drop zone is walked, packed and uploaded');
  await page.goto(`${base}/#/upload?project=brain-study&dataset=folder&step=2`);
  await page.waitForSelector('#dropzone');
  await page.evaluate(() => window.scrollTo(0, 0));
  // A real drag of a directory from the OS: Chromium's DevTools protocol drops file system
  // paths, and the page gets DataTransfer items whose webkitGetAsEntry() is a directory.
  const cdp = await context.newCDPSession(page);
  const zoneBox = await page.locator('#dropzone').boundingBox();
  const dragAt = { x: zoneBox.x + zoneBox.width / 2, y: zoneBox.y + zoneBox.height / 2 };
  const dragData = { items: [], files: [FOLDER], dragOperationsMask: 1 };
  await cdp.send('Input.dispatchDragEvent', { type: 'dragEnter', ...dragAt, data: dragData });
  await cdp.send('Input.dispatchDragEvent', { type: 'dragOver', ...dragAt, data: dragData });
  await page.waitForSelector('#dropzone.over');
  await shot('upload-drag-over');
  await cdp.send('Input.dispatchDragEvent', { type: 'drop', ...dragAt, data: dragData });
  await page.waitForSelector('.upload-item[data-state=done]', { timeout: 30000 });
  const dropped = page.locator('.upload-item[data-state=done]');
  const droppedName = (await dropped.locator('.upload-name .mono').textContent()).trim();
  assert(/^study-\d{8}T\d{6}\.zip$/.test(droppedName), `packed zip named after the folder: ${droppedName}`);
  assert((await dropped.locator('.upload-name .muted').textContent()).includes(`packed from ${FOLDER_COUNT} files`), 'every slice, no system file');
  await shot('upload-folder');
  const droppedZip = await uploadedBytes(droppedName);
  for (const name of folderFiles(FOLDER)) assert(droppedZip.includes(Buffer.from(name)), `${name} is in the zip`);
  assert(folderFiles(FOLDER).some((n) => n.startsWith('study/ct/more/')), 'the folder has a subfolder');
  assert(!droppedZip.includes(Buffer.from('.DS_Store')), 'system files are left out');
  const droppedHash = sha256(droppedZip);

  step('folder: imported, all of its slices (subfolder included) form the series');
  await page.click('#up-next-import');
  await page.waitForFunction((n) => document.querySelector('#wf-param-file')?.value === n, droppedName);
  await page.click('#wf-start');
  await page.waitForSelector('#wf-runs .run[data-state=succeeded]', { timeout: 60000 });
  const folderSeries = await api(`/api/series/${FOLDER_UID}`);
  assert(folderSeries.instances.length === FOLDER_COUNT, `${folderSeries.instances.length} instances imported`);
  assert(folderSeries.dataset_memberships.some((m) => m.dataset === 'folder'), 'in the dataset chosen');

  step('folder: the folder picker (input webkitdirectory) packs the same zip, byte for byte');
  await page.goto(`${base}/#/upload?project=brain-study&dataset=folder-picker&step=2`);
  await page.setInputFiles('#up-folder', FOLDER);
  await page.waitForSelector('.upload-item[data-state=done]', { timeout: 30000 });
  const pickedName = (await page.textContent('.upload-item[data-state=done] .upload-name .mono')).trim();
  assert(sha256(await uploadedBytes(pickedName)) === droppedHash, 'picked and dropped folders give the same zip');
  assert((await page.request.delete(`${base}/api/files/${pickedName}`)).ok(), 'delete the picked zip');

  step('network drop: the upload waits, then resumes from the server\'s offset');
  const laterBytes = readFileSync(LATER_ZIP);
  const chunk = 128 * 1024;
  assert(laterBytes.length > 8 * chunk, `the zip has several chunks (${laterBytes.length} bytes)`);
  await page.goto(`${base}/#/upload?project=brain-study&dataset=later&step=2&chunk_size=${chunk}`);
  await page.waitForSelector('#dropzone');
  tusLog.length = 0;
  let patches = 0;
  // The 4th PATCH meets a dead network: the browser goes offline as it is sent.
  await page.route('**/api/uploads/*', async (route) => {
    if (route.request().method() === 'PATCH' && ++patches === 4) {
      await context.setOffline(true);
      await route.abort('internetdisconnected');
    } else {
      await route.continue();
    }
  });
  await page.setInputFiles('#up-files', LATER_ZIP);
  await page.waitForSelector('.upload-item[data-state=offline]', { timeout: 15000 });
  await page.waitForSelector('#upload-connection:not([hidden])');
  const lostText = await page.textContent('.upload-item .upload-status');
  assert(lostText.includes('Connection lost'), `interruption shown: ${lostText}`);
  assert(await page.isDisabled('#up-next-import'), 'no import while the upload waits');
  await shot('upload-connection-lost');
  await page.unroute('**/api/uploads/*');
  await context.setOffline(false);
  await page.waitForSelector('.upload-item[data-state=done]', { timeout: 30000 });
  assert((await page.textContent('.upload-item .upload-status')).includes('resumed after 1 interruption'), 'resumption shown');
  assert(await page.isHidden('#upload-connection'), 'the connection notice goes away');
  {
    const posts = tusLog.filter((r) => r.method === 'POST');
    const sent = tusLog.filter((r) => r.method === 'PATCH').map((r) => Number(r.offset));
    const heads = tusLog.map((r, i) => (r.method === 'HEAD' ? i : -1)).filter((i) => i >= 0);
    assert(posts.length === 1, `one upload created (${posts.length})`);
    assert(heads.length >= 1, 'the client asked the server for its offset');
    const after = tusLog.slice(heads[heads.length - 1] + 1).find((r) => r.method === 'PATCH');
    assert(Number(after.offset) === 3 * chunk, `went on from the server's offset ${3 * chunk}, not ${after.offset}`);
    assert(sent.filter((o) => o === 0).length === 1, `never started over: ${sent}`);
    assert(sent.length === Math.ceil(laterBytes.length / chunk) + 1, `each chunk sent once, the cut one twice: ${sent}`);
  }
  assert(sha256(await uploadedBytes('later.zip')) === sha256(laterBytes), 'the uploaded file is byte-identical');
  await shot('upload-resumed');

  step('a failed run says why, and is re-run in place once the cause is fixed');
  await page.click('#up-next-import');
  await page.waitForFunction(() => document.querySelector('#wf-param-file')?.value === 'later.zip');
  await page.fill('#wf-param-project', 'later-study'); // does not exist (yet)
  await page.click('#wf-start');
  await page.waitForSelector('#wf-runs .run[data-state=failed]', { timeout: 60000 });
  const reason = await page.textContent('#wf-runs .run-failure-reason');
  assert(reason.includes('later-study') && reason.includes('does not exist'), `failure reason: ${reason}`);
  await shot('upload-run-failed');
  assert((await page.request.post(`${base}/api/projects`, { data: { name: 'later-study' } })).ok(), 'create the project');
  await page.click('#wf-runs .run[data-state=failed] [data-role=rerun]');
  await page.waitForSelector('#wf-runs .run[data-state=succeeded]', { timeout: 60000 });
  assert(await page.locator('#wf-runs .run').count() === 2, 'the failed run and its re-run');
  {
    const runs = (await api('/api/workflow-runs')).items.filter((r) => r.params.file === 'later.zip');
    assert(runs.length === 2 && JSON.stringify(runs[0].params) === JSON.stringify(runs[1].params), 'same parameters');
    assert(runs.find((r) => r.state === 'succeeded').series.includes(LATER_UID), 'the re-run imported the series');
  }
  await shot('upload-rerun');

  step('reload: an unfinished upload continues after the page is reloaded');
  const reloadZip = join(profile, 'reload.zip');
  copyFileSync(LATER_ZIP, reloadZip);
  const reloadUrl = `${base}/#/upload?project=brain-study&dataset=reload&step=2&chunk_size=${chunk}`;
  await page.goto(reloadUrl);
  await page.waitForSelector('#dropzone');
  patches = 0;
  // The server stops answering after two chunks (connection refused, the browser still online).
  await page.route('**/api/uploads/*', async (route) => {
    const method = route.request().method();
    if ((method === 'PATCH' && ++patches > 2) || method === 'HEAD') await route.abort('connectionrefused');
    else await route.continue();
  });
  await page.setInputFiles('#up-files', reloadZip);
  await page.waitForSelector('.upload-item[data-state=retrying]', { timeout: 15000 });
  assert(/Connection lost — (retrying in \d+ s|retrying…) \(attempt \d of \d\)/.test(await page.textContent('.upload-item .upload-status')), 'backoff shown');
  await shot('upload-retrying');
  const record = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('radport.tus.')).map((k) => JSON.parse(localStorage.getItem(k))));
  assert(record.length === 1 && record[0].name === 'reload.zip', `the upload is remembered: ${JSON.stringify(record)}`);
  const held = await page.request.head(record[0].url, { headers: { 'Tus-Resumable': '1.0.0' } });
  assert(Number(held.headers()['upload-offset']) === 2 * chunk, `the server holds two chunks (${held.headers()['upload-offset']})`);
  await page.reload();
  await page.waitForSelector('#upload-unfinished li[data-name="reload.zip"]');
  await page.unroute('**/api/uploads/*');
  await shot('upload-unfinished');
  tusLog.length = 0;
  await page.setInputFiles('#up-files', reloadZip);
  await page.waitForSelector('.upload-item[data-state=done]', { timeout: 30000 });
  assert((await page.textContent('.upload-item .upload-status')).includes(`continued from ${(2 * chunk / 1000).toFixed(0)} KB`), 'continued, and says so');
  assert(tusLog[0].method === 'HEAD' && !tusLog.some((r) => r.method === 'POST'), `asked, not created: ${tusLog.map((r) => r.method)}`);
  assert(Number(tusLog.find((r) => r.method === 'PATCH').offset) === 2 * chunk, 'from the server\'s offset');
  assert(sha256(await uploadedBytes('reload.zip')) === sha256(laterBytes), 'the resumed file is byte-identical');
  assert(await page.locator('#upload-unfinished li').count() === 0, 'nothing left unfinished');
  assert(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('radport.tus.')).length) === 0, 'record dropped');
  assert((await page.request.delete(`${base}/api/files/reload.zip`)).ok(), 'delete reload.zip');

  step('a refused chunk fails the upload visibly; "Try again" continues from the server\'s offset');
  const retryZip = join(profile, 'retry.zip');
  copyFileSync(ZIP, retryZip);
  await page.goto(`${base}/#/upload?project=brain-study&dataset=retry&step=2&chunk_size=4096`);
  await page.waitForSelector('#dropzone');
  patches = 0;
  await page.route('**/api/uploads/*', async (route) => {
    if (route.request().method() === 'PATCH' && ++patches === 3) await route.fulfill({ status: 400, json: { error: 'simulated refusal' } });
    else await route.continue();
  });
  await page.setInputFiles('#up-files', retryZip);
  await page.waitForSelector('.upload-item[data-state=failed]');
  assert((await page.textContent('.upload-item .upload-status')).includes('simulated refusal'), 'the server\'s reason');
  assert(await page.isDisabled('#up-next-import'), 'nothing to import yet');
  await shot('upload-failed');
  await page.unroute('**/api/uploads/*');
  tusLog.length = 0;
  await page.click('.upload-item[data-state=failed] button');
  await page.waitForSelector('.upload-item[data-state=done]');
  assert(tusLog[0].method === 'HEAD' && Number(tusLog.find((r) => r.method === 'PATCH').offset) === 2 * 4096, 'continued from the server\'s offset');
  assert(sha256(await uploadedBytes('retry.zip')) === sha256(readFileSync(ZIP)), 'retry.zip is byte-identical');
  assert((await page.request.delete(`${base}/api/files/retry.zip`)).ok(), 'delete retry.zip');

  step('the answer to the last chunk is lost: the client asks the server, and sends nothing twice');
  const lastZip = join(profile, 'last-chunk.zip');
  copyFileSync(ZIP, lastZip);
  const zipSize = readFileSync(ZIP).length;
  await page.goto(`${base}/#/upload?project=brain-study&dataset=last&step=2&chunk_size=4096`);
  await page.waitForSelector('#dropzone');
  let cut = false;
  await page.route('**/api/uploads/*', async (route) => {
    const req = route.request();
    if (!cut && req.method() === 'PATCH' && Number(req.headers()['upload-offset']) + 4096 >= zipSize) {
      cut = true;
      await route.fetch(); // the server gets the whole chunk and completes the file …
      await route.abort('connectionreset'); // … but its answer never arrives
    } else {
      await route.continue();
    }
  });
  tusLog.length = 0;
  await page.setInputFiles('#up-files', lastZip);
  await page.waitForSelector('.upload-item[data-state=done]', { timeout: 30000 });
  await page.unroute('**/api/uploads/*');
  {
    const sent = tusLog.filter((r) => r.method === 'PATCH').map((r) => Number(r.offset));
    assert(cut && tusLog.some((r) => r.method === 'HEAD'), 'the client asked');
    assert(sent.length === Math.ceil(zipSize / 4096) + 1 && sent[sent.length - 1] === zipSize, `no chunk sent twice, then an empty confirmation: ${sent}`);
  }
  assert(sha256(await uploadedBytes('last-chunk.zip')) === sha256(readFileSync(ZIP)), 'last-chunk.zip is byte-identical');
  assert((await page.request.delete(`${base}/api/files/last-chunk.zip`)).ok(), 'delete last-chunk.zip');

  step('Runs: a run whose file is missing fails with the reason; re-run from the list once it is there');
  const missing = await (await page.request.post(`${base}/api/workflows/import-dicoms-from-data-upload/runs`, {
    data: { file: 'arrives-late.zip', project: 'brain-study', dataset: 'late' },
  })).json();
  await waitForRun(missing.id);
  await page.goto(`${base}/#/runs`);
  const failedCard = page.locator(`#run-${missing.id}`);
  await failedCard.waitFor();
  assert(await failedCard.getAttribute('data-state') === 'failed', 'marked failed');
  assert((await failedCard.locator('.run-failure-reason').textContent()).includes('arrives-late.zip'), 'with its error');
  await shot('runs-failed');
  await uploadFromNode('arrives-late.zip', readFileSync(ZIP));
  await failedCard.locator('[data-role=rerun]').click();
  await page.waitForFunction((id) => location.hash.startsWith('#/runs/') && location.hash.includes(`rerun_of=${id}`), missing.id);
  await page.waitForSelector('.run[data-state=succeeded]', { timeout: 60000 });
  assert(await page.locator(`.rerun-of a[href="#/runs/${missing.id}"]`).count() === 1, 'links the failed run');
  {
    const rerunId = new URL(page.url()).hash.split('/')[2].split('?')[0];
    const rerun = await api(`/api/workflow-runs/${rerunId}`);
    assert(rerunId !== missing.id && JSON.stringify(rerun.params) === JSON.stringify(missing.params), 'a new run, same parameters');
    assert(rerun.series.includes(ZIP_UID), 'the re-run imported the series');
    assert((await api(`/api/workflow-runs/${missing.id}`)).state === 'failed', 'the failed run stays as it was');
  }
  await shot('run-rerun');

  step('series detail: the slice viewer steps through the frames of a multi-frame instance');
  execFileSync('/usr/bin/dcmsend', ['127.0.0.1', DICOM_PORT, '--aetitle', 'kp-frames', '--call', 'kp-admin',
    '--scan-directories', '--scan-pattern', '*.dcm', '--recurse', FRAMES_DIR]);
  await page.goto(`${base}/#/series/${FRAMES_UID}`);
  await page.waitForSelector('#slice-viewer');
  await sliceShown(2);
  const middleFrame = await slice();
  assert(middleFrame.label === 'slice 2 / 3', `one slice per frame, starting in the middle: ${middleFrame.label}`);
  assert(middleFrame.src.includes('frame=2'), `the middle frame asked for: ${middleFrame.src}`);
  assert((await page.textContent('.slice-status')).includes('frame 2 / 3'), 'the frame is named');
  await page.focus('#slice-viewer');
  await page.keyboard.press('ArrowDown');
  await sliceShown(1);
  const firstFrame = await slice();
  assert(firstFrame.src.includes('frame=1') && firstFrame.sum !== middleFrame.sum, `frame 1 is another image: ${firstFrame.src}`);
  await page.keyboard.press('End');
  await sliceShown(3);
  const lastFrame = await slice();
  assert(lastFrame.src.includes('frame=3') && lastFrame.sum !== middleFrame.sum && lastFrame.sum !== firstFrame.sum, 'frame 3 is a third image');
  await shot('series-frames');

  step('series detail: a segmentation steps through the source slices it covers, its segments over each');
  const dcmsend = (dir, aet) => execFileSync('/usr/bin/dcmsend', ['127.0.0.1', DICOM_PORT, '--aetitle', aet, '--call', 'kp-admin',
    '--scan-directories', '--scan-pattern', '*.dcm', '--recurse', dir]);
  /** [r, g, b] of the shown slice at a point given as fractions of its width and height. */
  const pixelAt = ([fx, fy]) => page.evaluate(([x, y]) => {
    const img = document.querySelector('#slice-image');
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(Math.floor(x * canvas.width), Math.floor(y * canvas.height), 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [fx, fy]);
  const isGrey = (p) => Math.max(...p) - Math.min(...p) <= 3;
  const status = () => page.textContent('.slice-status');
  // The SEG alone: 5 frames on 4 slices of a CT that is not here yet, so on black.
  dcmsend(SEG_DIR, 'kp-seg');
  await page.goto(`${base}/#/series/${SEG_UID}`);
  await page.waitForSelector('#slice-viewer');
  await sliceShown(3);
  const segAlone = await slice();
  assert(segAlone.label === 'slice 3 / 4', `one slice per source slice, starting in the middle: ${segAlone.label}`);
  assert(segAlone.src.includes('frame=1'), `slice 3 is frames 1 and 5: ${segAlone.src}`);
  assert((await status()).includes('not in the archive'), `says the source is missing: ${await status()}`);
  assert((await status()).includes('Square, Disc'), `names its segments: ${await status()}`);
  {
    const inside = await pixelAt(SEG_INSIDE);
    const outside = await pixelAt(SEG_OUTSIDE);
    assert(inside[0] > inside[1] + 60 && inside[0] > inside[2] + 60, `the square is red: ${inside}`);
    assert(isGrey(outside) && outside[0] < 48, `no source: on black ${outside}`);
  }
  await shot('series-seg-alone');
  // Its CT arrives: every slice over its CT slice.
  dcmsend(SEG_CT_DIR, 'kp-seg');
  await api(`/api/series/${SEG_CT_UID}`);
  await page.reload();
  await page.waitForSelector('#slice-viewer');
  await sliceShown(3);
  const segOver = await slice();
  assert(segOver.label === 'slice 3 / 4', segOver.label);
  assert((await status()).includes('over Instance Number 3 of the source series'), `names the CT slice: ${await status()}`);
  {
    const inside = await pixelAt(SEG_INSIDE);
    const outside = await pixelAt(SEG_OUTSIDE);
    assert(inside[0] > inside[1] + 60 && inside[0] > inside[2] + 60, `the square is red: ${inside}`);
    assert(isGrey(outside) && outside[0] > 48, `the CT around it: ${outside}`);
    assert(segOver.sum !== segAlone.sum, 'another picture once the CT is there');
  }
  await shot('series-seg');
  await page.focus('#slice-viewer');
  await page.keyboard.press('ArrowDown');
  await sliceShown(2);
  const segBelow = await slice();
  assert(segBelow.label === 'slice 2 / 4' && segBelow.sum !== segOver.sum, `stepping changes the image: ${segBelow.label}`);
  assert((await status()).includes('Instance Number 2'), await status());
  await page.keyboard.press('End');
  await sliceShown(4);
  const segLast = await slice();
  assert(segLast.label === 'slice 4 / 4' && segLast.sum !== segOver.sum && segLast.sum !== segBelow.sum, 'slice 4 is a fourth image');
  assert((await status()).includes('Instance Number 4') && (await status()).includes('Disc') && !(await status()).includes('Square'), await status());

  assert(dialogs.length === 0, `no dialog may open: ${dialogs.join('; ')}`);
  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  console.log('browser test passed');
} catch (e) {
  console.error(e.stack || String(e));
  try { await shot('failure'); console.error(`screenshot of the failure: ${join(shots, 'failure.png')}`); } catch { /* ignore */ }
  console.error(`URL: ${page.url()}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join('\n')}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
