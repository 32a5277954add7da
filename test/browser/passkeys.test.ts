import { expect } from 'chai';
import jwt from 'jsonwebtoken';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { CDPSession, Page } from 'playwright-core';
import { AuditLog } from '../../services/audit-log.js';
import { PasskeyService, type Ceremony } from '../../services/passkeys.js';
import { uniqueName } from '../helpers/browser.js';
import {
  axeAudit,
  DESKTOP,
  expectNoProblems,
  isSerious,
  PHONE,
  screenshotPath,
  enrolTwoFactor,
  launchChromium,
  newContext,
  register,
  signIn,
  signOut,
  startLiveApp,
  type ChromiumHandle,
  type LiveApp,
} from './harness.js';

/** A platform authenticator with resident keys and user verification, as the DevTools protocol offers (always present, always verifying). */
async function virtualAuthenticator(page: Page): Promise<CDPSession> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return cdp;
}

/** axe at phone and desktop width (no serious violation) and a screenshot at each. */
async function auditAndPhotograph(page: Page, name: string): Promise<void> {
  for (const [width, size] of [['phone', PHONE], ['desktop', DESKTOP]] as const) {
    await page.setViewportSize(size);
    const serious = (await axeAudit(page)).violations.filter(isSerious);
    expect(serious.map((v) => `${v.id} at ${v.nodes.join(', ')}`), `${name} (${width})`).to.deep.equal([]);
    await page.screenshot({ path: screenshotPath(name, width), fullPage: true });
  }
  await page.setViewportSize(DESKTOP);
}

/** The `amr` of a token this browser's session mints. */
async function amrOfSession(page: Page, base: string): Promise<string[]> {
  const token = await page.evaluate(async (url) => ((await (await fetch(url)).json()) as { token: string }).token, `${base}/auth/token`);
  return (jwt.decode(token) as { amr: string[] }).amr;
}

/**
 * Passkeys as a person uses them, in Chromium with a virtual authenticator
 * over the DevTools protocol (the app at http://localhost:PORT: a secure
 * context, RP ID `localhost`), then each server-side check of the sign-in
 * ceremony against an answer that authenticator really signed.
 */
