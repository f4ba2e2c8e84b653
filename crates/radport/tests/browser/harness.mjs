// What the access-control browser tests (login, sso, admin, roles, erasure) share: reading
// their environment, assertions and step lines, a Chromium page that collects the page's
// errors, screenshots, the sign-in form, and requests to the API from outside the browser.
import { launchChromium } from './launch.mjs';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** An environment variable the test needs. */
export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

export const step = (text) => console.log(`-- ${text}`);

/**
 * A page in a fresh Chromium profile (`prefix`XXXXXX). `pageErrors` collects uncaught errors
 * (and, with `consoleErrors`, console errors other than failed loads); `shot(name)` saves a
 * screenshot into `shots`; `close()` ends the browser and removes the profile.
 */
export async function openPage(prefix, shots, { consoleErrors = true } = {}) {
  mkdirSync(shots, { recursive: true });
  const { context, profile } = await launchChromium(prefix);
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  if (consoleErrors) {
    page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(`console: ${m.text()}`); });
  }
  const shot = async (name, { fullPage = true } = {}) => {
    if (fullPage) await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
  };
  const signIn = async (name, password) => {
    await page.fill('#login-name', name);
    await page.fill('#login-password', password);
    await page.click('#login-submit');
  };
  const signOut = async () => {
    await page.click('#sign-out');
    await page.waitForSelector('#login-form');
  };
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, pageErrors, shot, signIn, signOut, close };
}

/** A request to the API from outside the browser (its own cookies: none). */
export const apiCaller = (base) => async (method, path, { token, body } = {}) => {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: r.status, json };
};
