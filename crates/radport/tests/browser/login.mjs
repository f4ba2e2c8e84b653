// Sign-in in a real Chromium, with access enforced: the redirect to the sign-in page and back,
// a wrong password, the header, CSRF refusal, sign-out, and a first sign-in that must change
// the password. Usage: node login.mjs BASE_URL SCREENSHOT_DIR (environment: see browser.rs).
import { env, assert, step, openPage } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const ADMIN_PASSWORD = env('RADPORT_ADMIN_PASSWORD');
const VERA_PASSWORD = env('RADPORT_VERA_PASSWORD');

const { page, pageErrors, shot, close, signIn } = await openPage('radport-login-', shots, { consoleErrors: false });

try {
  step('a page asks for a session: to the sign-in page, and back after it');
  await page.goto(`${base}/#/projects`);
  await page.waitForSelector('#login-form');
  assert(page.url().includes('#/login?next='), page.url());
  await shot('login');

  step('a wrong password is refused with a message');
  await signIn('admin', 'not the password');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  const refused = await page.textContent('#login-error');
  assert(/wrong user name or password/.test(refused), refused);

  step('the administrator signs in and lands where they wanted to go');
  await signIn('admin', ADMIN_PASSWORD);
  await page.waitForSelector('#project-name');
  assert(page.url().includes('#/projects'), page.url());
  assert((await page.textContent('#user-name')) === 'admin', 'the header names the user');
  await shot('signed-in-admin');

  step('the session cookie is out of reach of scripts; the CSRF cookie is not');
  const cookies = await page.evaluate(() => document.cookie);
  assert(!cookies.includes('radport_session'), cookies);
  assert(cookies.includes('radport_csrf='), cookies);

  step('a state-changing request without the CSRF header is refused; with it, done');
  const statuses = await page.evaluate(async () => {
    const post = (headers) => fetch('/api/projects', {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ name: 'from-page' }),
    }).then((r) => r.status);
    const csrf = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith('radport_csrf=')).slice(13);
    return [await post({}), await post({ 'X-CSRF-Token': csrf })];
  });
  assert(statuses[0] === 403 && statuses[1] === 201, `statuses ${statuses}`);

  step('the UI creates a project (its requests carry the header)');
  await page.fill('#project-name', 'made-in-ui');
  await page.click('#create-project');
  await page.waitForSelector('[data-project="made-in-ui"]');

  step('sign out: back to the sign-in page, and the API refuses the old session');
  await page.click('#sign-out');
  await page.waitForSelector('#login-form');
  const after = await page.evaluate(() => fetch('/api/projects').then((r) => r.status));
  assert(after === 401, `after sign-out: ${after}`);

  step('a first sign-in with a password set by the administrator must change it');
  await page.goto(`${base}/#/gallery?project=lung`);
  await page.waitForSelector('#login-form');
  await signIn('vera', VERA_PASSWORD);
  await page.waitForSelector('#password-form');
  await shot('must-change-password');
  const blocked = await page.evaluate(() => fetch('/api/projects').then((r) => r.status));
  assert(blocked === 403, `before the change: ${blocked}`);
  await page.fill('#password-current', VERA_PASSWORD);
  await page.fill('#password-new', 'vera chose this one');
  await page.fill('#password-again', 'vera chose this one');
  await page.click('#password-submit');
  await page.waitForSelector('#series-grid, .empty');
  assert(page.url().includes('project=lung'), page.url());
  assert((await page.textContent('#user-name')) === 'vera', 'the header names vera');

  step('a viewer sees only her project, and no form to create projects');
  await page.goto(`${base}/#/projects`);
  await page.waitForSelector('[data-project="lung"]');
  const projects = await page.$$eval('[data-project]', (els) => els.map((e) => e.dataset.project));
  assert(JSON.stringify(projects) === '["lung"]', `projects ${projects}`);
  assert(await page.$('#project-name') === null, 'no create form for a viewer');
  assert(await page.$('[data-project="lung"] a[href^="#/upload"]') === null, 'no upload button for a viewer');
  await shot('signed-in-viewer');

  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  console.log('login: all checks passed');
} finally {
  await close();
}
