// Single sign-on in a real Chromium: the sign-in page's "Sign in with …", the OpenID provider's
// own login and consent forms, and back to the page that asked, signed in with the provider's
// roles; a sign-in cancelled at the provider comes back with the reason.
// Usage: node sso.mjs BASE_URL SCREENSHOT_DIR (run by crates/radport/tests/oidc.rs).
import { assert, step, openPage } from './harness.mjs';

const [base, shots] = process.argv.slice(2);

const { page, pageErrors, shot, close } = await openPage('radport-sso-', shots, { consoleErrors: false });

try {
  step('the sign-in page offers single sign-on beside the local form');
  await page.goto(`${base}/#/gallery?project=lung`);
  await page.waitForSelector('#sso-login');
  assert(await page.$('#login-form') !== null, 'the local form is there too');
  const label = await page.textContent('#sso-login');
  assert(label === 'Sign in with Test IdP', label);
  await shot('sso-login');

  step('cancelled at the provider: back on the sign-in page with the reason');
  await page.click('#sso-login');
  await page.waitForSelector('input[name=login]');
  await page.click('a[href*="/abort"]');
  await page.waitForSelector('#sso-login');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  const reason = await page.textContent('#login-error');
  assert(/access_denied/.test(reason), reason);
  await shot('sso-cancelled');

  step('signed in at the provider: back where it started, as the provider says');
  await page.click('#sso-login');
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', 'lungviewer');
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  await page.waitForSelector('input[name=prompt][value=consent]', { state: 'attached' });
  await page.click('button[type=submit]');
  await page.waitForSelector('#user-name');
  assert((await page.textContent('#user-name')) === 'lungviewer', 'the header names the user');
  assert(page.url().includes('#/gallery?project=lung'), page.url());
  await page.waitForSelector('#series-grid, .empty');
  await shot('sso-signed-in');

  step("the session's cookies work for the page's requests, and hold the provider's roles");
  const statuses = await page.evaluate(async () => [
    await fetch('/api/projects/lung/series').then((r) => r.status),
    await fetch('/api/users').then((r) => r.status),
  ]);
  assert(statuses[0] === 200 && statuses[1] === 403, `statuses ${statuses}`);
  const cookies = await page.evaluate(() => document.cookie);
  assert(!cookies.includes('radport_session') && cookies.includes('radport_csrf='), cookies);

  assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  console.log('sso: all checks passed');
} finally {
  await close();
}
