/**
 * How long a revocation on one instance takes to be refused on the others,
 * on PostgreSQL (LISTEN/NOTIFY): three real server processes on one new
 * database; for each of N users, sign in and mint on A, have B and C accept
 * the token (so they cache it), sign out on A, then poll B and C every 2 ms
 * until both refuse it. Prints the distribution of the later of the two.
 *
 *   node --import tsx bench/revocation-latency.ts [--count 100] [--url postgres://postgres@127.0.0.1:5432/postgres]
 */
import { parseArgs } from 'node:util';
import { uniqueName } from '../test/helpers/browser.js';
import { callApi, RemoteBrowser, startInstances } from '../test/helpers/remote-browser.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100' },
    url: { type: 'string', default: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const count = Number(values.count);

/** Polls until `base` refuses `token`; ms from `since`. */
async function refusedAfter(base: string, token: string, since: number): Promise<number> {
  for (;;) {
    if ((await callApi(base, token)).status === 401) return performance.now() - since;
    if (performance.now() - since > 10_000) throw new Error(`${base} still accepts a revoked token after 10 s`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// The test helpers read TEST_DATABASE_URL when they load: set it first, then load them.
process.env.TEST_DATABASE_URL = values.url;
const { createTestDatabase } = await import('../test/helpers/postgres.js');
const database = await createTestDatabase();
const instances = await startInstances(3, { DATABASE_URL: database.url, NODE_ENV: 'test', REGISTER_IP_MAX: '100000' });
try {
  const [a, b, c] = instances.servers.map((s) => s.baseUrl) as [string, string, string];
  const latencies: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const user = new RemoteBrowser();
    const registered = await user.register(a, uniqueName('rev'));
    if (registered.status !== 302) throw new Error(`registration answered ${registered.status}`);
    const token = await user.token(a);
    for (const base of [b, c]) if ((await callApi(base, token)).status !== 200) throw new Error('a fresh token was refused');
    const since = performance.now();
    const out = await user.logout(a);
    if (out.status !== 302) throw new Error(`sign-out answered ${out.status}`);
    latencies.push(Math.max(...(await Promise.all([refusedAfter(b, token, since), refusedAfter(c, token, since)]))));
  }
  const sorted = [...latencies].sort((x, y) => x - y);
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  process.stdout.write(
    `revocation on A refused on both B and C, ${count} revocations (from the sign-out request, incl. its own round trip):\n` +
      `  min ${ms(sorted[0]!)}  p50 ${ms(percentile(sorted, 50))}  p90 ${ms(percentile(sorted, 90))}  p99 ${ms(percentile(sorted, 99))}  max ${ms(sorted.at(-1)!)}\n`,
  );
} finally {
  await instances.stopAll();
  await database.drop();
}
