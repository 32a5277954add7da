/**
 * `npm run bench [-- --quick | --soak MINUTES]`: the app side by side with two baselines.
 *
 * `npm run bench` has already built the app (dist/). Every round then starts a
 * new server process per target on 127.0.0.1 (the app's `node dist/server.js`
 * in production mode behind a simulated TLS proxy, the Express floor, the
 * node:http + HS256 ceiling), sets each up through the app's real forms and
 * warms it up, measures all targets in a shuffled order with autocannon and
 * stops them. A long-lived app process then serves mixed traffic (what
 * production sees): alternating rounds, sign-in storms and an RSS run.
 * `--soak` runs bench/soak.ts instead. See bench/README.md for the output.
 */
import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { projectRoot as root } from '../paths.js';
import { renderRatioChart, renderSoakChart } from './chart.js';
import {
  computeMedians,
  countErrors,
  evaluateGoals,
  fmtInt,
  memoryReport,
  plural,
  renderReport,
  TARGET_LABELS,
  type Goal,
  type MemoryReport,
  type Medians,
  type Round,
  type RssSample,
  type TargetId,
} from './report.js';
import { fixedAmount, loginStorm, probeLatency, PROXY_HEADERS, throughput } from './scenarios.js';
import { installPeer, PEERS, peerRun, setUpPeer, startPeer, type PeerName, type PeerRun } from './peers.js';
import { APP_NODE_FLAGS, cpuSecondsOfTree, freePort, memoryOf, setUpApp, startApp, startBaseline, status, stopServer, type Fixture, type Server } from './servers.js';
import { renderSoak, runSoak, soakGoals, type Soak } from './soak.js';

// ------------------------------------------------------------------ options

/** Fresh-process targets, by the --only name that selects them, and the long-lived scenarios. */
const SCENARIOS = ['floor', 'ceiling', 'me', 'uncached', 'token', 'es256', 'rs256', 'metrics', 'pg', 'mixed', 'login', 'rss'];
/** Not in the default run: asked for by name with --only. */
const OPT_IN = ['uncached', 'rs256', 'metrics'];

const USAGE = `usage: npm run bench [-- options]
  --quick          short run (about 1.5 minutes): 3 rounds of 1 s, 1 long-lived round, 10,000 requests (at most 8 s) for RSS
  --rounds N       rounds of fresh processes (default 5, quick 3)
  --duration S     seconds per measured throughput run (default 5, quick 1)
  --mixed-rounds N rounds of the long-lived mixed scenario (default 3, quick 1)
  --rss-seconds S  time limit of the RSS run (default 60, quick 8)
  --only LIST      comma list of ${SCENARIOS.join(',')} (default: all but ${OPT_IN.join(' and ')});
                   uncached = /api/me on an app with REVOCATION_CACHE_TTL=0;
                   es256, rs256 = /api/me and /auth/token on an app with that JWT_ALGORITHM;
                   metrics = the same two on an app with METRICS_PORT set (Prometheus metrics collected);
                   pg = the two routes on PostgreSQL (--pg-url); mixed, login, rss = the long-lived app's
                   throughput rounds, sign-in storms and RSS run
  --peer NAME      also measure a peer doing the same two jobs in the same rounds: better-auth (Better Auth's
                   JWT plugin on Express and SQLite: GET /api/auth/token, and a jose-verified GET /api/me);
                   installed on first use into bench/peers/NAME/node_modules (git-ignored, a few minutes)
  --app-env K=V    one more environment variable for every app process (repeatable), e.g. MALLOC_ARENA_MAX=2
  --pg-url URL     PostgreSQL server for the pg targets (default postgres://postgres@127.0.0.1:5432/postgres);
                   a fresh database is created on it and dropped after the run
  --soak MINUTES   soak mode instead: mixed sign-ins, mints, API calls and sign-outs against one app
  --soak-rate N    requests per second of the soak (default 300)
  --cpu-prof DIR   run every app process under node --cpu-prof, profiles written to DIR/<target>/ (open them in Chrome DevTools)
  --out FILE       results file (default bench/results.json, soak bench/results-soak.json); the chart goes next to it as .svg
  --no-chart       do not write the SVG chart
  --strict         exit 1 when a goal is missed (errors always exit 1)`;

