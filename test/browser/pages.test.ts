import { createHash, randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { STRONG_PASSWORD, uniqueName } from '../helpers/browser.js';
import {
  axeAudit,
  type AxeViolation,
  type ChromiumHandle,
  DESKTOP,
  enrolTwoFactor,
  expectNoProblems,
  fillByLabel,
  isSerious,
  launchChromium,
  type LiveApp,
  newContext,
  PHONE,
  register,
  screenshotPath,
  SCREENSHOTS,
  signIn,
  signOut,
  startLiveApp,
  writeArtifact,
} from './harness.js';

/**
 * Every page, in every state people see it in: axe-core finds no serious or
 * critical violation, no script error or CSP violation happens, and a phone
 * and a desktop screenshot land in test-artifacts/screenshots/.
 */
describe('browser: every page is accessible and photographed', function () {
  this.timeout(30_000);
  let chromium: ChromiumHandle;
  let live: LiveApp;
  let context: BrowserContext;
  let page: Page;
  let problems: string[];
  const results: Record<string, { serious: number; other: number; violations: AxeViolation[]; needsReview: string[] }> = {};
  const username = uniqueName('pages');

  before(async () => {
    chromium = await launchChromium();
    live = await startLiveApp();
    ({ context, page, problems } = await newContext(chromium.browser));
  });

  after(async () => {
    writeArtifact('axe-results.json', `${JSON.stringify({ screenshots: SCREENSHOTS, pages: results }, null, 2)}\n`);
    await context?.close();
    await chromium?.close();
    await live?.stop();
  });

  /** Audits the page (by default this suite's window) as it stands at phone and at desktop width, photographing it at each. */
  async function check(name: string, on: { page: Page; problems: string[] } = { page, problems }): Promise<void> {
    const { page, problems } = on;
    const found: AxeViolation[] = [];
    const needsReview = new Set<string>();
    for (const [width, size] of [['phone', PHONE], ['desktop', DESKTOP]] as const) {
      await page.setViewportSize(size);
      const audit = await axeAudit(page);
      for (const v of audit.violations) {
        if (!found.some((f) => f.id === v.id)) found.push({ ...v, nodes: v.nodes.map((n) => `${n} (${width})`) });
      }
      for (const id of audit.incomplete) needsReview.add(id);
      await page.screenshot({ path: screenshotPath(name, width), fullPage: true });
    }
    const serious = found.filter(isSerious);
    results[name] = { serious: serious.length, other: found.length - serious.length, violations: found, needsReview: [...needsReview] };
    expect(serious, `${name}: ${serious.map((v) => `${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(', ')}`).join('; ')}`).to.deep.equal([]);
    expectNoProblems(problems);
  }

  async function go(path: string, status = 200): Promise<void> {
    const res = await page.goto(live.base + path);
    expect(res?.status(), path).to.equal(status);
  }

  it('home, signed out', async () => {
    await go('/');
    await check('home');
  });

  it('sign-in page', async () => {
    await go('/auth/login');
    await check('login');
  });

  it('sign-in page after a failed attempt', async () => {
    await go('/auth/login');
    await fillByLabel(page, { Username: 'nobody-at-all', Password: 'wrong password 123' });
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByText('Invalid username or password').waitFor();
    await check('login-error');
  });

  it('registration page', async () => {
    await go('/auth/register');
    await check('register');
  });

  it('registration page with field errors', async () => {
    await go('/auth/register');
    await fillByLabel(page, { Username: 'ab', Password: 'password', 'Repeat the password': 'passwort' });
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.locator('#form-errors li').first().waitFor();
    await check('register-errors');
  });

  it('home, signed in', async () => {
    await register(page, live.base, username);
    await check('home-signed-in');
  });

  it('token page', async () => {
    await go('/token');
    await check('token');
  });

  it('token page with ES256, showing the public key', async () => {
    // Its own app and window: cookies ignore the port, so one window would mix the two apps' sessions.
    const es256 = await startLiveApp({ JWT_ALGORITHM: 'ES256' });
    const es256Window = await newContext(chromium.browser);
    try {
      await register(es256Window.page, es256.base, uniqueName('pages'));
      expect((await es256Window.page.goto(`${es256.base}/token`))?.status()).to.equal(200);
      await es256Window.page.getByRole('button', { name: 'Copy PEM' }).waitFor();
      await check('token-es256', es256Window);
    } finally {
      await es256Window.context.close();
      await es256.stop();
    }
  });

  it('account page', async () => {
    await go('/account');
    await check('account');
  });

  it('account page with a refused password change', async () => {
    await go('/account');
    await fillByLabel(page, { 'Current password': 'not my password', 'New password': 'short', 'Repeat the new password': 'other' });
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.locator('#form-errors li').first().waitFor();
    await check('account-errors');
  });

  it('account page after a password change', async () => {
    await go('/account');
    const next = `${STRONG_PASSWORD} again`;
    await fillByLabel(page, { 'Current password': STRONG_PASSWORD, 'New password': next, 'Repeat the new password': next });
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByText('Your password was changed').waitFor();
    await check('account-changed');
  });

  describe('two-factor authentication', () => {
    // A window and user of their own: turning it on signs out the other sessions.
    let own: { page: Page; problems: string[]; context: BrowserContext };
    const name = uniqueName('pages2fa');

    before(async () => {
      own = await newContext(chromium.browser);
      await register(own.page, live.base, name);
    });

    after(() => own?.context.close());

    async function goOwn(path: string, status = 200): Promise<void> {
      expect((await own.page.goto(live.base + path))?.status(), path).to.equal(status);
    }

    it('set-up page with the QR code', async () => {
      await goOwn('/account/2fa');
      await own.page.locator('[data-totp-secret]').waitFor();
      await check('two-factor-setup', own);
    });

    it('recovery codes page', async () => {
      await enrolTwoFactor(own.page);
      await check('recovery-codes', own);
    });

    it('manage page, with two-factor authentication on', async () => {
      await goOwn('/account/2fa');
      await own.page.getByRole('button', { name: 'Turn off two-factor authentication' }).waitFor();
      await check('two-factor-manage', own);
    });

    it('account page, with two-factor authentication on', async () => {
      await goOwn('/account');
      await check('account-two-factor-on', own);
    });

    it('second step of sign-in, code', async () => {
      await signOut(own.page, live.base);
      await goOwn('/auth/login');
      await signIn(own.page, name);
      await own.page.waitForURL(`${live.base}/auth/2fa`);
      await check('two-factor-login', own);
    });

    it('second step of sign-in after a wrong code', async () => {
      await fillByLabel(own.page, { Code: '12345' });
      await own.page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await own.page.locator('#form-errors').getByText('That code is not right.').waitFor();
      await check('two-factor-login-error', own);
    });

    it('second step of sign-in, recovery code', async () => {
      await goOwn('/auth/2fa?method=recovery');
      await check('two-factor-login-recovery', own);
    });
  });

  describe('password reset link', () => {
    /** A live link for this suite's user, stored as `npm run users -- reset-link` stores one (its SHA-256). */
    async function resetPath(): Promise<string> {
      const token = randomBytes(32).toString('base64url');
      const user = await live.t.database.users.findOne({ where: { username } });
      const now = Date.now();
      await live.t.database.passwordResets.create({
        tokenHash: createHash('sha256').update(token).digest('hex'),
        userId: user!.id,
        createdAt: new Date(now),
        expiresAt: new Date(now + 30 * 60_000),
        usedAt: null,
      });
      return `/auth/reset/${token}`;
    }

    it('reset form', async () => {
      await go(await resetPath());
      await check('reset-password');
    });

    it('reset form with field errors', async () => {
      await go(await resetPath());
      await fillByLabel(page, { 'New password': 'short', 'Repeat the new password': 'other' });
      await page.getByRole('button', { name: 'Set the new password' }).click();
      await page.locator('#form-errors').waitFor();
      await check('reset-password-errors');
    });

    it('unknown, used or expired link', async () => {
      await go(`/auth/reset/${randomBytes(32).toString('base64url')}`, 404);
      await check('reset-password-invalid');
    });
  });

  it('page not found', async () => {
    await go('/no-such-page', 404);
    await check('not-found');
  });
});
