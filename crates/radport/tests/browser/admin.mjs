// The administrator's access pages in a real Chromium, with access enforced: Users (an account
// made in the page, whose shown password signs it in; reset, disable, enable, administration),
// My tokens (a token made in the page works as a Bearer token and stops after its revocation in
// the page), the audit trail (the sign-ins), CSRF refusal, and a 401 in the middle of a session
// (signed out in another tab; the session revoked): to the sign-in page and back.
// Usage: node admin.mjs BASE_URL SCREENSHOT_DIR (environment: see browser.rs).
import { env, assert, step, openPage, apiCaller } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const ADMIN_PASSWORD = env('RADPORT_ADMIN_PASSWORD');
const ADMIN_TOKEN = env('RADPORT_ADMIN_TOKEN');

/** A request from outside the browser (its own cookies: none). */
const call = apiCaller(base);
const signInStatus = async (name, password) => (await call('POST', '/api/session', { body: { name, password } })).status;

const { context, page, pageErrors, shot, close, signIn } = await openPage('radport-admin-', shots);
/** Confirms the open modal dialog. */
const confirm = async () => {
  await page.waitForSelector('dialog.modal[open]');
  await page.click('dialog.modal[open] button[value=ok]');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
};
const userRow = (name) => `#users-table tr[data-user="${name}"]`;