/** Everything a run is set to; written to results.json as `settings`. */
function settingsFrom(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      'mixed-rounds': { type: 'string' },
      'rss-seconds': { type: 'string' },
      only: { type: 'string' },
      'pg-url': { type: 'string' },
      'app-env': { type: 'string', multiple: true },
      peer: { type: 'string' },
      soak: { type: 'string' },
      'soak-rate': { type: 'string' },
      'cpu-prof': { type: 'string' },
      out: { type: 'string' },
      'no-chart': { type: 'boolean' },
      strict: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const num = (flag: string, value: string | undefined, fallback: number, min: number, max: number) => {
    const n = value === undefined ? fallback : Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${flag} wants a number from ${min} to ${max}`);
    return n;
  };
  const only = values.only?.split(',').map((x) => x.trim()).filter(Boolean) ?? SCENARIOS.filter((x) => !OPT_IN.includes(x));
  if (only.length === 0 || only.some((x) => !SCENARIOS.includes(x))) throw new Error(`--only takes a comma list of ${SCENARIOS.join(', ')}`);
  const peers = values.peer?.split(',').map((x) => x.trim()).filter(Boolean) ?? [];
  if (peers.some((x) => !(PEERS as readonly string[]).includes(x))) throw new Error(`--peer takes ${PEERS.join(', ')}`);
  const appEnv: Record<string, string> = {};
  for (const pair of values['app-env'] ?? []) {
    const at = pair.indexOf('=');
    if (at < 1) throw new Error(`--app-env wants NAME=VALUE, got ${JSON.stringify(pair)}`);
    appEnv[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const quick = values.quick === true;
  const soakMinutes = values.soak === undefined ? null : num('--soak', values.soak, 10, 0.5, 240);
  const s = {
    mode: soakMinutes !== null ? 'soak' : quick ? 'quick' : 'full',
    rounds: Math.round(num('--rounds', values.rounds, quick ? 3 : 5, 1, 20)),
    /** Seconds of each measured throughput run. */
    seconds: num('--duration', values.duration, quick ? 1 : 5, 1, 60),
    /** Requests each target gets before its first measured run (not recorded). */
    warmupRequests: quick ? 500 : 3_000,
    mixedRounds: Math.round(num('--mixed-rounds', values['mixed-rounds'], quick ? 1 : 3, 1, 20)),
    connections: 16,
    loginSeconds: quick ? 3 : 6,
    stormConcurrency: 16,
    probeRate: 50,
    rssRequests: quick ? 10_000 : 100_000,
    rssSeconds: num('--rss-seconds', values['rss-seconds'], quick ? 8 : 60, 1, 600),
    logLevel: 'warn',
    only,
    peers: peers as PeerName[],
    appEnv,
    pgUrl: values['pg-url'] ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    soakMinutes,
    soakRate: num('--soak-rate', values['soak-rate'], 300, 10, 100_000),
    out: path.resolve(values.out ?? path.join(root, 'bench', soakMinutes !== null ? 'results-soak.json' : 'results.json')),
    cpuProf: values['cpu-prof'] === undefined ? null : path.resolve(values['cpu-prof']),
    strict: values.strict === true,
    chart: values['no-chart'] !== true,
    /** Hard limit of the whole run, after which everything is killed. */
    maxTotalSeconds: 0,
  };
  // Worst case: each round's start-up and set-up, eleven targets' warm-ups and runs; the mixed rounds, RSS; slack.
  const freshRound = 40 + 11 * (s.seconds + 6);
  const mixedRound = 3 * s.seconds + s.loginSeconds + 30;
  s.maxTotalSeconds =
    soakMinutes !== null ? soakMinutes * 60 + 180 : Math.max(quick ? 180 : 600, 60 + s.rounds * freshRound + s.mixedRounds * mixedRound + 2 * s.rssSeconds + 60);
  return s;
}

export type Settings = ReturnType<typeof settingsFrom>;

// ------------------------------------------------------------ environment

/** The app's version and those of its dependencies and the load generator, as installed. */
function versions(): Record<string, string> {
  type Manifest = { name: string; version: string; dependencies?: Record<string, string> };
  const manifest = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as Manifest;
  const app = manifest(root);
  const out: Record<string, string> = { [app.name]: app.version };
  for (const name of [...Object.keys(app.dependencies ?? {}), 'autocannon']) {
    try {
      out[name] = manifest(path.join(root, 'node_modules', name)).version;
    } catch {
      out[name] = 'missing';
    }
  }
  return out;
}

function gitInfo(): { commit: string | null; dirty: boolean | null } {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return { commit: git('rev-parse', 'HEAD'), dirty: git('status', '--porcelain', '--untracked-files=no') !== '' };
  } catch {
    return { commit: null, dirty: null };
  }
}

const loadAverage = () => os.loadavg().map((x) => Number(x.toFixed(2)));

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuMHz: cpus[0]?.speed ?? null,
    totalMemoryMB: Math.round(os.totalmem() / (1024 * 1024)),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    uvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
    loadAverageAtStart: loadAverage(),
  };
}

/** A JWT for the ceiling baseline, signed here with node:crypto (same claims shape as the app's). */
function ceilingToken(key: string): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const iat = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub: '1', username: 'bench_ceiling', roles: [], sid: randomUUID(), jti: randomUUID(), iat, exp: iat + 6 * 3600, iss: 'token-bridge', aud: 'api' });
  const sig = createHmac('sha256', Buffer.from(key, 'utf8')).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Run-wide clean-up (the temp folder, the PostgreSQL database), also on Ctrl-C and the hard time limit. */
const cleanups: (() => Promise<void> | void)[] = [];
async function cleanUp(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await Promise.resolve(fn()).catch((err: unknown) => status(`clean-up failed: ${String(err)}`));
}
function bail(message: string, code: number): void {
  process.stderr.write(`bench: ${message}\n`);
  // At most 10 s for the clean-up (dropping the PostgreSQL database), then out.
  setTimeout(() => process.exit(code), 10_000).unref();
  void cleanUp().finally(() => process.exit(code));
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => bail(`${signal}, stopping`, 130));

/**
 * A fresh PostgreSQL database on `url`, made and dropped by test/helpers/postgres.ts
 * (it reads TEST_DATABASE_URL when it loads), or why there is none.
 */
async function postgresDatabase(url: string): Promise<{ url: string } | { skipped: string }> {
  process.env.TEST_DATABASE_URL = url;
  try {
    const { createTestDatabase } = await import('../test/helpers/postgres.js');
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    return { url: database.url };
  } catch (err) {
    const why = err instanceof AggregateError ? err.errors.map(String).join('; ') : err instanceof Error ? err.message : String(err);
    return { skipped: `PostgreSQL at ${url.replace(/\/\/[^@/]*@/, '//')} is unreachable (${why || 'no answer'})` };
  }
}

// ----------------------------------------------------------------- targets

/** One measured target: which server, which route, what it must answer. */
interface Target {
  id: TargetId;
  server: Server;
  path: string;
  headers: Record<string, string>;
  expect: string | ((body: string) => boolean);
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const tokenBody = (b: string) => b.startsWith('{"token":"ey') && b.includes('"token_type":"Bearer"');
const FLOOR_BODY = JSON.stringify({ id: '1', username: 'bench_floor', roles: [] });
const CEILING_BODY = JSON.stringify({ id: '1', username: 'bench_ceiling', roles: [] });

/** An app target: `/api/me` with the fixture's bearer token or `/auth/token` with its session cookie. */
function appTarget(id: TargetId, server: Server, route: 'me' | 'token', f: Fixture): Target {
  return route === 'me'
    ? { id, server, path: '/api/me', headers: bearer(f.token), expect: f.meBody }
    : { id, server, path: '/auth/token', headers: { ...PROXY_HEADERS, cookie: f.cookie }, expect: tokenBody };
}

/** The app configurations of the fresh rounds: each has one database for the whole run, shared by its processes. */
type AppKind = 'hs256' | 'es256' | 'rs256' | 'metrics' | 'pg';

/** Every fresh-process target: the --only (or --peer) name that selects it and the server it needs. */
const FRESH_TARGETS: { id: TargetId; only: string; app?: AppKind; peer?: PeerName; route?: 'me' | 'token'; env?: Record<string, string> }[] = [
  { id: 'floor', only: 'floor' },
  { id: 'ceiling', only: 'ceiling' },
  { id: 'me', only: 'me', app: 'hs256', route: 'me' },
  // Without the revocation cache: the token is checked against the database (two indexed lookups) on every call.
  { id: 'uncached', only: 'uncached', app: 'hs256', route: 'me', env: { REVOCATION_CACHE_TTL: '0' } },
  { id: 'token', only: 'token', app: 'hs256', route: 'token' },
  { id: 'meEs256', only: 'es256', app: 'es256', route: 'me' },
  { id: 'tokenEs256', only: 'es256', app: 'es256', route: 'token' },
  { id: 'meRs256', only: 'rs256', app: 'rs256', route: 'me' },
  { id: 'tokenRs256', only: 'rs256', app: 'rs256', route: 'token' },
  { id: 'meMetrics', only: 'metrics', app: 'metrics', route: 'me' },
  { id: 'tokenMetrics', only: 'metrics', app: 'metrics', route: 'token' },
  { id: 'mePg', only: 'pg', app: 'pg', route: 'me' },
  { id: 'tokenPg', only: 'pg', app: 'pg', route: 'token' },
  { id: 'peerMe', only: 'better-auth', peer: 'better-auth', route: 'me' },
  { id: 'peerToken', only: 'better-auth', peer: 'better-auth', route: 'token' },
];

/** A uniformly shuffled copy (Fisher–Yates). */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Requests to one target, not recorded: JIT, the heap's sizing, connection pools, the database's page cache. */
async function warmUp(t: Target, s: Settings): Promise<void> {
  const { expect } = t;
  const check = typeof expect === 'string' ? (b: string) => b === expect : expect;
  await fixedAmount({ port: t.server.port, connections: s.connections, amount: s.warmupRequests, limitMs: 60_000, requests: [{ path: t.path, headers: t.headers, expect: check }] });
}

/** Microseconds of CLOCK_MONOTONIC, the clock of a `--cpu-prof` profile's `startTime` and samples on Linux. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** One throughput run per target in `order`, each with the CPU time its server's process tree used per request. */
async function measure(order: readonly Target[], s: Settings, label: string): Promise<Round['throughput']> {
  const out: Round['throughput'] = {};
  for (const t of order) {
    status(`${label} · ${TARGET_LABELS[t.id]}`);
    const pid = t.server.proc.child.pid;
    const cpuBefore = cpuSecondsOfTree(pid);
    const from = monotonicUs();
    const run = await throughput({ port: t.server.port, path: t.path, headers: t.headers, expect: t.expect, connections: s.connections, seconds: s.seconds });
    const window: [number, number] = [from, monotonicUs()];
    const cpuAfter = cpuSecondsOfTree(pid);
    const cpuUs = cpuBefore !== null && cpuAfter !== null && run.requests > 0 ? ((cpuAfter - cpuBefore) * 1e6) / run.requests : null;
    out[t.id] = { ...run, cpuUs, pid, window };
  }
  return out;
}

interface Run {
  s: Settings;
  tmp: string;
  jwtKey: string;
  ceilingJwt: string;
  /** The app's environment (production, behind a TLS proxy on loopback), less its database. */
  appEnv: Record<string, string>;
  /** Every server's exit on SIGTERM, by `round N target`. */
  exits: Record<string, string>;
}

/** `node --cpu-prof` into DIR/<folder> when profiling. */
const profiled = (s: Settings, folder: string) => (s.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(s.cpuProf, folder)}`] : []);

