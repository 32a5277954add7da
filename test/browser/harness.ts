import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { generate } from 'otplib';
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { projectRoot } from '../../paths.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { STRONG_PASSWORD } from '../helpers/browser.js';
import { resolveChromium, startChromium, type ChromiumChoice } from '../helpers/chromium.js';

export const PHONE = { width: 390, height: 844 } as const;
export const DESKTOP = { width: 1280, height: 800 } as const;

export const ARTIFACTS = path.join(projectRoot, 'test-artifacts');
export const SCREENSHOTS = path.join(ARTIFACTS, 'screenshots');

export interface ChromiumHandle {
  browser: Browser;
  close(): Promise<void>;
}

let choosing: Promise<ChromiumChoice> | undefined;
let announced = false;

/**
 * Starts headless Chromium with a fresh profile, or fails with one clear line
 * saying why. The browser is chosen once per test run (see
 * {@link resolveChromium}), and the first launch prints which one runs.
 */
export async function launchChromium(): Promise<ChromiumHandle> {
  choosing ??= resolveChromium();
  const choice = await choosing;
  const browser = await startChromium(choice);
  if (!announced) {
    announced = true;
    process.stdout.write(`browser: Chromium ${browser.version()} from ${choice.origin}\n`);
  }
  return { browser, close: () => browser.close().catch(() => undefined) };
}

export interface LiveApp {
  t: TestApp;
  /** e.g. http://localhost:41234 (also the app's PUBLIC_URL) */
  base: string;
  stop(): Promise<void>;
}

/** The real app on a fresh in-memory database, listening on a free local port; `env` overrides `.env.test` (not PUBLIC_URL). */
export async function startLiveApp(env: Record<string, string> = {}): Promise<LiveApp> {
  // The port comes first, so the app can be told the address people reach it at (PUBLIC_URL:
  // links, the curl line) and a browser on localhost is on the app's own origin.
  const server = createServer({ maxHeaderSize: 96 * 1024 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const base = `http://localhost:${port}`;
  const t = await startTestApp({ env: { ...env, PUBLIC_URL: base } });
  server.on('request', t.app);
  return {
    t,
    base,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await t.close();
    },
  };
}

/** A new isolated browser window (own cookies) that fails the test on script errors and CSP violations. */
export async function newContext(browser: Browser, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: DESKTOP, locale: 'en-GB', timezoneId: 'Europe/Berlin', ...options });
  // Fail within a test's time with Playwright's own message rather than mocha's bare timeout.
  context.setDefaultTimeout(8_000);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`script error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`CSP: ${msg.text()}`);
  });
  return { context, page, problems };
}

export interface AxeViolation {
  id: string;
  impact: 'minor' | 'moderate' | 'serious' | 'critical' | null;
  help: string;
  nodes: string[];
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeAudit {
  violations: AxeViolation[];
  /** Rules axe could not decide alone ("needs review"), by id. */
  incomplete: string[];
}

/**
 * Runs axe-core inside the page (offline). The CSP forbids injected inline
 * scripts, so the source is evaluated through the DevTools protocol instead.
 */
export async function axeAudit(page: Page): Promise<AxeAudit> {
  if (!(await page.evaluate<boolean>('typeof window.axe === "object"'))) await page.evaluate(axeSource);
  return page.evaluate<AxeAudit>(`
    window.axe.run(document, { resultTypes: ['violations'] }).then((result) => ({
      violations: result.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((n) => n.target.join(' ')),
      })),
      incomplete: result.incomplete.map((r) => r.id),
    }))
  `);
}

export function isSerious(v: AxeViolation): boolean {
  return v.impact === 'serious' || v.impact === 'critical';
}

/** Screenshot file name for a page at a width. */
export function screenshotPath(name: string, width: 'phone' | 'desktop'): string {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return path.join(SCREENSHOTS, `${name}-${width}.png`);
}

export function writeArtifact(name: string, content: string): void {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(path.join(ARTIFACTS, name), content);
}

/**
 * The focused element's id once a freshly loaded page has applied its
 * autofocus (browsers run it at a later rendering step than the load event),
 * waiting up to 3 s for `expected`; whatever has focus then is returned for the
 * assertion.
 */
export async function focusAfterLoad(page: Page, expected: string): Promise<string> {
  await page
    .waitForFunction(`document.activeElement !== null && document.activeElement.id === ${JSON.stringify(expected)}`, undefined, { timeout: 3_000 })
    .catch(() => undefined);
  return focusedId(page);
}

/** The id (or tag name) of the focused element. */
export function focusedId(page: Page): Promise<string> {
  return page.evaluate<string>('document.activeElement ? (document.activeElement.id || document.activeElement.tagName.toLowerCase()) : ""');
}

/** True when the focused element draws a visible focus indicator (an outline or a box shadow). */
export function focusIsVisible(page: Page): Promise<boolean> {
  return page.evaluate<boolean>(`(() => {
    const el = document.activeElement;
    if (!el || el === document.body) return false;
    const s = getComputedStyle(el);
    const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    return outline || (s.boxShadow && s.boxShadow !== 'none');
  })()`);
}

/** Fills inputs found by their visible label, which also proves each label is tied to its input. */
export async function fillByLabel(page: Page, fields: Record<string, string>): Promise<void> {
  for (const [label, value] of Object.entries(fields)) {
    await page.getByLabel(label, { exact: true }).fill(value);
  }
}

/** Calls the API from Node, like a script holding the copied token would. */
export async function apiMe(base: string, token: string): Promise<{ status: number; body: { username?: string } }> {
  const res = await fetch(`${base}/api/me`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as { username?: string } };
}

export function expectNoProblems(problems: string[]): void {
  expect(problems, problems.join('\n')).to.deep.equal([]);
}

/** Creates an account through the form, which signs the window in and lands on home. */
export async function register(page: Page, base: string, username: string, password = STRONG_PASSWORD): Promise<void> {
  expect((await page.goto(`${base}/auth/register`))?.status()).to.equal(200);
  await fillByLabel(page, { Username: username, Password: password, 'Repeat the password': password });
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL(`${base}/`);
}

/** Types the name and password into the sign-in form on the page and sends it. */
export async function signIn(page: Page, username: string, password = STRONG_PASSWORD): Promise<void> {
  await fillByLabel(page, { Username: username, Password: password });
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/** Signs out with the header's button, which lands on home. */
export async function signOut(page: Page, base: string): Promise<void> {
  await page.getByRole('banner').getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${base}/`);
}

