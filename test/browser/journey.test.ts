import { expect } from 'chai';
import { browser, registerUser, STRONG_PASSWORD, uniqueName } from '../helpers/browser.js';
import {
  apiMe,
  type ChromiumHandle,
  expectNoProblems,
  fillByLabel,
  focusAfterLoad,
  focusedId,
  focusIsVisible,
  launchChromium,
  type LiveApp,
  newContext,
  signIn,
  signOut,
  startLiveApp,
} from './harness.js';

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/**
 * The whole path a person takes, in Chromium against the real app: register,
 * sign in, take and copy a token, call the API with it, sign out.
 */
describe('browser: from sign-in to an API call', function () {
  this.timeout(30_000);
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

  it('registers, signs in, copies a token that /api/me accepts, signs out, and is sent back to sign in for /token', async () => {
    const { context, page, problems } = await newContext(chromium.browser);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: live.base });
    try {
      const username = uniqueName('journey');
      await page.goto(url('/'));
      await page.getByRole('main').getByRole('link', { name: 'Create an account' }).click();
      await page.waitForURL(url('/auth/register'));
      await expect(await page.getByText('12 to 128 characters long').isVisible(), 'password rules before typing').to.equal(true);
      await fillByLabel(page, { Username: username, Password: STRONG_PASSWORD, 'Repeat the password': STRONG_PASSWORD });
      expect(await page.locator('li[data-rule="length"]').getAttribute('class'), 'the length rule is ticked off while typing').to.contain('met');
      await page.getByRole('button', { name: 'Show password' }).first().click();
      expect(await page.getByLabel('Password', { exact: true }).getAttribute('type')).to.equal('text');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.waitForURL(url('/'));
      expect(await page.getByRole('banner').innerText()).to.contain(`Signed in as ${username}`);

      await signOut(page, live.base);
      await page.getByRole('banner').getByRole('link', { name: 'Sign in' }).click();
      await signIn(page, username);
      await page.waitForURL(url('/'));

      await page.getByRole('link', { name: 'Get an API token' }).click();
      await page.waitForURL(url('/token'));
      const shown = await page.locator('#token').inputValue();
      expect(shown).to.match(JWT);
      expect(await page.locator('.facts').innerText()).to.contain('Verified by this server');
      expect(await page.getByRole('note').innerText()).to.match(/Never paste a live token into third-party websites/);

      await page.getByRole('button', { name: 'Copy token' }).click();
      await page.locator('#copy-status').getByText('Copied.').waitFor();
      const copied = await page.evaluate<string>('navigator.clipboard.readText()');
      expect(copied, 'the clipboard holds the token').to.equal(shown);

      const curl = await page.locator('#curl-command').innerText();
      expect(curl).to.equal(`curl -H "Authorization: Bearer ${copied}" ${live.base}/api/me`);
      await page.getByRole('button', { name: 'Copy command' }).click();
      await page.getByRole('region', { name: 'Use it' }).getByText('Copied.').waitFor();
      expect(await page.evaluate<string>('navigator.clipboard.readText()')).to.equal(curl);
      const me = await apiMe(live.base, copied);
      expect(me.status).to.equal(200);
      expect(me.body.username).to.equal(username);

      // Times in words and in local time; the countdown runs.
      const left = await page.locator('#expires-in').innerText();
      expect(left).to.match(/^(5 h 59 min \d+ s|6 h 0 min 0 s)$/);
      await page.locator('#expires-in', { hasNotText: left }).waitFor({ timeout: 3_000 });
      expect(await page.locator('#expiry time').innerText()).not.to.contain('UTC');
      expect(await page.locator('#expiry time').getAttribute('title')).to.match(/ UTC$/);

      // "Mint a new one" is a plain GET of /token: a fresh token, no CSRF token in the URL.
      await page.getByRole('link', { name: 'Mint a new one' }).click();
      await page.locator('#token', { hasNotText: shown }).waitFor({ timeout: 5_000 });
      expect(page.url()).to.equal(url('/token'));
      const second = await page.locator('#token').inputValue();
      expect(second).to.match(JWT).and.not.equal(shown);
      expect((await apiMe(live.base, second)).status).to.equal(200);

      await signOut(page, live.base);
      expect((await apiMe(live.base, copied)).status, 'tokens of a signed-out session are refused').to.equal(401);
      expect((await apiMe(live.base, second)).status).to.equal(401);

      const res = await page.goto(url('/token'));
      expect(res?.request().redirectedFrom()?.url()).to.equal(url('/token'));
      expect(page.url()).to.equal(url('/auth/login?returnTo=%2Ftoken'));
      await signIn(page, username);
      await page.waitForURL(url('/token'));
      expectNoProblems(problems);
    } finally {
      await context.close();
    }
  });

  it('answers a failed sign-in with the generic message, keeps the name and focuses the error summary', async () => {
    const username = await registerUser(browser(live.t.server), uniqueName('failed'));
    const { context, page, problems } = await newContext(chromium.browser);
    try {
      // An unknown name gets the very same page: the supertest suite compares the two byte for byte.
      await page.goto(url('/auth/login'));
      await fillByLabel(page, { Username: username, Password: 'not the right password' });
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.getByRole('button', { name: 'Sign in', exact: true }).click(),
      ]);
      expect(response.status()).to.equal(401);
      await page.waitForLoadState();
      const summary = page.locator('#form-errors');
      expect(await summary.innerText()).to.equal('Invalid username or password');
      expect(await summary.getAttribute('role')).to.equal('alert');
      expect(await summary.getAttribute('aria-live')).to.equal('assertive');
      expect(await focusAfterLoad(page, 'form-errors'), 'focus moves to the error summary').to.equal('form-errors');
      expect(await focusIsVisible(page)).to.equal(true);
      expect(await page.getByLabel('Username', { exact: true }).inputValue()).to.equal(username);
      expect(await page.getByLabel('Password', { exact: true }).inputValue()).to.equal('');
      await page.keyboard.press('Tab');
      expect(await focusedId(page), 'the next Tab reaches the username').to.equal('username');
      expectNoProblems(problems);
    } finally {
      await context.close();
    }
  });

  it('signs in with the keyboard alone: skip link, Tab, typing and Enter', async () => {
    const username = await registerUser(browser(live.t.server), uniqueName('keys'));
    const { context, page, problems } = await newContext(chromium.browser);
    try {
      await page.goto(url('/'));
      await page.keyboard.press('Tab');
      expect(await page.evaluate<string>('document.activeElement.textContent.trim()')).to.equal('Skip to content');
      expect(await focusIsVisible(page)).to.equal(true);
      expect(await page.getByRole('link', { name: 'Skip to content' }).isVisible(), 'the skip link shows when focused').to.equal(true);
      await page.keyboard.press('Enter');
      expect(await focusedId(page)).to.equal('main');

      await page.keyboard.press('Tab');
      expect(await page.evaluate<string>('document.activeElement.textContent.trim()')).to.equal('Sign in');
      expect(await focusIsVisible(page)).to.equal(true);
      await page.keyboard.press('Enter');
      await page.waitForURL(url('/auth/login'));
      expect(await focusAfterLoad(page, 'username'), 'the username field has focus on arrival').to.equal('username');
      expect(await focusIsVisible(page)).to.equal(true);
      await page.keyboard.type(username);
      await page.keyboard.press('Tab');
      expect(await focusedId(page)).to.equal('password');
      expect(await focusIsVisible(page)).to.equal(true);
      await page.keyboard.type(STRONG_PASSWORD);
      await page.keyboard.press('Enter');
      await page.waitForURL(url('/'));
      expect(await page.getByRole('banner').innerText()).to.contain(`Signed in as ${username}`);
      expectNoProblems(problems);
    } finally {
      await context.close();
    }
  });

  it('changes the password on the account page, which ends the other session and earlier tokens', async () => {
    const username = await registerUser(browser(live.t.server), uniqueName('account'));
    const here = await newContext(chromium.browser);
    const there = await newContext(chromium.browser);
    const next = 'a brand new passphrase 77';
    try {
      for (const { page } of [here, there]) {
        await page.goto(url('/auth/login?returnTo=%2Faccount'));
        await signIn(page, username);
        await page.waitForURL(url('/account'));
      }
      const page = here.page;
      await page.reload();
      const rows = page.locator('section[aria-labelledby="sessions-heading"] tbody tr');
      expect(await rows.count(), 'registration, here and there').to.equal(3);
      expect(await page.locator('tr.current').innerText()).to.contain('(this browser)');
      expect(await page.locator('section[aria-labelledby="activity-heading"] tbody tr').first().innerText()).to.contain('signed in');

      await page.goto(url('/token'));
      const oldToken = await page.locator('#token').inputValue();
      expect((await apiMe(live.base, oldToken)).status).to.equal(200);
      await page.goto(url('/account'));

      await fillByLabel(page, { 'Current password': 'not my password', 'New password': next, 'Repeat the new password': next });
      await page.getByRole('button', { name: 'Change password' }).click();
      await page.locator('#current-error').waitFor();
      expect(await focusAfterLoad(page, 'form-errors')).to.equal('form-errors');
      expect(await page.locator('#form-errors').innerText()).to.contain('Your password was not changed');
      expect(await page.getByLabel('Current password').getAttribute('aria-invalid')).to.equal('true');
      // The summary links to the field with the problem.
      await page.locator('#form-errors a[href="#currentPassword"]').click();
      expect(await focusedId(page)).to.equal('currentPassword');

      await fillByLabel(page, { 'Current password': STRONG_PASSWORD, 'New password': next, 'Repeat the new password': next });
      await page.getByRole('button', { name: 'Change password' }).click();
      await page.getByRole('status').getByText('Your password was changed').waitFor();
      expect(await rows.count(), 'only this browser is still signed in').to.equal(1);
      expect((await apiMe(live.base, oldToken)).status).to.equal(401);

      await there.page.goto(url('/token'));
      expect(there.page.url()).to.equal(url('/auth/login?returnTo=%2Ftoken'));
      await signIn(there.page, username, next);
      await there.page.waitForURL(url('/token'));
      expectNoProblems(here.problems);
      expectNoProblems(there.problems);
    } finally {
      await here.context.close();
      await there.context.close();
    }
  });

  it('works with JavaScript turned off: rules, registration, the token page and sign-out', async () => {
    const { context, page, problems } = await newContext(chromium.browser, { javaScriptEnabled: false });
    try {
      const username = uniqueName('nojs');
      await page.goto(url('/auth/login'));
      await signIn(page, username, 'not the right password');
      await page.locator('#form-errors').getByText('Invalid username or password').waitFor();
      expect(await focusAfterLoad(page, 'form-errors'), 'autofocus alone moves focus to the error summary').to.equal('form-errors');

      await page.goto(url('/auth/register?returnTo=%2Ftoken'));
      expect(await page.getByText('12 to 128 characters long').isVisible()).to.equal(true);
      await fillByLabel(page, { Username: username, Password: STRONG_PASSWORD, 'Repeat the password': STRONG_PASSWORD });
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.waitForURL(url('/token'));

      const token = await page.locator('#token').inputValue();
      expect(token).to.match(JWT);
      expect(await page.getByRole('button', { name: 'Copy token' }).isVisible(), 'no copy button without scripts').to.equal(false);
      expect(await page.locator('#expires-in').innerText()).to.match(/^(6 h|5 h 59 min)$/);
      expect(await page.locator('#expiry time').innerText()).to.match(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
      expect((await apiMe(live.base, token)).status).to.equal(200);

      await signOut(page, live.base);
      expect((await apiMe(live.base, token)).status).to.equal(401);
      await page.goto(url('/token'));
      expect(page.url()).to.equal(url('/auth/login?returnTo=%2Ftoken'));
      expectNoProblems(problems);
    } finally {
      await context.close();
    }
  });
});
