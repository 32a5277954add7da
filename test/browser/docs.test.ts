import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { openApiDocument } from '../../routes/openapi.js';
import {
  axeAudit,
  type AxeViolation,
  type ChromiumHandle,
  DESKTOP,
  expectNoProblems,
  isSerious,
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
 * app itself. The viewer does not pass axe (its own markup and colours), so it
 * is not in the every-page audit of pages.test.ts: its violations are written
 * to test-artifacts/docs-axe.json and printed, and only the page's own header
 * is held to the no-serious-violation rule.
 */
describe('browser: the API reference at /docs', function () {
  this.timeout(30_000);
  let chromium: ChromiumHandle;
  let live: LiveApp;
  let context: BrowserContext;
  let page: Page;
  let problems: string[];
  const requested: string[] = [];
  const refused: string[] = [];

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
    await context?.close();
    await chromium?.close();
    await live?.stop();
  });

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

  it('shows an operation\'s responses with the documented error example and its WWW-Authenticate header', async () => {
    await page.locator('#operations-API-getMe .opblock-summary-control').click();
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

  it('has an accessible header of its own; the viewer\'s axe violations are recorded, not hidden', async () => {
    const found: AxeViolation[] = [];
    for (const [width, size] of [['phone', PHONE], ['desktop', DESKTOP]] as const) {
      await page.setViewportSize(size);
      for (const v of (await axeAudit(page)).violations) if (!found.some((f) => f.id === v.id)) found.push(v);
      await page.screenshot({ path: screenshotPath('docs', width), fullPage: true });
    }
    writeArtifact('docs-axe.json', `${JSON.stringify({ page: '/docs', violations: found }, null, 2)}\n`);
    const summary = found.map((v) => `${v.impact} ${v.id} (${v.nodes.length})`).join(', ');
    process.stdout.write(`      /docs axe (Swagger UI): ${summary || 'no violations'}\n`);
    // axeAudit above loaded axe into the page; this run looks at the page's own header and skip link only.
    const own = await page.evaluate<AxeViolation[]>(
      "window.axe.run({ include: [['.docs-header'], ['.skip-link']] }, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) })))",
    );
    expect(own.filter(isSerious)).to.deep.equal([]);
  });
});
