import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import { resolveChromium, startChromium, type ChromiumChoice } from '../helpers/chromium.js';

const PAGE = '<!doctype html><html lang="en"><title>Local</title><h1 style="font-family: system-ui, sans-serif">Rendered here</h1>';

/** The font families Chromium actually drew an element's text with. */
async function fontsOf(page: Page, selector: string): Promise<Array<{ familyName: string; glyphCount: number }>> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('DOM.enable');
  await cdp.send('CSS.enable');
  const { root } = await cdp.send('DOM.getDocument');
  const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector });
  const { fonts } = await cdp.send('CSS.getPlatformFontsForNode', { nodeId });
  return fonts;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

function expectOneLine(err: Error, message: string): void {
  expect(err.message).to.equal(message);
  expect(err.message).not.to.contain('\n');
  expect(err.stack, 'mocha prints the stack: it is the message alone').to.equal(`Error: ${message}`);
}

/**
 * On a fresh machine (no CHROMIUM_PATH, no system browser) the tests still get
 * a browser: the one inside the npm package @sparticuz/chromium.
 */
describe('browser: choosing the Chromium the tests drive', function () {
  this.timeout(30_000);
  let dir: string;
  let server: Server;
  let base: string;
  const browsers: Browser[] = [];

  /** An executable file at `name` in the temp folder running `script` (a stand-in browser). */
  function executable(name: string, script = 'exit 0'): string {
    const file = path.join(dir, name);
    writeFileSync(file, `#!/bin/sh\n${script}\n`);
    chmodSync(file, 0o755);
    return file;
  }

  async function render(choice: ChromiumChoice): Promise<{ browser: Browser; page: Page }> {
    const browser = await startChromium(choice);
    browsers.push(browser);
    const page = await browser.newPage();
    await page.goto(base);
    return { browser, page };
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tb-chromium-'));
    server = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });

  after(async () => {
    await Promise.all(browsers.map((b) => b.close().catch(() => undefined)));
    await new Promise((resolve) => server?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('without CHROMIUM_PATH or a system browser picks @sparticuz/chromium, which starts and renders a local page', async () => {
    const choice = await resolveChromium({ env: {}, candidates: [path.join(dir, 'no-such-chromium')] });
    expect(choice.origin).to.equal(`@sparticuz/chromium (${choice.executablePath})`);
    expect(path.dirname(choice.executablePath), 'unpacked into the temp folder').to.equal(tmpdir());

    const { browser, page } = await render(choice);
    const entry = createRequire(import.meta.url).resolve('@sparticuz/chromium');
    const packaged = JSON.parse(readFileSync(path.join(path.dirname(entry), '..', '..', 'package.json'), 'utf8')) as { name: string; version: string };
    expect(packaged.name).to.equal('@sparticuz/chromium');
    expect(browser.version().split('.')[0], 'the launched build is the package\'s').to.equal(packaged.version.split('.')[0]);
    expect(await page.title()).to.equal('Local');
    expect(await page.locator('h1').innerText()).to.equal('Rendered here');
    const drawn = await fontsOf(page, 'h1');
    expect(drawn.reduce((n, f) => n + f.glyphCount, 0), `glyphs drawn with ${JSON.stringify(drawn)}`).to.equal('Rendered here'.length);
  });

  it('gives the packaged Chromium the fonts it ships with when the machine has no fontconfig setup', async () => {
    const systemConfig = path.join(dir, 'fonts.conf');
    writeFileSync(systemConfig, '<fontconfig/>\n');
    expect((await resolveChromium({ env: {}, candidates: [], systemFontConfig: systemConfig })).env, 'system fonts are used when set up').to.deep.equal({});

    const bare = await resolveChromium({ env: {}, candidates: [], systemFontConfig: path.join(dir, 'missing-fonts.conf') });
    expect(bare.env.FONTCONFIG_PATH).to.equal(path.join(tmpdir(), 'fonts'));
    const { page } = await render(bare);
    expect((await fontsOf(page, 'h1')).map((f) => f.familyName)).to.deep.equal(['Open Sans']);
  });

  it('prefers the first system path that exists and is executable over the package', async () => {
    const notExecutable = path.join(dir, 'chromium-not-executable');
    writeFileSync(notExecutable, '');
    const system = executable('chromium');
    const choice = await resolveChromium({ env: {}, candidates: [path.join(dir, 'missing'), notExecutable, system, executable('chrome')] });
    expect(choice).to.deep.equal({ executablePath: system, origin: system, env: {} });
  });

  it('takes CHROMIUM_PATH before any system path', async () => {
    const chosen = executable('my-chromium');
    const choice = await resolveChromium({ env: { CHROMIUM_PATH: chosen }, candidates: [executable('chromium')] });
    expect(choice).to.deep.equal({ executablePath: chosen, origin: `${chosen} (CHROMIUM_PATH)`, env: {} });
  });

  it('fails with one line naming CHROMIUM_PATH when it points at a missing file, instead of falling back', async () => {
    const missing = path.join(dir, 'gone', 'chromium');
    const err = await rejection(resolveChromium({ env: { CHROMIUM_PATH: missing }, candidates: [executable('chromium')] }));
    expectOneLine(err, `Chromium could not start: CHROMIUM_PATH=${missing} does not exist`);
  });

  it('fails with one line naming the browser and the missing library when it cannot start', async () => {
    const reason = 'error while loading shared libraries: libnss3.so: cannot open shared object file: No such file or directory';
    const broken = executable('broken-chromium', `echo "${path.join(dir, 'broken-chromium')}: ${reason}" >&2; exit 127`);
    const choice = await resolveChromium({ env: { CHROMIUM_PATH: broken } });
    const err = await rejection(startChromium(choice));
    expectOneLine(err, `Chromium could not start from ${broken} (CHROMIUM_PATH): ${reason}`);
  });
});