/** RFC 6238 time step of the app's codes. */
export const TOTP_STEP_MS = 30_000;

/** The time step that `ms` (milliseconds since 1970) falls in. */
export function timeStepOf(ms: number): number {
  return Math.floor(ms / TOTP_STEP_MS);
}

/** The code an authenticator app shows for `secret` during time step `step`. */
export function totpCode(secret: string, step: number): Promise<string> {
  return generate({ secret, epoch: (step * TOTP_STEP_MS) / 1000 });
}

/**
 * The code of the current time step once the real clock is past `step`
 * (each step's code is accepted once, so a sign-in after enrolment needs a
 * later one). Polls, sleeping no longer than the step has left.
 */
export async function codeAfterStep(secret: string, step: number): Promise<{ code: string; step: number }> {
  for (let left = (step + 1) * TOTP_STEP_MS - Date.now(); left > 0; left = (step + 1) * TOTP_STEP_MS - Date.now()) {
    await sleep(Math.min(left + 5, 500));
  }
  const now = timeStepOf(Date.now());
  return { code: await totpCode(secret, now), step: now };
}

/**
 * On the set-up page (`/account/2fa`): reads the secret from its
 * `data-totp-secret` element, types the current code and the password and
 * turns two-factor authentication on, which shows the recovery codes. A code
 * refused because its 30 s step ended on the way is retried once with the
 * next step's; any other refusal fails the test.
 */
export async function enrolTwoFactor(page: Page, password = STRONG_PASSWORD): Promise<{ secret: string; step: number }> {
  const secret = (await page.locator('[data-totp-secret]').innerText()).trim();
  expect(secret, 'a base32 secret of at least 128 bits').to.match(/^[A-Z2-7]{26,}$/);
  let step = timeStepOf(Date.now());
  for (let attempt = 1; ; attempt += 1) {
    await fillByLabel(page, { 'Code the app shows now': await totpCode(secret, step), 'Current password': password });
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/account/2fa'),
      page.getByRole('button', { name: 'Turn on two-factor authentication' }).click(),
    ]);
    if (response.status() === 200) {
      await page.getByRole('heading', { name: 'Your recovery codes' }).waitFor();
      return { secret, step };
    }
    await page.locator('#form-errors').waitFor();
    const now = timeStepOf(Date.now());
    expect(attempt === 1 && now > step, `the code of time step ${step} was refused (${response.status()}) at step ${now}`).to.equal(true);
    step = now;
  }
}