describe('browser: passkeys (WebAuthn, virtual authenticator)', function () {
  this.timeout(90_000);
  let chromium: ChromiumHandle;
  let live: LiveApp;
  let page: Page;
  let problems: string[];
  const username = uniqueName('passkey');
  // Mocha runs a suite's own tests before its nested suites: the order below is the order of the story.
  /** A real sign-in answer and the ceremony it answered, captured from the page on its way to the server. */
  let captured: { response: AuthenticationResponseJSON; challenge: string } | undefined;

  before(async () => {
    chromium = await launchChromium();
    live = await startLiveApp();
    ({ page, problems } = await newContext(chromium.browser));
    await virtualAuthenticator(page);
    await page.route('**/auth/passkey', async (route) => {
      const body = route.request().postDataJSON() as { response: AuthenticationResponseJSON };
      const clientData = JSON.parse(Buffer.from(body.response.response.clientDataJSON, 'base64url').toString()) as { challenge: string };
      captured ??= { response: body.response, challenge: clientData.challenge };
      await route.continue();
    });
  });

  after(async () => {
    await chromium?.close();
    await live?.stop();
  });

  const url = (path: string) => `${live.base}${path}`;

  it('adds a passkey on /account (a sign-in within 5 minutes needs no password) and lists it', async () => {
    await register(page, live.base, username);
    await page.goto(url('/account'));
    await page.getByLabel('Name for the new passkey').fill('This laptop');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await page.getByText('Passkey “This laptop” added.').waitFor();
    const row = page.locator('table.passkeys tbody tr');
    expect(await row.count()).to.equal(1);
    expect(await row.first().innerText()).to.include('This laptop').and.include('never');
    await auditAndPhotograph(page, 'account-passkey');
    expectNoProblems(problems);
  });

  it('signs in with it, without a username, to a token whose amr says a key and mfa', async () => {
    await signOut(page, live.base);
    await page.goto(url('/auth/login'));
    await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await auditAndPhotograph(page, 'login-passkey');
    const before = (await page.context().cookies()).find((c) => c.name === 'tb.sid')?.value;
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.waitForURL(url('/'));
    expect(await page.getByRole('banner').innerText()).to.include(username);
    expect((await page.context().cookies()).find((c) => c.name === 'tb.sid')?.value, 'a new session id').to.not.equal(before);
    const amr = await amrOfSession(page, live.base);
    expect(amr.some((m) => m === 'hwk' || m === 'swk'), amr.join(',')).to.equal(true);
    expect(amr).to.include('mfa');
    expect(await page.goto(url('/account')).then(() => page.locator('table.passkeys').innerText())).to.not.include('never');
    expectNoProblems(problems);
  });

  it('serves as the second step of a password sign-in when two-factor is on', async () => {
    await page.goto(url('/account/2fa'));
    await enrolTwoFactor(page);
    await signOut(page, live.base);
    await page.goto(url('/auth/login'));
    await signIn(page, username);
    await page.waitForURL(url('/auth/2fa'));
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(url('/'));
    const amr = await amrOfSession(page, live.base);
    expect(amr[0]).to.equal('pwd');
    expect(amr).to.include('mfa');
    expectNoProblems(problems);
  });

  describe('the server-side checks of a sign-in answer', () => {
    const rp = () => ({ id: 'localhost', origin: live.base, name: 'Token Bridge' });
    const service = (overrides: Partial<ReturnType<typeof rp>> = {}, clock = () => Date.now()) =>
      new PasskeyService({ passkeys: live.t.database.passkeys, audit: new AuditLog(live.t.database, Date.now), rp: { ...rp(), ...overrides }, clock });
    const ceremony = (at = Date.now()): Ceremony => ({ challenge: captured!.challenge, at });

    it('refuses a wrong origin, a wrong RP ID, another ceremony\'s challenge and an expired one', async () => {
      expect(captured, 'an answer captured in the sign-in above').to.not.equal(undefined);
      const row = await live.t.database.passkeys.findByPk(captured!.response.id);
      await row!.update({ counter: 0 });
      expect(await service({ origin: 'http://evil.example' }).authenticate(captured!.response, ceremony())).to.deep.equal({ ok: false, reason: 'invalid' });
      expect(await service({ id: 'evil.example' }).authenticate(captured!.response, ceremony())).to.deep.equal({ ok: false, reason: 'invalid' });
      expect(await service().authenticate(captured!.response, { challenge: 'another-ceremony', at: Date.now() })).to.deep.equal({ ok: false, reason: 'invalid' });
      expect(await service({}, () => Date.now() + 5 * 60_000 + 1000).authenticate(captured!.response, ceremony())).to.deep.equal({ ok: false, reason: 'expired' });
    });

    it('refuses a counter that goes back (a cloned authenticator?) and an unknown credential', async () => {
      const row = await live.t.database.passkeys.findByPk(captured!.response.id);
      await row!.update({ counter: 1_000_000 });
      expect(await service().authenticate(captured!.response, ceremony())).to.deep.equal({ ok: false, reason: 'counter' });
      expect(await service().authenticate({ ...captured!.response, id: 'bm8tc3VjaC1jcmVkZW50aWFs', rawId: 'bm8tc3VjaC1jcmVkZW50aWFs' }, ceremony())).to.deep.equal({ ok: false, reason: 'unknown' });
      await row!.update({ counter: 0 });
    });

    it('refuses the same answer sent again: its ceremony was used once, and a new ceremony has another challenge', async () => {
      const csrf = (await page.locator('input[name=_csrf]').first().getAttribute('value')) ?? '';
      const replay = () => page.request.post(url('/auth/passkey'), { data: { response: captured!.response }, headers: { 'x-csrf-token': csrf } });
      const noCeremony = await replay();
      expect([noCeremony.status(), ((await noCeremony.json()) as { error: string }).error]).to.deep.equal([400, 'bad_request']);
      expect((await page.request.post(url('/auth/passkey/options'), { data: {}, headers: { 'x-csrf-token': csrf } })).status()).to.equal(200);
      const otherChallenge = await replay();
      expect([otherChallenge.status(), ((await otherChallenge.json()) as { error: string }).error]).to.deep.equal([401, 'passkey_failed']);
    });
  });

  describe('removing it', () => {
    it('refuses and audits a sign-in whose signature counter went back (a cloned authenticator?), then signs in again once it is right', async () => {
      const row = await live.t.database.passkeys.findByPk(captured!.response.id);
      await row!.update({ counter: 1_000_000 });
      await signOut(page, live.base);
      await page.goto(url('/auth/login'));
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await page.getByText('That passkey was not accepted.').waitFor();
      const audited = await live.t.database.auditEvents.count({ where: { event: 'passkey_counter_regression', userId: row!.userId } });
      expect(audited).to.equal(1);
      await row!.update({ counter: 0 });
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await page.waitForURL(url('/'));
    });

    it('once removed, the passkey no longer signs in: the page says so and stays signed out', async () => {
      await page.goto(url('/account'));
      await page.getByRole('button', { name: /Remove/ }).click();
      await page.getByText('Passkey “This laptop” removed.').waitFor();
      await signOut(page, live.base);
      await page.goto(url('/auth/login'));
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await page.getByText('That passkey was not accepted.').waitFor();
      expect(page.url()).to.equal(url('/auth/login'));
      expect((await page.request.get(url('/auth/token'))).status()).to.equal(401);
    });
  });
});
