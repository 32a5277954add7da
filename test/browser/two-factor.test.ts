import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { decodeJwt } from 'jose';
import type { Page } from 'playwright-core';
import { uniqueName } from '../helpers/browser.js';
import {
  apiMe,
  type ChromiumHandle,
  codeAfterStep,
  enrolTwoFactor,
  expectNoProblems,
  fillByLabel,
  focusAfterLoad,
  launchChromium,
  type LiveApp,
  newContext,
  register,
  signIn,
  signOut,
  startLiveApp,
  totpCode,
} from './harness.js';

/**
 * Two-factor sign-in as a person meets it, in Chromium against the real app
 * on the real clock: set-up with the secret from the page, recovery codes,
 * a sign-in that refuses the enrolment's code again and takes one from a
 * later time step, a token that says so, and a sign-in with a recovery code.
 * The same flow runs with JavaScript on and off.
 */
describe('browser: two-factor authentication from set-up to sign-in', function () {
  // A sign-in code must come from a later 30 s step than the enrolment code: each run may wait for one.
  this.timeout(90_000);
  let chromium: ChromiumHandle;
  let live: LiveApp;

  before(async () => {
    chromium = await launchChromium();
    live = await startLiveApp();
  });

  after(async () => {
    await chromium?.close();
    await live?.stop();
  });

  const url = (path: string) => `${live.base}${path}`;

  /** Signs in with the password and expects the second step's page, not a session. */
  async function passwordStep(page: Page, username: string): Promise<void> {
    await page.goto(url('/'));
    await page.getByRole('banner').getByRole('link', { name: 'Sign in' }).click();
    await signIn(page, username);
    await page.waitForURL(url('/auth/2fa'));
    expect(await page.getByRole('banner').innerText(), 'not signed in yet').to.not.contain('Signed in as');
  }

  async function expectSignedIn(page: Page, username: string): Promise<void> {
    await page.waitForURL(url('/'));
    expect(await page.getByRole('banner').innerText()).to.contain(`Signed in as ${username}`);
    expect(await page.getByRole('main').innerText()).to.contain(`You are signed in as ${username}`);
  }

  async function journey(page: Page, prefix: string): Promise<void> {
    const username = uniqueName(prefix);
    await register(page, live.base, username);

    await page.goto(url('/account'));
    const section = page.getByRole('region', { name: 'Two-factor authentication' });
    expect(await section.innerText()).to.contain('Off');
    await section.getByRole('link', { name: 'Set up two-factor authentication' }).click();
    await page.waitForURL(url('/account/2fa'));
    expect(await page.getByRole('img', { name: 'QR code for your authenticator app' }).isVisible()).to.equal(true);
    const { secret, step: enrolStep } = await enrolTwoFactor(page);

    const recoveryCodes = await page.locator('[data-recovery-code]').allInnerTexts();
    expect(recoveryCodes).to.have.length(10);
    expect(new Set(recoveryCodes).size).to.equal(10);
    const downloadLink = page.getByRole('link', { name: 'Download as text' });
    expect(await downloadLink.getAttribute('download')).to.equal('token-bridge-recovery-codes.txt');
    const [download] = await Promise.all([page.waitForEvent('download'), downloadLink.click()]);
    const saved = await readFile(await download.path(), 'utf8');
    for (const code of recoveryCodes) expect(saved, 'the downloaded file lists every code').to.contain(code);
    await page.getByRole('link', { name: 'Done' }).click();
    await page.waitForURL(url('/account'));
    expect(await section.innerText()).to.contain('On').and.contain('10 recovery codes left');
    await signOut(page, live.base);

    await passwordStep(page, username);
    const codeField = page.getByLabel('Code', { exact: true });
    expect(await codeField.getAttribute('autocomplete')).to.equal('one-time-code');
    expect(await codeField.getAttribute('inputmode')).to.equal('numeric');
    expect(await focusAfterLoad(page, 'code'), 'the code field has focus on arrival').to.equal('code');
    // The enrolment's code, typed again, is refused: each code works once.
    await page.keyboard.type(await totpCode(secret, enrolStep));
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in', exact: true }).click(),
    ]);
    expect(refused.status()).to.equal(401);
    await page.locator('#form-errors').getByText('That code is not right.').waitFor();
    expect(await focusAfterLoad(page, 'form-errors')).to.equal('form-errors');

    const { code, step } = await codeAfterStep(secret, enrolStep);
    await fillByLabel(page, { Code: code });
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expectSignedIn(page, username);
    expect(step).to.be.greaterThan(enrolStep);

    const minted = await page.goto(url('/auth/token'));
    expect(minted?.status()).to.equal(200);
    const { token } = (await minted!.json()) as { token: string };
    expect(decodeJwt(token).amr, 'password, a one-time code, so multi-factor').to.deep.equal(['pwd', 'otp', 'mfa']);
    expect((await apiMe(live.base, token)).body.username).to.equal(username);

    await page.goto(url('/'));
    await signOut(page, live.base);
    await passwordStep(page, username);
    await page.getByRole('link', { name: 'Use a recovery code instead' }).click();
    await page.waitForURL(url('/auth/2fa?method=recovery'));
    expect(await focusAfterLoad(page, 'recoveryCode'), 'the recovery code field has focus on arrival').to.equal('recoveryCode');
    await fillByLabel(page, { 'Recovery code': recoveryCodes[3]! });
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expectSignedIn(page, username);
    await page.goto(url('/account'));
    expect(await section.innerText()).to.contain('9 recovery codes left');
  }

  it('sets up two-factor authentication, signs in with a fresh code (amr pwd, otp, mfa) and then with a recovery code', async () => {
    const { context, page, problems } = await newContext(chromium.browser);
    try {
      await journey(page, 'twofa');
      expectNoProblems(problems);
    } finally {
      await context.close();
    }
  });

  it('does the same with JavaScript turned off', async () => {
    const { context, page, problems } = await newContext(chromium.browser, { javaScriptEnabled: false });
    try {
      await journey(page, 'twofanojs');
      expectNoProblems(problems);
    } finally {
      await context.close();
    }
  });
});
