// Drives radport's web UI in a real Chromium and asserts what a user would see.
// Usage: node e2e.mjs BASE_URL SCREENSHOT_DIR (environment: see crates/radport/tests/browser.rs)
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
mkdirSync(shots, { recursive: true });

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
const step = (text) => console.log(`-- ${text}`);

const profile = mkdtempSync(join(tmpdir(), 'radport-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
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

  step('series detail: metadata, validation, report link, downloads');
  await page.click(`.series-card[data-uid="${MR_UID}"]`);
  await page.waitForFunction((uid) => location.hash === `#/series/${uid}`, MR_UID);
  await page.waitForSelector('#metadata');
  assert((await page.textContent('#series-patient')) === XSS_NAME, 'literal patient name on the detail page');
  await thumbnailsLoaded('.preview img');
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
  const reportText = await report.textContent('body');
  assert(reportText.includes(XSS_NAME) || reportText.toLowerCase().includes('validation'), 'the report opened');
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
  await shot('projects');

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
