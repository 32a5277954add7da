import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { openApiDocument } from '../../routes/openapi.js';
import {
  axeAudit,
  type AxeViolation,
  type ChromiumHandle,
  DESKTOP,
  expectNoProblems,
  launchChromium,
  type LiveApp,
  newContext,
  PHONE,
  screenshotPath,
  startLiveApp,
  writeArtifact,
} from './harness.js';

/**
 * The /docs page in Chromium: Swagger UI draws every operation of the
 * description under the app's own CSP, with every request answered by the
 * app itself, and the whole page passes axe-core with the rules the other
 * pages are audited with (pages.test.ts: axe's defaults, WCAG 2.0/2.1 A and AA
 * and best practices) in every state it is audited in: as first drawn, with
 * every operation open in "Try it out" and every schema expanded, and with the
 * Authorize pop-up open before and after a token is entered. Stricter than
 * pages.test.ts: no violation of any impact. What makes the viewer pass is in
 * public/docs.css (colours) and public/docs.js (a Swagger UI plugin and a pass
 * over the drawn markup); without either, this fails. The violations found
 * (none) are written to test-artifacts/docs-axe.json.
 */
describe('browser: the API reference at /docs', function () {
  // Opening every operation and schema and auditing the result at two widths takes ~17 s here.
  this.timeout(60_000);
  let chromium: ChromiumHandle;
  let live: LiveApp;
  let context: BrowserContext;
  let page: Page;
  let problems: string[];
  const requested: string[] = [];
  const refused: string[] = [];
  const audited: Record<string, AxeViolation[]> = {};

  before(async () => {
    chromium = await launchChromium();
    live = await startLiveApp();
    ({ context, page, problems } = await newContext(chromium.browser));
    // Anything not for the app is refused before it leaves the browser, and recorded.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      requested.push(url);
      if (new URL(url).origin === live.base) return route.continue();
      refused.push(url);
      return route.abort();
    });
  });

  after(async () => {
    writeArtifact('docs-axe.json', `${JSON.stringify({ page: '/docs', states: audited }, null, 2)}\n`);
    await context?.close();
    await chromium?.close();
    await live?.stop();
  });

  /**
   * Audits the whole page as it stands at phone and at desktop width and
   * expects no violation at all. docs.js fixes the viewer's markup in the
   * animation frame after Swagger UI draws, so each audit waits for two frames
   * (what anyone looking at the page sees) rather than racing the fix.
   */
  async function expectNoAxeViolations(state: string, screenshot?: { name: string; fullPage: boolean }): Promise<void> {
    const found: AxeViolation[] = [];
    for (const [width, size] of [['phone', PHONE], ['desktop', DESKTOP]] as const) {
      await page.setViewportSize(size);
      await page.evaluate('new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))');
      for (const v of (await axeAudit(page)).violations) {
        const nodes = v.nodes.map((n) => `${n} (${width})`);
        const same = found.find((f) => f.id === v.id);
        if (same) same.nodes.push(...nodes);
        else found.push({ ...v, nodes });
      }
      if (screenshot) await page.screenshot({ path: screenshotPath(screenshot.name, width), fullPage: screenshot.fullPage });
    }
    audited[state] = found;
    const summary = found.map((v) => `${v.impact} ${v.id} (${v.nodes.length})`).join(', ');
    process.stdout.write(`      /docs axe, ${state}: ${summary || 'no violations'}\n`);
    expect(found, `${state}: ${found.map((v) => `${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(', ')}`).join('; ')}`).to.deep.equal([]);
    expectNoProblems(problems);
  }

  it('draws every operation of the description, with no CSP violation, no script error and no request leaving the app', async () => {
    const res = await page.goto(`${live.base}/docs`);
    expect(res?.status()).to.equal(200);
    expect(res?.headers()['content-security-policy']).to.not.match(/unsafe-inline|unsafe-eval/);
    const document = openApiDocument({ sessionCookieName: live.t.config.session.cookieName });
    const expected = Object.entries(document.paths ?? {}).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));
    await page.locator('.opblock').nth(expected.length - 1).waitFor();
    const drawn = await page.locator('.opblock-summary').evaluateAll((els) =>
      els.map((el) => `${el.querySelector('.opblock-summary-method')?.textContent} ${el.querySelector('.opblock-summary-path')?.getAttribute('data-path')}`),
    );
    expect(drawn.sort()).to.deep.equal(expected.sort());
    await page.getByText('Token Bridge API', { exact: false }).first().waitFor();
    expectNoProblems(problems);
    expect(refused).to.deep.equal([]);
    expect(requested.map((u) => new URL(u).pathname)).to.include.members(['/docs', '/docs/assets/swagger-ui-bundle.js', '/docs/assets/swagger-ui.css', '/api/openapi.json']);
  });

  it('passes axe as first drawn, at phone and desktop width', async () => {
    await expectNoAxeViolations('as first drawn');
  });

  it('shows an operation\'s responses with the documented error example and its WWW-Authenticate header', async () => {
    await page.locator('#operations-API-getMe .opblock-summary-control').click();
    // The path in the summary row is text, not a link (docs.js), and the address still follows the open operation.
    await page.waitForURL(/#\/API\/getMe$/);
    const me = page.locator('#operations-API-getMe');
    await me.locator('tr.response[data-code="401"]').waitFor();
    await me.getByText('A bearer token is required.', { exact: false }).first().waitFor();
    await me.getByText('WWW-Authenticate').first().waitFor();
    expectNoProblems(problems);
  });

  it('runs "Try it out" against the app itself (connect-src \'self\')', async () => {
    await page.locator('#operations-Operations-getHealth .opblock-summary-control').click();
    const health = page.locator('#operations-Operations-getHealth');
    await health.getByRole('button', { name: 'Try it out' }).click();
    await health.getByRole('button', { name: 'Execute' }).click();
    await health.locator('.live-responses-table .response-col_status').filter({ hasText: '200' }).first().waitFor();
    expectNoProblems(problems);
    expect(refused).to.deep.equal([]);
  });

  it('passes axe with every operation open in "Try it out" and every schema expanded, the responses of a call included', async () => {
    const closed = page.locator('.opblock:not(.is-open) .opblock-summary-control');
    while ((await closed.count()) > 0) await closed.first().click();
    const tryOut = page.locator('.opblock').getByRole('button', { name: 'Try it out' });
    while ((await tryOut.count()) > 0) await tryOut.first().click();
    const expandSchemas = page.locator('.models article[data-json-schema-level="0"] > .json-schema-2020-12-head > .json-schema-2020-12-expand-deep-button');
    for (let i = 0, n = await expandSchemas.count(); i < n; i += 1) await expandSchemas.nth(i).click();
    expect(await page.locator('.opblock.is-open').count()).to.equal(await page.locator('.opblock').count());
    expect(await page.locator('.opblock .btn.cancel').count()).to.equal(await page.locator('.opblock').count());
    await page.locator('#operations-Operations-getHealth .live-responses-table').waitFor();
    await expectNoAxeViolations('every operation open', { name: 'docs', fullPage: true });
    expect(refused).to.deep.equal([]);
  });

  it('passes axe with the Authorize pop-up open, before and after a token is entered; the pop-up takes the focus and gives it back', async () => {
    const authorize = page.locator('.scheme-container .btn.authorize');
    await authorize.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Available authorizations' });
    await dialog.waitFor();
    expect(await page.evaluate<boolean>('document.activeElement === document.querySelector(\'[role="dialog"]\')')).to.equal(true);
    await expectNoAxeViolations('Authorize pop-up open', { name: 'docs-authorize', fullPage: false });
    await dialog.locator('#auth-bearer-value').fill('not.a.real-token');
    await dialog.locator('.auth-container').first().getByRole('button', { name: 'Authorize', exact: true }).click();
    await dialog.getByRole('button', { name: 'Logout', exact: true }).first().waitFor();
    await expectNoAxeViolations('Authorize pop-up, a token entered');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    expect(await page.evaluate<boolean>('document.activeElement === document.querySelector(".scheme-container .btn.authorize")')).to.equal(true);
    expect(refused).to.deep.equal([]);
  });
});
