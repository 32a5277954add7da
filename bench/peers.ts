/**
 * The optional peers of `--peer`: another auth server doing the same two jobs
 * (mint a JWT for a browser session, check one on an API call), measured in
 * the same fresh-process rounds as the app. Each peer lives in
 * bench/peers/<name>/ with its own package.json and lockfile and is installed
 * there on first use (its node_modules is git-ignored), never into the app's
 * dependencies.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot as root } from '../paths.js';
import { LOOPBACK } from './scenarios.js';
import { startBaseline, status, type Server } from './servers.js';

export const PEERS = ['better-auth'] as const;
export type PeerName = (typeof PEERS)[number];

const folder = (peer: PeerName) => path.join(root, 'bench', 'peers', peer);

/** `npm ci` in the peer's folder when its packages are not there yet (better-sqlite3 compiles from source here: about 2 minutes). */
export function installPeer(peer: PeerName): void {
  const dir = folder(peer);
  if (existsSync(path.join(dir, 'node_modules', '.package-lock.json'))) return;
  status(`${peer}: first use, installing its packages into ${path.relative(root, dir)}/node_modules (a few minutes)`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
}

/** What a set-up peer gives the load: a signed-in session's cookie, a token it minted, and `/api/me`'s answer to it. */
export interface PeerFixture {
  cookie: string;
  token: string;
  meBody: string;
}

/** The peer's run-wide settings: one database and one secret, shared by its processes (as the app's are). */
export interface PeerRun {
  database: string;
  secret: string;
}

export const peerRun = (tmp: string): PeerRun => ({ database: path.join(tmp, 'better-auth.sqlite'), secret: randomBytes(32).toString('base64url') });

export function startPeer(name: string, run: PeerRun, nodeArgs: string[] = []): Promise<Server> {
  return startBaseline(name, path.join('..', 'peers', 'better-auth', 'server.mjs'), { BETTER_AUTH_DB: run.database, BETTER_AUTH_SECRET: run.secret }, nodeArgs);
}

/** Signs a new account up through Better Auth's own endpoint, mints a token with its session and checks `/api/me` with it. */
export async function setUpPeer(port: number): Promise<PeerFixture> {
  const base = `http://${LOOPBACK}:${port}`;
  const email = `bench_${randomBytes(4).toString('hex')}@example.com`;
  const signUp = await fetch(`${base}/api/auth/sign-up/email`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: base },
    body: JSON.stringify({ email, password: `bench ${randomBytes(12).toString('base64url')} pw`, name: 'Bench User' }),
  });
  const cookie = signUp.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .join('; ');
  if (signUp.status !== 200 || !cookie.includes('session_token=')) throw new Error(`Better Auth sign-up answered ${signUp.status}: ${(await signUp.text()).slice(0, 300)}`);
  const minted = await fetch(`${base}/api/auth/token`, { headers: { cookie } });
  const { token } = (await minted.json()) as { token?: string };
  if (minted.status !== 200 || !token?.startsWith('ey')) throw new Error(`Better Auth /api/auth/token answered ${minted.status}`);
  const me = await fetch(`${base}/api/me`, { headers: { authorization: `Bearer ${token}` } });
  const meBody = await me.text();
  if (me.status !== 200 || !meBody.includes(email)) throw new Error(`Better Auth /api/me answered ${me.status}: ${meBody.slice(0, 300)}`);
  return { cookie, token, meBody };
}
