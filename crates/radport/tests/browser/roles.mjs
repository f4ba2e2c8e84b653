// What each role sees, in a real Chromium with access enforced: a viewer of lung sees its
// series but no upload buttons, no members or DICOM rules, no Users or Audit; lung's manager
// adds a member, changes a role, removes a member and sets lung's DICOM rules (a bad network
// is refused with the API's message). browser.rs checks the result through the API.
// Usage: node roles.mjs BASE_URL SCREENSHOT_DIR (environment: see browser.rs).
import { env, assert, step, openPage } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const VERA_PASSWORD = env('RADPORT_VERA_PASSWORD');
const MIKE_PASSWORD = env('RADPORT_MIKE_PASSWORD');
const SERIES_UID = env('RADPORT_SERIES_UID');

const { page, pageErrors, shot, close, signIn, signOut } = await openPage('radport-roles-', shots);
/** Links and buttons to upload, anywhere on the page (header included). */
const uploadLinks = () => page.$$eval('a[href^="#/upload"]', (as) => as.filter((a) => a.offsetParent !== null).map((a) => a.textContent));

try {
  step('a viewer sees the project\'s series');
  await page.goto(`${base}/#/gallery?project=lung`);
  await page.waitForSelector('#login-form');
  await signIn('vera', VERA_PASSWORD);
  await page.waitForSelector('#series-grid .series-card');
  const cards = await page.$$eval('#series-grid .series-card', (els) => els.map((e) => e.getAttribute('href')));
  assert(cards.length === 1 && cards[0].includes(SERIES_UID), `cards ${cards}`);

  step('… but no upload buttons, and no Users, Audit or members');
  assert((await uploadLinks()).length === 0, `upload links for a viewer: ${await uploadLinks()}`);
  assert(!(await page.isVisible('#nav-admin')), 'no Admin navigation for a viewer');
  assert(await page.$('a[href="#/users"]:visible') === null, 'no Users link');
  assert(await page.$('a[href="#/audit"]:visible') === null, 'no Audit link');
  assert(await page.isVisible('#nav-tokens'), 'My tokens for everyone signed in');
  await shot('viewer-gallery');
  await page.goto(`${base}/#/projects`);
  await page.waitForSelector('[data-project="lung"]');
  assert(await page.$('[data-access]') === null, 'no Members & DICOM rules button for a viewer');
  assert((await uploadLinks()).length === 0, 'no upload links on the Projects page');
  await page.goto(`${base}/#/project/lung`);
  await page.waitForSelector('#not-manager');
  assert(await page.$('#members') === null && await page.$('#dicom-rules') === null, 'neither members nor rules for a viewer');
  await page.goto(`${base}/#/users`);
  await page.waitForSelector('.empty');
  assert(await page.$('#users-table') === null && await page.$('#create-user') === null, 'no accounts for a viewer');
  await page.goto(`${base}/#/runs`);
  await page.waitForSelector('.run-list');
  assert((await uploadLinks()).length === 0, 'no upload links on the Runs page');
  await signOut();

  step('a manager of lung: members and DICOM rules on the project\'s page, still no Users or Audit');
  await page.goto(`${base}/#/projects`);
  await page.waitForSelector('#login-form');
  await signIn('mike', MIKE_PASSWORD);
  await page.waitForSelector('[data-project="lung"]');
  assert(!(await page.isVisible('#nav-admin')), 'no Admin navigation for a manager');
  assert(await page.$('[data-access="other"]') === null, 'no access page of a project mike only views');
  assert(await page.$('[data-project="lung"] a[href^="#/upload"]') !== null, 'a manager may upload');
  await page.click('[data-access="lung"]');
  await page.waitForSelector('#members-table');
  assert(page.url().includes('#/project/lung'), page.url());
  const members = async () => page.$$eval('#members-table tbody tr', (trs) => trs.map((tr) => `${tr.dataset.member}:${tr.querySelector('select').value}`).sort().join(','));
  assert(await members() === 'mike:manager,vera:viewer', await members());

  step('the manager adds a member with a role');
  await page.fill('#member-user', 'carl');
  await page.selectOption('#member-role', 'contributor');
  await page.click('#member-add');
  await page.waitForSelector('#members-table tr[data-member="carl"]');
  assert(await members() === 'carl:contributor,mike:manager,vera:viewer', await members());

  step('an account that does not exist is refused with a message');
  await page.fill('#member-user', 'nobody');
  await page.click('#member-add');
  await page.waitForFunction(() => document.querySelector('#members-error').textContent.length > 0);
  assert(/nobody/.test(await page.textContent('#members-error')), await page.textContent('#members-error'));
  await page.fill('#member-user', '');

  step('the manager changes a role and removes a member');
  await page.selectOption('#members-table tr[data-member="vera"] select', 'contributor');
  await page.waitForFunction(() => /vera is now contributor/.test(document.querySelector('#members-status').textContent));
  await page.click('#members-table tr[data-member="carl"] [data-remove]');
  await page.waitForSelector('dialog.modal[open]');
  await page.click('dialog.modal[open] button[value=ok]');
  await page.waitForSelector('#members-table tr[data-member="carl"]', { state: 'detached' });
  assert(await members() === 'mike:manager,vera:contributor', await members());

  step('the DICOM rules: empty is anyone; a bad network is refused with the API\'s message');
  assert(/Any sender may store into lung/.test(await page.textContent('#rules-summary')), await page.textContent('#rules-summary'));
  await page.fill('#rules-ae-titles', 'CT-SCANNER-1\nkp-upload');
  await page.fill('#rules-networks', '10.20.0.0/33');
  await page.click('#rules-save');
  await page.waitForFunction(() => document.querySelector('#rules-error').textContent.length > 0);
  const bad = await page.textContent('#rules-error');
  assert(/10\.20\.0\.0\/33/.test(bad), `the API's message: ${bad}`);
  assert(await page.getAttribute('#rules-networks', 'aria-invalid') === 'true', 'the networks field is marked');
  await shot('project-rules-error');
  await page.fill('#rules-networks', '10.20.0.0/16\n192.168.1.7');
  await page.click('#rules-save');
  await page.waitForFunction(() => /Saved/.test(document.querySelector('#rules-status').textContent));
  assert(await page.textContent('#rules-error') === '', 'the error is gone');
  const summary = await page.textContent('#rules-summary');
  assert(/CT-SCANNER-1/.test(summary) && /10\.20\.0\.0\/16/.test(summary), summary);
  await shot('project-access');

  step('the rules are there after a reload');
  await page.reload();
  await page.waitForSelector('#rules-ae-titles');
  await page.waitForFunction(() => document.querySelector('#rules-networks').value.includes('10.20.0.0/16'));

  step('the manager may not open Users or Audit');
  await page.goto(`${base}/#/audit`);
  await page.waitForSelector('.empty');
  assert(await page.$('#audit-table') === null, 'no audit trail for a manager');

  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  console.log('roles: all checks passed');
} finally {
  await close();
}