/**
 * The fresh-process rounds: every round a new server per target (servers of one
 * database started one after another, so that the first runs the migrations
 * alone), each set up through the forms and warmed up, then all measured in a
 * shuffled order and stopped.
 */
async function freshRounds(run: Run, databases: Partial<Record<AppKind, string>>): Promise<Round[]> {
  const { s } = run;
  const specs = FRESH_TARGETS.filter(
    (t) => (t.peer ? s.peers.includes(t.peer) : s.only.includes(t.only)) && (t.app === undefined || databases[t.app] !== undefined),
  );
  if (specs.length === 0) return [];
  const config: Record<AppKind, Record<string, string>> = { hs256: {}, es256: { JWT_ALGORITHM: 'ES256' }, rs256: { JWT_ALGORITHM: 'RS256' }, metrics: {}, pg: {} };
  const peer: PeerRun = peerRun(run.tmp);
  const start = async (spec: (typeof specs)[number], round: number): Promise<Target> => {
    const name = `round ${round} ${spec.id}`;
    if (spec.peer) {
      const server = await startPeer(name, peer, profiled(s, spec.id));
      const f = await setUpPeer(server.port);
      return spec.route === 'me'
        ? { id: spec.id, server, path: '/api/me', headers: bearer(f.token), expect: f.meBody }
        : { id: spec.id, server, path: '/api/auth/token', headers: { cookie: f.cookie }, expect: (b: string) => b.startsWith('{"token":"ey') };
    }
    if (spec.id === 'floor') return { id: 'floor', server: await startBaseline(name, 'express-floor.ts'), path: '/api/me', headers: {}, expect: FLOOR_BODY };
    if (spec.id === 'ceiling') {
      const server = await startBaseline(name, 'http-ceiling.ts', { BENCH_JWT_KEY: run.jwtKey });
      return { id: 'ceiling', server, path: '/api/me', headers: bearer(run.ceilingJwt), expect: CEILING_BODY };
    }
    const app = spec.app!;
    // Each process its own metrics port (the app refuses METRICS_PORT equal to PORT; two processes cannot share one).
    const metrics: Record<string, string> = app === 'metrics' ? { METRICS_PORT: String(await freePort()), METRICS_HOST: '127.0.0.1' } : {};
    const server = await startApp(name, profiled(s, spec.id), { ...run.appEnv, ...config[app], ...metrics, DATABASE_URL: databases[app]!, ...spec.env });
    return appTarget(spec.id, server, spec.route!, await setUpApp(server.port, 0));
  };
  const groups = new Map<string, typeof specs>();
  for (const spec of specs) {
    const group = spec.app ?? spec.peer ?? spec.id;
    groups.set(group, [...(groups.get(group) ?? []), spec]);
  }
  const rounds: Round[] = [];
  for (let r = 1; r <= s.rounds; r += 1) {
    status(`round ${r}/${s.rounds} · starting ${specs.length} servers, setting each up through the forms`);
    const started = await Promise.allSettled(
      [...groups.values()].map(async (group) => {
        const targets: Target[] = [];
        for (const spec of group) targets.push(await start(spec, r));
        return targets;
      }),
    );
    const targets = started.flatMap((x) => (x.status === 'fulfilled' ? x.value : []));
    try {
      const failed = started.find((x): x is PromiseRejectedResult => x.status === 'rejected');
      if (failed) throw failed.reason;
      status(`round ${r}/${s.rounds} · warm-up, ${fmtInt(s.warmupRequests)} requests each`);
      for (const t of targets) await warmUp(t, s);
      const order = shuffled(targets);
      rounds.push({ round: r, order: order.map((t) => t.id), throughput: await measure(order, s, `round ${r}/${s.rounds}`) });
    } finally {
      const exits = await Promise.all(targets.map((t) => stopServer(t.server)));
      targets.forEach((t, i) => (run.exits[t.server.name] = exits[i]!));
    }
  }
  return rounds;
}

