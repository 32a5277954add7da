import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openDatabase } from '../../models/database.js';
import { csrfFrom, STRONG_PASSWORD } from './browser.js';
import { randomSecret, startServer, tempDir, type ServerProcess } from './process.js';

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

/**
 * A browser without JavaScript that talks to any base URL with one cookie
 * jar: sign in on one instance, use the same cookie on another (they share
 * the database and the session secret). Redirects are not followed.
 */
export class RemoteBrowser {
  private readonly cookies = new Map<string, string>();

  /** `headers` go with every request unless the request sets them itself. */
  constructor(private readonly headers: Record<string, string> = {}) {}

  async request(url: string, init: RequestInit = {}): Promise<Reply> {
    const headers = new Headers({ ...this.headers });
    new Headers(init.headers).forEach((value, name) => headers.set(name, value));
    if (this.cookies.size > 0) headers.set('Cookie', this.cookieHeader());
    const res = await fetch(url, { ...init, headers, redirect: 'manual', signal: init.signal ?? AbortSignal.timeout(20_000) });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=/i.test(a) && new Date(a.split('=')[1]!).getTime() < Date.now());
      if (value === '' || expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  /** The `Cookie` header this browser sends, e.g. for a load generator to send the same. */
  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  /** Another browser holding a copy of this one's cookies (a stolen cookie). */
  clone(): RemoteBrowser {
    const copy = new RemoteBrowser(this.headers);
    for (const [k, v] of this.cookies) copy.cookies.set(k, v);
    return copy;
  }

  get(url: string): Promise<Reply> {
    return this.request(url);
  }

  postForm(url: string, form: Record<string, string>): Promise<Reply> {
    return this.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  /** GETs a page with a form and returns its `_csrf` value. */
  async csrf(url: string): Promise<string> {
    const page = await this.get(url);
    if (page.status !== 200) throw new Error(`GET ${url}: ${page.status}`);
    return csrfFrom(page.text);
  }

  async register(base: string, username: string, password = STRONG_PASSWORD): Promise<Reply> {
    const _csrf = await this.csrf(`${base}/auth/register`);
    return this.postForm(`${base}/auth/register`, { _csrf, username, password, confirmPassword: password });
  }

  async login(base: string, username: string, password = STRONG_PASSWORD): Promise<Reply> {
    const _csrf = await this.csrf(`${base}/auth/login`);
    return this.postForm(`${base}/auth/login`, { _csrf, username, password });
  }

  async logout(base: string): Promise<Reply> {
    const _csrf = await this.csrf(`${base}/`);
    return this.postForm(`${base}/auth/logout`, { _csrf });
  }

  /** Mints a token (GET /auth/token) and returns it; throws unless 200. */
  async token(base: string): Promise<string> {
    const res = await this.get(`${base}/auth/token`);
    if (res.status !== 200) throw new Error(`GET ${base}/auth/token: ${res.status} ${res.text.slice(0, 200)}`);
    return (JSON.parse(res.text) as { token: string }).token;
  }
}

/** GET with a bearer token; never throws on a status. */
export async function callApi(base: string, token: string, apiPath = '/api/me'): Promise<Reply> {
  const res = await fetch(`${base}${apiPath}`, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(20_000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Polls `probe` every `everyMs` until it returns true; resolves with the elapsed ms, rejects after `withinMs`. */
export async function waitUntil(probe: () => Promise<boolean>, withinMs: number, everyMs = 100): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > withinMs) throw new Error(`condition not met within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Instances {
  servers: ServerProcess[];
  /** Every instance's temp folder (its `.env`). */
  dirs: Array<ReturnType<typeof tempDir>>;
  /**
   * The environment each instance was started with (its ENV_FILE, the shared
   * secrets and `env`): for another process on the same settings, such as a
   * restart or a start that must fail.
   */
  envs: Array<Record<string, string>>;
  /** Stops every server, then removes the temp folders. */
  stopAll(): Promise<void>;
}

/**
 * Starts `count` real server processes at once on one database, with shared
 * fresh signing secrets (`env` may set its own) and each an empty `.env` in a
 * temp folder of its own. One instance is how a test runs `npm start`.
 *
 * @example
 * const app = await startInstances(1, { DATABASE_URL: db.url, WEB_CONCURRENCY: '2' });
 * const server = app.servers[0]!;
 * // … and in `after`: await app.stopAll();
 */
export async function startInstances(count: number, env: Record<string, string>): Promise<Instances> {
  const shared = { JWT_SECRET_KEY: randomSecret(), SESSION_SECRET: randomSecret() };
  const dirs = Array.from({ length: count }, () => tempDir());
  const envs = dirs.map((tmp) => ({ ENV_FILE: path.join(tmp.dir, '.env'), ...shared, ...env }));
  const starting = dirs.map((tmp, i) => {
    writeFileSync(path.join(tmp.dir, '.env'), '');
    return startServer(envs[i]!);
  });
  const settled = await Promise.allSettled(starting);
  const servers = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stopAll = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    for (const tmp of dirs) tmp.cleanup();
  };
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await stopAll();
    throw failed.reason;
  }
  return { servers, dirs, envs, stopAll };
}

/**
 * `count` browsers each open the sign-in form on one of `bases` (in turn),
 * then all post `username` and `password` at the same moment. Resolves with
 * the statuses in order, and how many `sign_in_failed` audit rows the
 * account has in the database at `databaseUrl` afterwards (every password
 * check that failed writes one before its answer goes out).
 */
export async function concurrentSignIns(
  bases: readonly string[],
  databaseUrl: string,
  username: string,
  password: string,
  count = 40,
): Promise<{ statuses: number[]; failedChecks: number }> {
  const browsers = Array.from({ length: count }, (_, i) => ({ browser: new RemoteBrowser(), base: bases[i % bases.length]! }));
  const csrfs = await Promise.all(browsers.map(({ browser, base }) => browser.csrf(`${base}/auth/login`)));
  const replies = await Promise.all(
    browsers.map(({ browser, base }, i) => browser.postForm(`${base}/auth/login`, { _csrf: csrfs[i]!, username, password })),
  );
  const database = await openDatabase(databaseUrl);
  try {
    const user = await database.users.findOne({ where: { usernameKey: username.toLowerCase() } });
    const failedChecks = await database.auditEvents.count({ where: { userId: user!.id, event: 'sign_in_failed' } });
    return { statuses: replies.map((r) => r.status), failedChecks };
  } finally {
    await database.close();
  }
}
