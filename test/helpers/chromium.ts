import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type PackagedChromium from '@sparticuz/chromium';
import { chromium, type Browser } from 'playwright-core';

/** Where a system Chromium (or Chrome) is looked for, in this order. */
export const SYSTEM_CHROMIUM_PATHS: readonly string[] = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome-stable',
  '/usr/bin/google-chrome',
];

/** The fontconfig file of a system that has fonts set up. */
export const SYSTEM_FONT_CONFIG = '/etc/fonts/fonts.conf';

// Not @sparticuz/chromium's own `args`: those are for AWS Lambda (--single-process, --disable-web-security ...).
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

// Unpacking takes about two seconds; an ownerless lock file older than this was left by a run that was killed.
const STALE_LOCK_MS = 120_000;

export interface ChromiumChoice {
  executablePath: string;
  /** Where it came from, as the run reports it: `/usr/bin/chromium`, `@sparticuz/chromium (/tmp/chromium)`. */
  origin: string;
  /** Variables the browser process gets on top of this process's environment. */
  env: Record<string, string>;
}

export interface ResolveOptions {
  /** Where `CHROMIUM_PATH` is read from (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** System paths tried when `CHROMIUM_PATH` is not set (default: {@link SYSTEM_CHROMIUM_PATHS}). */
  candidates?: readonly string[];
  /** Without this file the packaged Chromium is given the fonts it ships with (default: {@link SYSTEM_FONT_CONFIG}). */
  systemFontConfig?: string;
}

/** An error mocha prints as exactly one line (no stack). */
export function oneLineError(message: string): Error {
  const err = new Error(message);
  err.stack = `Error: ${message}`;
  return err;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** True when the binary runs at all: a half-written one (a run killed while unpacking) does not. */
function answersVersion(file: string): boolean {
  const probe = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return probe.status === 0 && /\d+\.\d+/.test(probe.stdout);
}

/** True when the lock's owner is gone: a run killed while unpacking (or a lock too old to be anyone's). */
function isStale(lockFile: string): boolean {
  const pid = Number.parseInt(readFileSync(lockFile, 'utf8'), 10);
  if (!Number.isInteger(pid) || pid <= 0) return Date.now() - statSync(lockFile).mtimeMs > STALE_LOCK_MS;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Runs `fn` while holding a lock file, so that concurrent test runs unpack the browser once. */
async function withLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    try {
      if (isStale(lockFile)) rmSync(lockFile, { force: true });
    } catch {
      // Released between the two calls: try again.
    }
    await sleep(100);
  }
  try {
    return await fn();
  } finally {
    rmSync(lockFile, { force: true });
  }
}

/**
 * The Chromium inside the npm package `@sparticuz/chromium` (a headless-shell
 * build), unpacked into the temp folder by the first run and reused after.
 */
async function packagedChromium(systemFontConfig: string): Promise<ChromiumChoice> {
  let pkg: typeof PackagedChromium;
  try {
    pkg = (await import('@sparticuz/chromium')).default;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw oneLineError('Chromium could not start: no system Chromium was found and @sparticuz/chromium is not installed (run npm install, or set CHROMIUM_PATH)');
  }
  const executablePath = await withLock(path.join(tmpdir(), 'chromium.unpack.lock'), async () => {
    const unpacked = await pkg.executablePath();
    if (answersVersion(unpacked)) return unpacked;
    // The package only checks that the file exists, so a truncated one would be reused forever.
    rmSync(unpacked, { force: true });
    return pkg.executablePath();
  });
  const env: Record<string, string> = {};
  const shippedFonts = path.join(path.dirname(executablePath), 'fonts');
  // Its fontconfig reads the system's configuration; a machine without one would render no text at all.
  if (!existsSync(systemFontConfig) && existsSync(path.join(shippedFonts, 'fonts.conf'))) env.FONTCONFIG_PATH = shippedFonts;
  return { executablePath, origin: `@sparticuz/chromium (${executablePath})`, env };
}

/**
 * Picks the browser the tests drive: `CHROMIUM_PATH` when set (a missing file
 * is a one-line failure, never a fallback), else the first system Chromium
 * that exists, else the one shipped in the npm package `@sparticuz/chromium`.
 * Nothing is downloaded.
 *
 * @example
 * // Proves the fresh-machine path: no variable, no system browser.
 * const choice = await resolveChromium({ env: {}, candidates: [] });
 */
export async function resolveChromium(options: ResolveOptions = {}): Promise<ChromiumChoice> {
  const { env = process.env, candidates = SYSTEM_CHROMIUM_PATHS, systemFontConfig = SYSTEM_FONT_CONFIG } = options;
  const override = env.CHROMIUM_PATH;
  if (override) {
    if (!existsSync(override)) throw oneLineError(`Chromium could not start: CHROMIUM_PATH=${override} does not exist`);
    return { executablePath: override, origin: `${override} (CHROMIUM_PATH)`, env: {} };
  }
  const found = candidates.find(isExecutable);
  if (found) return { executablePath: found, origin: found, env: {} };
  return packagedChromium(systemFontConfig);
}

/** The reason in Playwright's launch error, on one line. */
function launchFailure(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // A browser that cannot load (libnss3 missing on a bare machine) says so only in the browser log below the first line.
  const library = /error while loading shared libraries: [^\n]*/.exec(text);
  if (library) return library[0];
  // Playwright's messages start with "browserType.launch: <reason>" followed by a call log.
  return (text.split('\n').find((line) => line.trim() !== '') ?? text).trim();
}

/**
 * Starts headless Chromium with a fresh profile, or fails with one line
 * saying why: a missing browser is a failure, never a silent skip.
 */
export async function startChromium(choice: ChromiumChoice): Promise<Browser> {
  try {
    // launch() gives every run a fresh temporary profile (user-data-dir) and removes it on close.
    return await chromium.launch({
      executablePath: choice.executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 20_000,
      ...(Object.keys(choice.env).length > 0 ? { env: { ...process.env, ...choice.env } } : {}),
    });
  } catch (err) {
    throw oneLineError(`Chromium could not start from ${choice.origin}: ${launchFailure(err)}`);
  }
}