/** The long-lived scenario: what production sees. */
interface Mixed {
  rounds: Round[];
  medians: Medians;
  memory?: MemoryReport;
}

/**
 * One app process and one Express floor for the whole scenario: warm-up, then
 * rounds of floor, `/api/me` and `/auth/token` (order rotated every round) and
 * a sign-in storm, then VmRSS over a fixed number of mixed requests.
 */
async function mixedScenario(run: Run): Promise<Mixed | undefined> {
  const { s } = run;
  const wants = (x: string) => s.only.includes(x);
  if (!['mixed', 'login', 'rss'].some(wants)) return undefined;
  status('long-lived app: starting it and an Express floor, registering users through the form');
  const app = await startApp('long-lived app', profiled(s, 'long-lived'), { ...run.appEnv, DATABASE_URL: `sqlite:${path.join(run.tmp, 'long-lived.sqlite')}` });
  const floor = wants('mixed') ? await startBaseline('long-lived floor', 'express-floor.ts') : undefined;
  try {
    const fixture = await setUpApp(app.port, wants('login') ? s.stormConcurrency : 0);
    const idleAfterSetup = memoryOf(app.proc.child.pid);
    const targets: Target[] = [];
    if (floor) targets.push({ id: 'floor', server: floor, path: '/api/me', headers: {}, expect: FLOOR_BODY }, appTarget('me', app, 'me', fixture), appTarget('token', app, 'token', fixture));
    for (const t of targets) await warmUp(t, s);
    const rounds: Round[] = [];
    for (let r = 0; r < s.mixedRounds; r += 1) {
      const label = `long-lived round ${r + 1}/${s.mixedRounds}`;
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      const round: Round = { round: r + 1, order: order.map((t) => t.id), throughput: await measure(order, s, label) };
      if (wants('login')) {
        status(`${label} · /healthz probe, app idle`);
        round.healthzIdle = await probeLatency({ port: app.port, path: '/healthz', rate: s.probeRate, seconds: s.mode === 'quick' ? 1 : 2, expect: '{"status":"ok"}' });
        status(`${label} · sign-in storm (${s.stormConcurrency} browsers) + /healthz probe`);
        Object.assign(round, await loginStorm({ port: app.port, users: fixture.pool, concurrency: s.stormConcurrency, seconds: s.loginSeconds, probeRate: s.probeRate }));
      }
      rounds.push(round);
    }
    const memory = wants('rss') ? await rssRun(app, fixture, s, idleAfterSetup?.rss ?? null) : undefined;
    return { rounds, medians: computeMedians(rounds), memory };
  } finally {
    run.exits[app.name] = await stopServer(app);
    if (floor) run.exits[floor.name] = await stopServer(floor);
  }
}

