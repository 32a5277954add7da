/**
 * How long a revocation on one instance takes to be refused on the others.
 *
 * Default, PostgreSQL (LISTEN/NOTIFY): three real server processes on one new
 * database; for each of N users, sign in and mint on A, have B and C accept
 * the token (so they cache it), sign out on A, then poll B and C every 2 ms
 * until both refuse it. `--sqlite-workers`: one server with
 * WEB_CONCURRENCY=2 on a new SQLite file (the workers relay through their
 * primary); each probe is a new connection, which node:cluster hands to the
 * workers in turn, and the token counts as refused everywhere once six probes
 * in a row answer 401. Prints the distribution of the time from sending the
 * sign-out (its own round trip included).
 *
 *   node --import tsx bench/revocation-latency.ts [--count 100] [--url postgres://postgres@127.0.0.1:5432/postgres] [--sqlite-workers]
 */
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { uniqueName } from '../test/helpers/browser.js';
import { randomSecret, startServer, tempDir } from '../test/helpers/process.js';
import { callApi, RemoteBrowser, startInstances } from '../test/helpers/remote-browser.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100' },
    url: { type: 'string', default: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    'sqlite-workers': { type: 'boolean', default: false },
  },
});
const count = Number(values.count);
/** Probes in a row that must refuse (on new connections, so over both workers). */
const SQLITE_RUN = 6;

/** GET /api/me on a connection of its own (no keep-alive): the next worker in turn answers. */
function statusOnNewConnection(base: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/api/me`, { agent: false, headers: { Authorization: `Bearer ${token}`, Connection: 'close' } }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `probe` until it answers 401 `run` times in a row; ms from `since` to the first of that run. */
async function refusedAfter(probe: () => Promise<number>, since: number, run = 1): Promise<number> {
  let first = 0;
  let streak = 0;
  for (;;) {
    const at = performance.now();
    if ((await probe()) === 401) {
      if (streak === 0) first = at - since;
      streak += 1;
      if (streak >= run) return first;
    } else {
      streak = 0;
    }
    if (performance.now() - since > 10_000) throw new Error('a revoked token was still accepted after 10 s');
    await new Promise((r) => setTimeout(r, 2));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Signs in on `base`, has every `users` base accept the token, signs out; the later refusal's ms. */
async function oneRevocation(base: string, accept: () => Promise<boolean>, refused: (token: string, since: number) => Promise<number>, tokenBox: { token: string }): Promise<number> {
  const user = new RemoteBrowser();
  const registered = await user.register(base, uniqueName('rev'));
  if (registered.status !== 302) throw new Error(`registration answered ${registered.status}`);
  tokenBox.token = await user.token(base);
  if (!(await accept())) throw new Error('a fresh token was refused');
  const since = performance.now();
  const out = await user.logout(base);
  if (out.status !== 302) throw new Error(`sign-out answered ${out.status}`);
  return refused(tokenBox.token, since);
}

async function measure(label: string, run: () => Promise<number>): Promise<void> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i += 1) latencies.push(await run());
  const sorted = [...latencies].sort((x, y) => x - y);
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  process.stdout.write(
    `${label}, ${count} revocations (from the sign-out request, its own round trip included):\n` +
      `  min ${ms(sorted[0]!)}  p50 ${ms(percentile(sorted, 50))}  p90 ${ms(percentile(sorted, 90))}  p99 ${ms(percentile(sorted, 99))}  max ${ms(sorted.at(-1)!)}\n`,
  );
}

if (values['sqlite-workers']) {
  const tmp = tempDir();
  writeFileSync(path.join(tmp.dir, '.env'), '');
  const server = await startServer({
    ENV_FILE: path.join(tmp.dir, '.env'),
    DATABASE_URL: `sqlite:${path.join(tmp.dir, 'app.sqlite')}`,
    JWT_SECRET_KEY: randomSecret(),
    SESSION_SECRET: randomSecret(),
    WEB_CONCURRENCY: '2',
    NODE_ENV: 'test',
    REGISTER_IP_MAX: '100000',
  });
  try {
    const box = { token: '' };
    const probe = () => statusOnNewConnection(server.baseUrl, box.token);
    const accept = async () => (await Promise.all([probe(), probe(), probe(), probe()])).every((s) => s === 200);
    await measure('SQLite, WEB_CONCURRENCY=2: refused on both workers', () => oneRevocation(server.baseUrl, accept, (_t, since) => refusedAfter(probe, since, SQLITE_RUN), box));
  } finally {
    await server.stop();
    tmp.cleanup();
  }
} else {
  // The test helpers read TEST_DATABASE_URL when they load: set it first, then load them.
  process.env.TEST_DATABASE_URL = values.url;
  const { createTestDatabase } = await import('../test/helpers/postgres.js');
  const database = await createTestDatabase();
  const instances = await startInstances(3, { DATABASE_URL: database.url, NODE_ENV: 'test', REGISTER_IP_MAX: '100000' });
  try {
    const [a, b, c] = instances.servers.map((s) => s.baseUrl) as [string, string, string];
    const box = { token: '' };
    const accept = async () => (await Promise.all([callApi(b, box.token), callApi(c, box.token)])).every((r) => r.status === 200);
    const refused = async (token: string, since: number) =>
      Math.max(...(await Promise.all([b, c].map((base) => refusedAfter(async () => (await callApi(base, token)).status, since)))));
    await measure('PostgreSQL, three processes: refused on both B and C', () => oneRevocation(a, accept, refused, box));
  } finally {
    await instances.stopAll();
    await database.drop();
  }
}