try {
  step('the Users page asks for a session first, and opens after it');
  await page.goto(`${base}/#/users`);
  await page.waitForSelector('#login-form');
  await signIn('admin', ADMIN_PASSWORD);
  await page.waitForSelector('#users-table');
  assert(page.url().includes('#/users'), page.url());
  assert(await page.isVisible('#nav-admin a[href="#/users"]'), 'an administrator sees the Users link');
  assert(await page.isVisible('#nav-admin a[href="#/audit"]'), 'an administrator sees the Audit link');
  assert(await page.isVisible('#nav-tokens'), 'everyone signed in sees My tokens');

  step('the administrator creates an account; the password is shown once and signs it in');
  await page.fill('#user-name-new', 'alice');
  await page.click('#create-user');
  await page.waitForSelector(userRow('alice'));
  const password = (await page.textContent('#user-password')).trim();
  assert(password.length >= 10, `a drawn password: ${password}`);
  assert(await page.isVisible('#user-secret [data-copy="user-password"]'), 'a copy button');
  const rowText = await page.textContent(userRow('alice'));
  assert(/must change/.test(rowText) && /active/.test(rowText), rowText);
  await shot('users');
  const first = await call('POST', '/api/session', { body: { name: 'alice', password } });
  assert(first.status === 201 && first.json.user === 'alice' && first.json.must_change_password, `alice signs in: ${JSON.stringify(first)}`);

  step('a name that is taken is refused with a message');
  await page.fill('#user-name-new', 'alice');
  await page.click('#create-user');
  await page.waitForFunction(() => document.querySelector('#user-error').textContent.length > 0);
  assert(/exists already/.test(await page.textContent('#user-error')), await page.textContent('#user-error'));

  step('a reset draws a new password (shown once); the old one stops working');
  await page.click(`${userRow('alice')} [data-action=reset]`);
  await confirm();
  await page.waitForFunction((old) => {
    const el = document.querySelector('#user-password');
    return el && el.textContent.trim() !== old;
  }, password);
  const fresh = (await page.textContent('#user-password')).trim();
  assert(await signInStatus('alice', password) === 401, 'the old password is refused');
  assert(await signInStatus('alice', fresh) === 201, 'the new password signs in');

  step('disable refuses the sign-in, enable allows it again');
  await page.click(`${userRow('alice')} [data-action=disable]`);
  await confirm();
  await page.waitForSelector(`${userRow('alice')} [data-action=enable]`);
  assert(/disabled/.test(await page.textContent(userRow('alice'))), 'shown as disabled');
  assert(await signInStatus('alice', fresh) === 401, 'a disabled account cannot sign in');
  await page.click(`${userRow('alice')} [data-action=enable]`);
  await page.waitForSelector(`${userRow('alice')} [data-action=disable]`);
  assert(await signInStatus('alice', fresh) === 201, 'enabled again');

  step('administration is granted and withdrawn; the own row offers neither, nor disable');
  await page.click(`${userRow('alice')} [data-action=admin]`);
  await confirm();
  await page.waitForSelector(`${userRow('alice')} [data-action=unadmin]`);
  const users = await call('GET', '/api/users', { token: ADMIN_TOKEN });
  assert(users.json.items.find((u) => u.name === 'alice').admin === true, 'alice is an administrator');
  await page.click(`${userRow('alice')} [data-action=unadmin]`);
  await confirm();
  await page.waitForSelector(`${userRow('alice')} [data-action=admin]`);
  assert(await page.$(`${userRow('admin')} [data-action=disable]`) === null, 'no disabling oneself');
  assert(await page.$(`${userRow('admin')} [data-action=unadmin]`) === null, 'no withdrawing one\'s own administration');

  step('a state-changing request without the CSRF header is refused; with it, done');
  const statuses = await page.evaluate(async () => {
    const post = (headers) => fetch('/api/tokens', {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ name: 'from-page', expires_in_days: 1 }),
    }).then((r) => r.status);
    const csrf = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith('radport_csrf=')).slice(13);
    return [await post({}), await post({ 'X-CSRF-Token': 'not-the-cookie' }), await post({ 'X-CSRF-Token': csrf })];
  });
  assert(statuses[0] === 403 && statuses[1] === 403 && statuses[2] === 201, `statuses ${statuses}`);

  step('My tokens: a token made in the page works as a Bearer token');
  await page.click('#nav-tokens');
  await page.waitForSelector('#token-name');
  await page.waitForSelector('#token-projects input[value="lung"]');
  await page.fill('#token-name', 'ci import');
  await page.selectOption('#token-role', 'viewer');
  await page.check('#token-projects input[value="lung"]');
  await page.fill('#token-days', '30');
  await page.click('#token-create');
  await page.waitForSelector('#token-secret');
  const secret = (await page.textContent('#token-secret')).trim();
  assert(/^rpt_/.test(secret), `a token: ${secret}`);
  const row = '#tokens-table tr[data-name="ci import"]';
  await page.waitForSelector(row);
  const tokenText = await page.textContent(row);
  assert(/viewer/.test(tokenText) && /lung/.test(tokenText) && /active/.test(tokenText), tokenText);
  assert(await page.$('#tokens-table tr[data-name="web session"]') === null, 'web sessions are listed apart');
  assert(await page.$('#sessions-table tbody tr') !== null, 'this browser\'s session is listed');
  const listed = await call('GET', '/api/projects', { token: secret });
  assert(listed.status === 200, `GET /api/projects with the token: ${listed.status}`);
  assert(JSON.stringify(listed.json.items.map((p) => p.name)) === '["lung"]', `limited to lung: ${JSON.stringify(listed.json)}`);
  await shot('tokens');

  step('revoked in the page, the token stops working');
  await page.click(`${row} [data-revoke]`);
  await confirm();
  await page.waitForFunction((sel) => /revoked/.test(document.querySelector(sel).textContent), row);
  assert(await page.$(`${row} [data-revoke]`) === null, 'no revoke button on a revoked token');
  const after = await call('GET', '/api/projects', { token: secret });
  assert(after.status === 401, `after the revocation: ${after.status}`);

  step('the audit page shows the sign-ins, newest first, and filters them');
  await page.click('#nav-admin a[href="#/audit"]');
  await page.waitForSelector('#audit-table');
  await page.fill('#audit-action', 'sign-in');
  await page.click('#audit-apply');
  // The filtered page's table, not the one it replaces (which stays until the new one is
  // rendered, and has other actions in it).
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#audit-table tbody tr')];
    return location.hash.includes('action=sign-in') && trs.length > 0
      && trs.every((tr) => tr.cells[3].textContent === 'sign-in');
  });
  const rows = await page.$$eval('#audit-table tbody tr', (trs) => trs.map((tr) => ({
    at: tr.cells[0].title, actor: tr.cells[1].textContent, action: tr.cells[3].textContent, outcome: tr.dataset.outcome,
  })));
  assert(rows.length >= 6 && rows.every((r) => r.action === 'sign-in'), JSON.stringify(rows));
  assert(rows.some((r) => r.actor === 'admin' && r.outcome === 'success'), 'the admin\'s sign-in');
  assert(rows.some((r) => r.actor === 'alice' && r.outcome === 'refused'), 'alice refused (old password, disabled)');
  assert(rows.some((r) => r.actor === 'alice' && r.outcome === 'success'), 'alice signed in');
  const times = rows.map((r) => r.at);
  assert(JSON.stringify(times) === JSON.stringify([...times].sort().reverse()), `newest first: ${times}`);
  await shot('audit');
  await page.selectOption('#audit-outcome', 'refused');
  await page.fill('#audit-actor', 'alice');
  await page.click('#audit-apply');
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#audit-table tbody tr')];
    return location.hash.includes('outcome=refused') && trs.length > 0
      && trs.every((tr) => tr.dataset.outcome === 'refused');
  });
  const refusedRows = await page.$$eval('#audit-table tbody tr', (trs) => trs.map((tr) => [tr.cells[1].textContent, tr.dataset.outcome]));
  assert(refusedRows.length >= 2 && refusedRows.every(([a, o]) => a === 'alice' && o === 'refused'), JSON.stringify(refusedRows));
  const total = (await call('GET', '/api/audit?actor=alice&outcome=refused', { token: ADMIN_TOKEN })).json.total;
  assert(String(total) === (await page.textContent('#audit-total')).split(' ')[0], `the page counts ${total}`);

  step('signed out in another tab: the next page goes to the sign-in page, and back after it');
  await page.goto(`${base}/#/users`);
  await page.waitForSelector('#users-table');
  const other = await context.newPage();
  await other.goto(`${base}/#/tokens`);
  await other.waitForSelector('#sign-out');
  await other.click('#sign-out');
  await other.waitForSelector('#login-form');
  await other.close();
  await page.click('#nav-admin a[href="#/audit"]');
  await page.waitForSelector('#login-form');
  assert(decodeURIComponent(page.url()).includes('next=#/audit'), page.url());
  assert(await page.isVisible('#session-ended'), 'the sign-in page says the session ended');
  await shot('session-ended');
  await signIn('admin', ADMIN_PASSWORD);
  await page.waitForSelector('#audit-table');
  assert(page.url().includes('#/audit'), page.url());

  step('a session revoked by someone else: the next page goes to the sign-in page, and back after it');
  await page.goto(`${base}/#/tokens`);
  await page.waitForSelector('#sessions-table');
  const sessions = (await call('GET', '/api/tokens', { token: ADMIN_TOKEN })).json.items
    .filter((t) => t.name === 'web session' && !t.revoked_at);
  assert(sessions.length >= 1, 'the web session is a token of admin');
  for (const t of sessions) {
    const revoked = await call('DELETE', `/api/tokens/${t.id}`, { token: ADMIN_TOKEN });
    assert(revoked.status === 204, `revoking ${t.id}: ${revoked.status}`);
  }
  await page.click('#nav-admin a[href="#/users"]');
  await page.waitForSelector('#login-form');
  assert(decodeURIComponent(page.url()).includes('next=#/users'), page.url());
  assert(!(await page.isVisible('#sign-out')), 'the header no longer offers Sign out');
  await signIn('admin', ADMIN_PASSWORD);
  // The revoked session's cookie is still in the browser: it must not stand in the way.
  await page.waitForSelector('#users-table');
  assert(page.url().includes('#/users'), page.url());

  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  console.log('admin: all checks passed');
} finally {
  await close();
}