/** VmRSS of the app every 100 ms over a fixed number of requests alternating `/api/me` and `/auth/token`. */
async function rssRun(app: Server, fixture: Fixture, s: Settings, idleAfterSetup: number | null): Promise<MemoryReport> {
  const pid = app.proc.child.pid;
  const requests = [appTarget('me', app, 'me', fixture), appTarget('token', app, 'token', fixture)].map((t) => ({
    path: t.path,
    headers: t.headers,
    expect: typeof t.expect === 'string' ? (b: string) => b === t.expect : t.expect,
  }));
  const mix = (amount: number) => fixedAmount({ port: app.port, connections: s.connections, amount, limitMs: s.rssSeconds * 1000, requests });
  // The heap sizes itself to a new load within seconds: a tenth of the amount first, not measured.
  const warmup = Math.round(s.rssRequests / 10);
  status(`RSS: warm-up, ${fmtInt(warmup)} requests`);
  await mix(warmup);
  await sleep(500);
  const before = memoryOf(pid);
  // Every 100 ms: the young generation makes RSS swing by tens of MB between
  // scavenges, so single readings say more about the GC's phase than about a leak.
  const t0 = performance.now();
  const series: RssSample[] = [];
  const sampler = setInterval(() => {
    const m = memoryOf(pid);
    if (m) series.push({ ms: Math.round(performance.now() - t0), rss: m.rss });
  }, 100);
  status(`RSS: ${fmtInt(s.rssRequests)} requests`);
  const result = await mix(s.rssRequests);
  clearInterval(sampler);
  const after = memoryOf(pid);
  return memoryReport({
    requests: result.requests,
    planned: s.rssRequests,
    warmup,
    mix: 'alternating GET /api/me and GET /auth/token',
    idleAfterSetup,
    before: before?.rss ?? null,
    after: after?.rss ?? null,
    peak: after?.hwm ?? null,
    series,
    run: result,
  });
}

