// Erasing and moving series in a real Chromium, with access enforced: a viewer of lung is
// offered none of it; lung's manager (a contributor of spare) counts a patient's series in the
// delete dialog, copies a series into spare, takes it out of lung, moves another, deletes a
// series and a patient (whose ID has a slash) and sees them gone from the gallery, but cannot
// delete a patient with a series in a project they do not manage; the administrator deletes
// project old, erasing the series no other project holds. browser.rs checks the result
// through the API.
// Usage: node erasure.mjs BASE_URL SCREENSHOT_DIR (environment: see browser.rs).
import { env, assert, step, openPage } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const ADMIN_PASSWORD = env('RADPORT_ADMIN_PASSWORD');
const VERA_PASSWORD = env('RADPORT_VERA_PASSWORD');
const MIKE_PASSWORD = env('RADPORT_MIKE_PASSWORD');
const COPIED = env('RADPORT_COPIED_UID');
const MOVED = env('RADPORT_MOVED_UID');
const ERASED = env('RADPORT_ERASED_UID');
const PATIENT = env('RADPORT_PATIENT_UID');
const SPLIT = env('RADPORT_SPLIT_UID');

const { page, pageErrors, shot, close, signIn, signOut } = await openPage('radport-erasure-', shots);
/** Confirms the open dialog and waits for it to close. */
const confirm = async () => {
  await page.click('dialog.modal[open] button[value=ok]');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
};
/** The projects the series page lists. */
const projectChips = () => page.$$eval('#series-projects [data-project]', (els) => els.map((e) => e.dataset.project).join(','));
/** The flash notice (what was just done), once there. */
async function flash(pattern) {
  try {
    await page.waitForFunction((source) => new RegExp(source).test(document.querySelector('#flash')?.textContent || ''), pattern.source);
  } catch (e) {
    throw new Error(`the notice should say ${pattern}: ${await page.$eval('#flash', (el) => el.textContent).catch(() => 'no notice')}`);
  }
}
/** Waits until the series page lists these projects (`admin,lung`). */
async function expectChips(expected) {
  try {
    await page.waitForFunction((want) => [...document.querySelectorAll('#series-projects [data-project]')].map((e) => e.dataset.project).join(',') === want, expected);
  } catch (e) {
    throw new Error(`the series page should list ${expected}: ${await projectChips()}`);
  }
}
/** Opens a series page and waits until its controls (if any) had time to appear. */
async function openSeries(uid) {
  await page.goto(`${base}/#/series/${encodeURIComponent(uid)}`);
  await page.waitForSelector('#series-title');
  await page.waitForSelector('#manage-holder');
  await page.waitForTimeout(500);
}
const present = async (selector) => (await page.$(selector)) !== null;
const ERASE_BUTTONS = ['#delete-series', '#delete-study', '#delete-patient'];
const ALL_BUTTONS = [...ERASE_BUTTONS, '#copy-series', '#move-series', '[data-take-out]'];
/** The series cards of the gallery (hrefs), once the results are loaded. */
async function galleryCards() {
  await page.waitForSelector('#results[data-loaded]');
  return page.$$eval('#series-grid .series-card', (els) => els.map((e) => e.getAttribute('href')));
}

try {
  step('a viewer of lung is offered no copy, move, take-out or delete');
  await page.goto(`${base}/#/series/${encodeURIComponent(ERASED)}`);
  await page.waitForSelector('#login-form');
  await signIn('vera', VERA_PASSWORD);
  await page.waitForSelector('#series-title');
  await page.waitForTimeout(800);
  for (const b of ALL_BUTTONS) assert(!(await present(b)), `no ${b} for a viewer`);
  assert(!(await present('#manage')), 'no Manage panel for a viewer');
  await expectChips('admin,lung');
  await shot('erasure-viewer-series');
  await page.goto(`${base}/#/projects`);
  await page.waitForSelector('[data-project="lung"]');
  assert(!(await present('[data-delete-project]')), 'no Delete project for a viewer');
  await signOut();

  step('lung\'s manager: copy, move and delete on the series page, take-out for lung only');
  await page.goto(`${base}/#/series/${encodeURIComponent(COPIED)}`);
  await page.waitForSelector('#login-form');
  await signIn('mike', MIKE_PASSWORD);
  await page.waitForSelector('#manage');
  for (const b of [...ERASE_BUTTONS, '#copy-series', '#move-series']) assert(await page.isVisible(b), `${b} for lung's manager`);
  assert(await present('[data-take-out="lung"]'), 'lung can be left');
  assert(!(await present('[data-take-out="admin"]')), 'admin cannot be left');
  await shot('erasure-series-manage');

  step('the patient dialog counts the series the manager sees, and Cancel keeps them');
  await page.click('#delete-patient');
  await page.waitForFunction(() => /You see 1 series/.test(document.querySelector('#erase-count')?.textContent || ''));
  const patientText = await page.textContent('#erase-dialog');
  assert(/every project/.test(patientText) && /cannot be undone/.test(patientText), patientText);
  await page.click('dialog.modal[open] button[value=cancel]');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
  assert(await present('#series-title'), 'still on the series page');

  step('copy into spare, with a dataset name');
  await page.click('#copy-series');
  await page.waitForSelector('#place-dialog');
  const options = async (sel) => page.$$eval(`${sel} option`, (os) => os.map((o) => o.value).join(','));
  assert(await options('#place-from') === 'lung', `copy from: ${await options('#place-from')}`);
  assert(await options('#place-to') === 'spare', `copy to: ${await options('#place-to')}`);
  await page.fill('#place-dataset', 'picked');
  await shot('erasure-copy-dialog', { fullPage: false });
  await confirm();
  await flash(/Copied from lung to spare \(dataset picked\)/);
  await expectChips('admin,lung,spare');
  await page.waitForSelector('[data-take-out="lung"]');
  await page.waitForTimeout(500);
  assert(!(await present('[data-take-out="spare"]')), 'spare is not mike\'s to leave (contributor)');

  step('a manager of lung but not of spare may no longer delete it (nor copy or move it: no target left)');
  for (const b of [...ERASE_BUTTONS, '#copy-series', '#move-series']) assert(!(await present(b)), `no ${b} now`);
  await shot('erasure-series-copied');

  step('take it out of lung');
  await page.click('[data-take-out="lung"]');
  await page.waitForSelector('#take-out-dialog');
  assert(/stays in spare and in admin/.test(await page.textContent('#take-out-dialog')), await page.textContent('#take-out-dialog'));
  await confirm();
  await flash(/Taken out of lung/);
  await expectChips('admin,spare');
  await page.waitForSelector('#manage #copy-series');
  assert(!(await present('#move-series')) && !(await present('#delete-series')), 'neither move nor delete out of spare');
  assert(await present('#copy-series'), 'a contributor of spare may copy it back to lung');

  step('move another series from lung to spare');
  await openSeries(MOVED);
  await page.click('#move-series');
  await page.waitForSelector('#place-dialog');
  assert(await options('#place-from') === 'lung', `move from: ${await options('#place-from')}`);
  await page.selectOption('#place-to', 'spare');
  await confirm();
  await flash(/Moved from lung to spare/);
  await page.waitForSelector('#series-title');
  await expectChips('admin,spare');

  step('delete a series: the dialog names what goes; then the gallery says what went');
  await page.goto(`${base}/#/gallery?project=lung`);
  let cards = await galleryCards();
  assert(cards.length === 3 && [ERASED, PATIENT, SPLIT].every((uid) => cards.some((c) => c.includes(uid))), `lung: ${cards}`);
  await page.click(`#series-grid .series-card[href*="${ERASED}"]`);
  await page.waitForSelector('#delete-series');
  await page.click('#delete-series');
  await page.waitForSelector('#erase-dialog');
  const seriesText = await page.textContent('#erase-dialog');
  assert(/3 instances/.test(seriesText) && /thumbnail/.test(seriesText) && /report/.test(seriesText) && /cannot be undone/.test(seriesText), seriesText);
  await shot('erasure-delete-dialog', { fullPage: false });
  await confirm();
  await flash(/Erased 1 series, 3 instances, 1 study, 1 patient/);
  assert(page.url().includes('#/gallery?project=lung'), page.url());
  cards = await galleryCards();
  assert(cards.length === 2 && !cards.some((c) => c.includes(ERASED)), `lung after the erasure: ${cards}`);
  await shot('erasure-gallery-after');

  step('delete a patient whose ID has a slash');
  await page.click(`#series-grid .series-card[href*="${PATIENT}"]`);
  await page.waitForSelector('#delete-patient');
  await page.click('#delete-patient');
  await page.waitForFunction(() => /You see 1 series/.test(document.querySelector('#erase-count')?.textContent || ''));
  assert(/PAT\/ERASE 2/.test(await page.textContent('#erase-dialog')), await page.textContent('#erase-dialog'));
  await confirm();
  await flash(/Patient deleted\. Erased 1 series, 2 instances, 1 study, 1 patient/);
  cards = await galleryCards();
  assert(cards.length === 1 && cards[0].includes(SPLIT), `lung after the patient: ${cards}`);

  step('a patient with a series in a project the manager does not manage cannot be deleted');
  await page.click(`#series-grid .series-card[href*="${SPLIT}"]`);
  await page.waitForSelector('#delete-patient');
  await page.click('#delete-patient');
  await page.waitForFunction(() => /You see 2 series/.test(document.querySelector('#erase-count')?.textContent || ''));
  const refusal = await page.textContent('#erase-dialog .field-error');
  assert(/in spare, which you do not manage/.test(refusal), refusal);
  assert(await page.isDisabled('dialog.modal[open] button[value=ok]'), 'the dialog cannot be confirmed');
  await shot('erasure-patient-refused', { fullPage: false });
  await page.click('dialog.modal[open] button[value=cancel]');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
  await signOut();

  step('the administrator deletes project old, erasing the series only it holds');
  await page.goto(`${base}/#/projects`);
  await page.waitForSelector('#login-form');
  await signIn('admin', ADMIN_PASSWORD);
  await page.waitForSelector('[data-delete-project="old"]');
  assert(!(await present('[data-delete-project="admin"]')), 'admin cannot be deleted');
  await page.click('[data-delete-project="old"]');
  await page.waitForSelector('#erase-unshared');
  const label = await page.textContent('#unshared-choice label');
  assert(/Also erase the 1 series no other project holds/.test(label), label);
  assert(!(await page.isChecked('#erase-unshared')), 'unchecked at first');
  await page.check('#erase-unshared');
  await shot('erasure-delete-project-dialog', { fullPage: false });
  await confirm();
  await page.waitForSelector('#project-deleted');
  const deleted = await page.textContent('#project-deleted');
  assert(/Project old deleted\. Erased 1 series, 2 instances/.test(deleted), deleted);
  await page.waitForSelector('[data-project="old"]', { state: 'detached' });
  await shot('erasure-projects-after');

  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  console.log('erasure: all checks passed');
} finally {
  await close();
}