// ---------------------------------------------------------------------- main

async function main(): Promise<number> {
  const s = settingsFrom(process.argv.slice(2));
  if (!existsSync(path.join(root, 'dist', 'server.js'))) throw new Error('dist/server.js is missing: run `npm run bench` (it builds first) or `npm run build`');
  setTimeout(() => bail(`still running after ${s.maxTotalSeconds} s, giving up`, 1), s.maxTotalSeconds * 1000).unref();
  const startedAt = new Date();
  const info = { machine: machine(), versions: versions(), git: gitInfo() };
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'token-bridge-bench-'));
  cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
  const secret = () => randomBytes(48).toString('base64url');
  const jwtKey = secret();
  const run: Run = {
    s,
    tmp,
    jwtKey,
    ceilingJwt: ceilingToken(jwtKey),
    appEnv: {
      NODE_ENV: 'production',
      // The app's .env, created on first start, goes to the temp folder, not the project's.
      ENV_FILE: path.join(tmp, '.env'),
      LOG_LEVEL: s.logLevel,
      JWT_SECRET_KEY: secret(),
      SESSION_SECRET: secret(),
      TRUST_PROXY: 'loopback',
      ...s.appEnv,
    },
    exits: {},
  };

  const skipped: Record<string, string> = {};
  let fields: { soak: Soak } | { medians: Medians; errors: ReturnType<typeof countErrors>; rounds: Round[]; mixed?: Mixed };
  let goals: Goal[];
  let failed: number;
  if (s.soakMinutes !== null) {
    const soak = await runSoak(run, profiled(s, 'soak'));
    goals = soakGoals(soak);
    failed = soak.totals.errors + soak.totals.unexpected + soak.totals.mismatches;
    fields = { soak };
  } else {
    const databases: Partial<Record<AppKind, string>> = {};
    for (const peer of s.peers) installPeer(peer);
    for (const app of ['hs256', 'es256', 'rs256', 'metrics'] as const) databases[app] = `sqlite:${path.join(tmp, `${app}.sqlite`)}`;
    if (s.only.includes('pg')) {
      status('PostgreSQL: creating a fresh database');
      const pg = await postgresDatabase(s.pgUrl);
      if ('url' in pg) databases.pg = pg.url;
      else {
        skipped.pg = `PostgreSQL targets skipped: ${pg.skipped}`;
        status(skipped.pg);
      }
    }
    const rounds = await freshRounds(run, databases);
    const mixed = await mixedScenario(run);
    const medians = computeMedians(rounds);
    const errors = countErrors([...rounds, ...(mixed?.rounds ?? [])], mixed?.memory);
    goals = evaluateGoals({ rounds, medians }, mixed, errors.app);
    failed = [errors.app, errors.baselines].reduce((n, e) => n + e.errors + e.non2xx + e.mismatches, 0);
    fields = { medians, errors, rounds, mixed };
  }
  await cleanUp();

  const finishedAt = new Date();
  const results = {
    schema: 2,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    seconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000),
    settings: s,
    ...info,
    loadAverageAtEnd: loadAverage(),
    skipped,
    exits: run.exits,
    goals,
    ...fields,
  };
  writeFileSync(s.out, `${JSON.stringify(results, null, 2)}\n`);
  // The chart's path: the results file's with .svg for its extension (`/tmp/x.json` → `/tmp/x.svg`).
  const { dir, name, ext } = path.parse(s.out);
  const chart = s.chart ? path.join(dir, ext.toLowerCase() === '.svg' ? `${name}${ext}.svg` : `${name}.svg`) : null;
  if (chart) writeFileSync(chart, 'soak' in fields ? renderSoakChart(fields.soak, results) : renderRatioChart({ ...results, ...fields }));

  const m = info.machine;
  const shown = (file: string) => path.relative(process.cwd(), file) || file;
  const heading =
    s.soakMinutes !== null ? `soak · ${s.soakMinutes} min at ${fmtInt(s.soakRate)} req/s` : `${s.mode} · ${plural(s.rounds, 'round')} of fresh processes × ${s.seconds} s${'mixed' in fields && fields.mixed ? `, ${s.mixedRounds} long-lived` : ''}`;
  const report = renderReport({
    title: `token-bridge benchmark · ${heading} · ${results.seconds} s in all`,
    subtitle: [
      `node ${m.node} · ${m.os} · ${m.cpus} × ${m.cpuModel} · load ${m.loadAverageAtStart.join(' ')} → ${results.loadAverageAtEnd.join(' ')}`,
      `app ${info.git.commit?.slice(0, 10) ?? '?'}${info.git.dirty ? ' (uncommitted changes)' : ''} · node ${APP_NODE_FLAGS.join(' ')} dist/server.js (as npm start) · NODE_ENV=production LOG_LEVEL=${s.logLevel} · all traffic on 127.0.0.1`,
      ...Object.values(skipped),
      ...(Object.keys(s.appEnv).length ? [`every app process also had ${Object.entries(s.appEnv).map(([k, v]) => `${k}=${v}`).join(' ')} (--app-env)`] : []),
    ],
    ...('soak' in fields ? { sections: renderSoak(fields.soak) } : fields),
    goals,
    connections: s.connections,
    stormConcurrency: s.stormConcurrency,
    probeRate: s.probeRate,
  });
  process.stdout.write(`${report}\n\nresults: ${shown(s.out)}${chart ? ` · chart: ${shown(chart)}` : ''}${s.cpuProf ? ` · CPU profiles: ${s.cpuProf}` : ''}\n`);
  const unclean = Object.entries(run.exits).filter(([, exit]) => exit !== '0');
  for (const [server, exit] of unclean) process.stderr.write(`bench: ${server} did not exit cleanly on SIGTERM (${exit})\n`);
  if (failed > 0) {
    process.stderr.write(`bench: ${failed} failed requests: the figures above are not trustworthy\n`);
    return 1;
  }
  if (unclean.length > 0) return 1;
  return s.strict && goals.some((g) => g.pass === false) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? `\n${USAGE}` : '';
    bail(`${err instanceof Error ? err.message : String(err)}${usage}`, 1);
  },
);
