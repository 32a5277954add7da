/**
 * `npm run bench [-- --quick]`: the app side by side with two baselines.
 *
 * `npm run bench` has already built the app (dist/). This script then starts,
 * as child processes on 127.0.0.1:
 *   - the app: `node dist/server.js`, NODE_ENV=production, fresh random secrets,
 *     a fresh SQLite file in a temp folder, LOG_LEVEL=warn, behind a (simulated)
 *     TLS proxy: TRUST_PROXY=loopback and `X-Forwarded-Proto: https`;
 *   - the Express floor (bench/baselines/express-floor.ts);
 *   - the node:http + HS256 ceiling (bench/baselines/http-ceiling.ts);
 * registers users through the real register form, and runs alternating rounds
 * of autocannon load. See bench/README.md for how to read the output.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderRatioChart } from './chart.js';
import { csrfFrom, formBody, formPostHeaders, PROXY_HEADERS, request, SESSION_COOKIE, sessionCookieFrom } from './lib/http.js';
import { freePort, killAll, memoryOf, sleep, startNode, type Child } from './lib/processes.js';
import {
  computeMedians,
  countErrors,
  evaluateGoals,
  fmtInt,
  renderReport,
  memoryReport,
  TARGET_LABELS,
  type MemoryReport,
  type RssSample,
  type Round,
  type TargetId,
} from './report.js';
import { fixedAmount, loginStorm, probeLatency, throughput, type LoginUser, type Progress, type RunStats } from './scenarios.js';

const root = path.resolve(import.meta.dirname, '..');
/** The run's temp folder (the SQLite file), removed on every exit path. */
let tempDir: string | undefined;

// ------------------------------------------------------------------ options

export interface Settings {
  mode: 'quick' | 'full';
  rounds: number;
  /** Seconds of each throughput run. */
  seconds: number;
  warmupSeconds: number;
  connections: number;
  loginSeconds: number;
  stormConcurrency: number;
  probeRate: number;
  rssRequests: number;
  rssSeconds: number;
  logLevel: string;
  only: Set<string>;
  out: string;
  cpuProf: string | null;
  strict: boolean;
  /** Write the SVG chart next to the results file (off with --no-chart). */
  chart: boolean;
  /** Hard limit of the whole run, after which everything is killed. */
  maxTotalSeconds: number;
}

const SCENARIOS = ['floor', 'ceiling', 'me', 'uncached', 'token', 'login', 'rss'] as const;
/** What runs without --only: all but `uncached`, the revocation cache's cost, which is asked for. */
const DEFAULT_SCENARIOS = SCENARIOS.filter((x) => x !== 'uncached');
/** The RSS run is preceded by 1/N of its amount, not measured. */
const RSS_WARMUP_FRACTION = 10;
/** How often RSS is read during the RSS run. */
const RSS_SAMPLE_MS = 100;

const USAGE = `usage: npm run bench [-- options]
  --quick              short run (< 1 minute): 3 rounds of 1 s, 10,000 requests (at most 8 s) for RSS
  --rounds N           alternating rounds (default 5, quick 3)
  --duration S         seconds per throughput run (default 6, quick 1)
  --connections N      keep-alive connections for throughput runs (default 16)
  --login-duration S   seconds of each sign-in storm (default 6, quick 3)
  --rss-requests N     requests between the two RSS readings (default 100000, quick 10000)
  --rss-seconds S      time limit of the RSS run (default 60, quick 8)
  --only LIST          comma list of ${SCENARIOS.join(',')} (default: all but uncached;
                       uncached = /api/me on a second instance with REVOCATION_CACHE_TTL=0)
  --log-level L        the app's LOG_LEVEL (default warn)
  --cpu-prof DIR       run the app under node --cpu-prof, profiles written to DIR
  --out FILE           results file (default bench/results.json); the chart goes next to it as .svg
  --no-chart           do not write the SVG chart
  --strict             exit 1 when a goal is missed (errors always exit 1)`;

function parseArgs(argv: string[]): Settings {
  const quick = argv.includes('--quick');
  const s: Settings = {
    mode: quick ? 'quick' : 'full',
    rounds: quick ? 3 : 5,
    seconds: quick ? 1 : 6,
    warmupSeconds: quick ? 1 : 2,
    connections: 16,
    loginSeconds: quick ? 3 : 6,
    stormConcurrency: 16,
    probeRate: 50,
    rssRequests: quick ? 10_000 : 100_000,
    rssSeconds: quick ? 8 : 60,
    logLevel: 'warn',
    only: new Set(DEFAULT_SCENARIOS),
    out: path.join(root, 'bench', 'results.json'),
    cpuProf: null,
    strict: false,
    chart: true,
    maxTotalSeconds: quick ? 120 : 480,
  };
  const num = (flag: string, value: string | undefined, min: number, max: number) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${flag} wants a number from ${min} to ${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--quick':
        break;
      case '--rounds':
        s.rounds = Math.round(num(flag, value(), 1, 20));
        break;
      case '--duration':
        s.seconds = num(flag, value(), 0.5, 60);
        break;
      case '--connections':
        s.connections = Math.round(num(flag, value(), 1, 256));
        break;
      case '--login-duration':
        s.loginSeconds = num(flag, value(), 1, 60);
        break;
      case '--rss-requests':
        s.rssRequests = Math.round(num(flag, value(), 1000, 1_000_000));
        break;
      case '--rss-seconds':
        s.rssSeconds = num(flag, value(), 1, 600);
        break;
      case '--only': {
        const list = (value() ?? '').split(',').map((x) => x.trim()).filter(Boolean);
        const unknown = list.filter((x) => !(SCENARIOS as readonly string[]).includes(x));
        if (unknown.length || list.length === 0) throw new Error(`--only takes a comma list of ${SCENARIOS.join(', ')}`);
        s.only = new Set(list);
        break;
      }
      case '--log-level':
        s.logLevel = value() ?? 'warn';
        break;
      case '--cpu-prof':
        s.cpuProf = path.resolve(value() ?? '');
        break;
      case '--out':
        s.out = path.resolve(value() ?? s.out);
        break;
      case '--strict':
        s.strict = true;
        break;
      case '--no-chart':
        s.chart = false;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  // Worst case of the rounds plus setup, RSS and slack; the full run stays under 5 minutes.
  s.maxTotalSeconds = Math.max(s.maxTotalSeconds, 60 + s.rounds * (6 * s.seconds + s.loginSeconds + 20) + s.rssSeconds + 60);
  return s;
}

/** The chart's path: the results file's with .svg for its extension (`/tmp/x.json` → `/tmp/x.svg`). */
function chartPathFor(out: string): string {
  const { dir, name, ext } = path.parse(out);
  return path.join(dir, ext.toLowerCase() === '.svg' ? `${name}${ext}.svg` : `${name}.svg`);
}

// ----------------------------------------------------------------- progress

const started = Date.now();
const tty = process.stderr.isTTY === true;
let lastPhase = '';

/** One progress line on stderr: rewritten in place on a terminal, one line per phase otherwise. */
function status(phase: string, detail = ''): void {
  const elapsed = `${((Date.now() - started) / 1000).toFixed(0)}s`;
  if (tty) {
    process.stderr.write(`\r\x1b[K[bench ${elapsed}] ${phase}${detail ? ` · ${detail}` : ''}`);
  } else if (phase !== lastPhase) {
    process.stderr.write(`[bench ${elapsed}] ${phase}\n`);
  }
  lastPhase = phase;
}

function clearStatus(): void {
  if (tty) process.stderr.write('\r\x1b[K');
}

function progressFor(phase: string, seconds?: number, amount?: number): Progress {
  return ({ done, elapsedMs }) => {
    const parts = [`${fmtInt(done)} responses`];
    if (seconds) parts.unshift(`${(elapsedMs / 1000).toFixed(1)}/${seconds}s`);
    if (amount) parts.unshift(`${Math.floor((done / amount) * 100)}%`);
    status(phase, parts.join(' · '));
  };
}

// ------------------------------------------------------------ environment

function secret(): string {
  return randomBytes(48).toString('base64url');
}

function versions(): Record<string, string> {
  const names = [
    'express',
    'express-session',
    'connect-session-sequelize',
    'passport',
    'passport-local',
    'jsonwebtoken',
    'sequelize',
    'sqlite3',
    '@node-rs/argon2',
    'csrf-sync',
    'helmet',
    'pino',
    'pino-http',
    'ejs',
    'autocannon',
  ];
  const out: Record<string, string> = {};
  const app = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string; version: string };
  out[app.name] = app.version;
  for (const name of names) {
    try {
      out[name] = (JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      out[name] = 'missing';
    }
  }
  return out;
}

export interface GitInfo {
  commit: string | null;
  dirty: boolean | null;
}

function gitInfo(): GitInfo {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

export type Machine = ReturnType<typeof machine>;

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
    loadAverageAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
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

// ----------------------------------------------------------------- app setup

/** Registers a user through the real form (GET form for `_csrf`, POST it); returns the signed-in session cookie. */
async function registerUser(port: number, user: LoginUser): Promise<string> {
  const page = await request(port, 'GET', '/auth/register', { headers: { ...PROXY_HEADERS, accept: 'text/html' } });
  const cookie = sessionCookieFrom(page.headers as Record<string, unknown>);
  const csrf = csrfFrom(page.body);
  if (page.status !== 200 || !cookie || !csrf) {
    throw new Error(`GET /auth/register answered ${page.status} without a ${SESSION_COOKIE} cookie and _csrf field (is the app behind TRUST_PROXY?)`);
  }
  const res = await request(port, 'POST', '/auth/register', {
    headers: formPostHeaders(port, cookie),
    body: formBody({ _csrf: csrf, username: user.username, password: user.password, confirmPassword: user.password }),
  });
  const signedIn = sessionCookieFrom(res.headers as Record<string, unknown>);
  if (res.status !== 302 || !signedIn) throw new Error(`POST /auth/register for ${user.username} answered ${res.status}: ${res.body.slice(0, 300)}`);
  return signedIn;
}

interface AppFixture {
  apiUser: LoginUser;
  cookie: string;
  token: string;
  meBody: string;
  pool: LoginUser[];
}

async function setUpApp(app: Child, poolSize: number): Promise<AppFixture> {
  const tag = randomBytes(3).toString('hex');
  const mkUser = (i: number): LoginUser => ({ username: `bench_${tag}_${i}`, password: `bench ${randomBytes(12).toString('base64url')} pw` });
  const apiUser = mkUser(0);
  const cookie = await registerUser(app.port, apiUser);
  const pool = Array.from({ length: poolSize }, (_, i) => mkUser(i + 1));
  // A few registrations at a time: each one hashes a password.
  for (let i = 0; i < pool.length; i += 4) {
    status('setup', `registering users ${i + 1}–${Math.min(pool.length, i + 4)} of ${pool.length}`);
    await Promise.all(pool.slice(i, i + 4).map((u) => registerUser(app.port, u)));
  }
  const minted = await request(app.port, 'GET', '/auth/token', { headers: { ...PROXY_HEADERS, cookie } });
  const token = (JSON.parse(minted.body) as { token?: string }).token;
  if (minted.status !== 200 || !token) throw new Error(`GET /auth/token answered ${minted.status}: ${minted.body.slice(0, 300)}`);
  const me = await request(app.port, 'GET', '/api/me', { headers: { authorization: `Bearer ${token}` } });
  if (me.status !== 200 || !me.body.includes(`"username":"${apiUser.username}"`)) throw new Error(`GET /api/me answered ${me.status}: ${me.body.slice(0, 300)}`);
  return { apiUser, cookie, token, meBody: me.body, pool };
}

async function checkBaseline(child: Child, headers: Record<string, string>, expected: string): Promise<void> {
  const res = await request(child.port, 'GET', '/api/me', { headers });
  if (res.status !== 200 || res.body !== expected) throw new Error(`${child.name} answered ${res.status}: ${res.body.slice(0, 200)}`);
}

// ---------------------------------------------------------------------- main

async function main(): Promise<number> {
  const s = parseArgs(process.argv.slice(2));
  const serverJs = path.join(root, 'dist', 'server.js');
  if (!existsSync(serverJs)) throw new Error('dist/server.js is missing: run `npm run bench` (it builds first) or `npm run build`');

  const hardStop = setTimeout(() => {
    clearStatus();
    process.stderr.write(`bench: still running after ${s.maxTotalSeconds} s, giving up\n`);
    killAll();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    process.exit(1);
  }, s.maxTotalSeconds * 1000);
  hardStop.unref();

  const info = { machine: machine(), versions: versions(), git: gitInfo() };
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'token-bridge-bench-'));
  tempDir = tmp;
  const jwtKey = secret();
  const baseEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmp, TMPDIR: os.tmpdir() };
  const children: Child[] = [];
  const wants = (x: string) => s.only.has(x);
  const appNeeded = ['me', 'uncached', 'token', 'login', 'rss'].some(wants);

  try {
    // -- start
    let app: Child | undefined;
    let uncachedApp: Child | undefined;
    if (appNeeded) {
      status('starting the app (production, fresh SQLite file)');
      const appEnv = {
        ...baseEnv,
        NODE_ENV: 'production',
        DATABASE_URL: `sqlite:${path.join(tmp, 'bench.sqlite')}`,
        LOG_LEVEL: s.logLevel,
        JWT_SECRET_KEY: secret(),
        SESSION_SECRET: secret(),
        TRUST_PROXY: 'loopback',
      };
      const port = await freePort();
      const nodeArgs = s.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${s.cpuProf}`] : [];
      app = await startNode({ name: 'app', args: [...nodeArgs, serverJs], cwd: root, env: { ...appEnv, PORT: String(port) }, port, readyPath: '/readyz', readyTimeoutMs: 60_000 });
      children.push(app);
      if (wants('uncached')) {
        // A second instance on the same database file and keys, without the revocation cache:
        // the same token, checked against the database (two indexed lookups) on every call.
        status('starting a second app instance with REVOCATION_CACHE_TTL=0');
        const uncachedPort = await freePort();
        uncachedApp = await startNode({
          name: 'app, revocation cache off',
          args: [serverJs],
          cwd: root,
          env: { ...appEnv, PORT: String(uncachedPort), REVOCATION_CACHE_TTL: '0' },
          port: uncachedPort,
          readyPath: '/readyz',
          readyTimeoutMs: 60_000,
        });
        children.push(uncachedApp);
      }
    }
    let floor: Child | undefined;
    let ceiling: Child | undefined;
    if (wants('floor')) {
      status('starting the express floor');
      floor = await startNode({ name: 'express floor', args: ['--import', 'tsx', path.join(root, 'bench', 'baselines', 'express-floor.ts')], cwd: root, env: { ...baseEnv, NODE_ENV: 'production', PORT: '0' } });
      children.push(floor);
    }
    if (wants('ceiling')) {
      status('starting the node:http ceiling');
      ceiling = await startNode({ name: 'node:http ceiling', args: ['--import', 'tsx', path.join(root, 'bench', 'baselines', 'http-ceiling.ts')], cwd: root, env: { ...baseEnv, NODE_ENV: 'production', PORT: '0', BENCH_JWT_KEY: jwtKey } });
      children.push(ceiling);
    }

    // -- users and tokens through the real forms
    let fixture: AppFixture | undefined;
    if (app) {
      status('setup', 'registering users through the register form');
      fixture = await setUpApp(app, wants('login') ? s.stormConcurrency : 0);
    }
    const idleAfterSetup = app ? memoryOf(app.pid) : null;
    const floorBody = JSON.stringify({ id: '1', username: 'bench_floor', roles: [] });
    const ceilingHeaders = { authorization: `Bearer ${ceilingToken(jwtKey)}` };
    if (floor) await checkBaseline(floor, {}, floorBody);
    if (ceiling) await checkBaseline(ceiling, ceilingHeaders, JSON.stringify({ id: '1', username: 'bench_ceiling', roles: [] }));

    const targets: { id: TargetId; port: number; path: string; headers: Record<string, string>; expect: string | ((b: string) => boolean) }[] = [];
    if (floor) targets.push({ id: 'floor', port: floor.port, path: '/api/me', headers: {}, expect: floorBody });
    if (ceiling) targets.push({ id: 'ceiling', port: ceiling.port, path: '/api/me', headers: ceilingHeaders, expect: JSON.stringify({ id: '1', username: 'bench_ceiling', roles: [] }) });
    if (app && fixture && wants('me')) targets.push({ id: 'me', port: app.port, path: '/api/me', headers: { authorization: `Bearer ${fixture.token}` }, expect: fixture.meBody });
    if (uncachedApp && fixture) targets.push({ id: 'uncached', port: uncachedApp.port, path: '/api/me', headers: { authorization: `Bearer ${fixture.token}` }, expect: fixture.meBody });
    if (app && fixture && wants('token')) {
      targets.push({ id: 'token', port: app.port, path: '/auth/token', headers: { ...PROXY_HEADERS, cookie: fixture.cookie }, expect: (b: string) => b.startsWith('{"token":"ey') && b.includes('"token_type":"Bearer"') });
    }

    // -- warm-up (not recorded): JIT, connection pools, SQLite page cache
    for (const t of targets) {
      const phase = `warm-up ${TARGET_LABELS[t.id]}`;
      await throughput({ ...t, connections: s.connections, seconds: s.warmupSeconds, progress: progressFor(phase, s.warmupSeconds) });
    }

    // -- alternating rounds
    const rounds: Round[] = [];
    for (let r = 0; r < s.rounds; r += 1) {
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      const round: Round = { round: r + 1, order: order.map((t) => t.id), throughput: {} };
      for (const t of order) {
        const phase = `round ${r + 1}/${s.rounds} · ${TARGET_LABELS[t.id]}`;
        round.throughput[t.id] = await throughput({ ...t, connections: s.connections, seconds: s.seconds, progress: progressFor(phase, s.seconds) });
      }
      if (app && fixture && wants('login')) {
        status(`round ${r + 1}/${s.rounds} · /healthz probe, app idle`);
        round.healthzIdle = await probeLatency({ port: app.port, path: '/healthz', rate: s.probeRate, seconds: s.mode === 'quick' ? 1 : 2, expect: '{"status":"ok"}' });
        const phase = `round ${r + 1}/${s.rounds} · sign-in storm (${s.stormConcurrency} browsers) + /healthz probe`;
        const storm = await loginStorm({
          port: app.port,
          users: fixture.pool,
          concurrency: s.stormConcurrency,
          seconds: s.loginSeconds,
          probeRate: s.probeRate,
          progress: progressFor(phase, s.loginSeconds),
        });
        round.login = storm.login;
        round.healthz = storm.healthz;
      }
      rounds.push(round);
    }

    // -- RSS around a fixed number of requests
    let memory: MemoryReport | undefined;
    if (app && fixture && wants('rss')) {
      const mix = (amount: number, limitMs: number, progress?: Progress) =>
        fixedAmount({
          port: app!.port,
          connections: s.connections,
          amount,
          hardLimitMs: limitMs,
          requests: [
            { path: '/api/me', headers: { authorization: `Bearer ${fixture!.token}` }, expect: (b) => b === fixture!.meBody },
            { path: '/auth/token', headers: { ...PROXY_HEADERS, cookie: fixture!.cookie }, expect: (b) => b.includes('"token_type":"Bearer"') },
          ],
          progress,
        });
      // The heap sizes itself to a new load within seconds: a tenth of the amount first, not measured.
      const warmup = Math.round(s.rssRequests / RSS_WARMUP_FRACTION);
      await mix(warmup, s.rssSeconds * 1000, progressFor(`RSS: warm-up, ${fmtInt(warmup)} requests`, undefined, warmup));
      await sleep(500);
      const before = memoryOf(app.pid);
      // Every 100 ms: the young generation makes RSS swing by tens of MB between
      // scavenges, so single readings say more about the GC's phase than about a leak.
      const t0 = performance.now();
      const series: RssSample[] = [];
      const sampler = setInterval(() => {
        const m = memoryOf(app!.pid);
        if (m) series.push({ ms: Math.round(performance.now() - t0), rss: m.rss });
      }, RSS_SAMPLE_MS);
      const phase = `RSS: ${fmtInt(s.rssRequests)} requests`;
      const run: RunStats = await mix(s.rssRequests, s.rssSeconds * 1000, progressFor(phase, undefined, s.rssRequests));
      clearInterval(sampler);
      const after = memoryOf(app.pid);
      memory = memoryReport({
        requests: run.requests,
        planned: s.rssRequests,
        warmup,
        mix: 'alternating GET /api/me and GET /auth/token',
        idleAfterSetup: idleAfterSetup?.rss ?? null,
        before: before?.rss ?? null,
        after: after?.rss ?? null,
        peak: after?.hwm ?? null,
        series,
        run,
      });
    }

    // -- stop everything; the app must shut down cleanly on SIGTERM
    status('stopping');
    const exits: Record<string, string> = {};
    for (const child of children.splice(0)) {
      const { code, signal } = await child.stop();
      exits[child.name] = signal ?? String(code);
    }
    clearStatus();

    const medians = computeMedians(rounds);
    const errors = countErrors(rounds, memory);
    const goals = evaluateGoals(medians, memory, errors.app);
    const finishedAt = new Date();
    const results = {
      schema: 1,
      startedAt: new Date(started).toISOString(),
      finishedAt: finishedAt.toISOString(),
      seconds: Math.round((finishedAt.getTime() - started) / 1000),
      settings: { ...s, only: [...s.only] },
      ...info,
      loadAverageAtEnd: os.loadavg().map((x) => Number(x.toFixed(2))),
      appExit: exits,
      medians,
      goals,
      errors,
      memory,
      rounds,
    };
    writeFileSync(s.out, `${JSON.stringify(results, null, 2)}\n`);
    const chart = s.chart ? chartPathFor(s.out) : null;
    if (chart) writeFileSync(chart, renderRatioChart(results));

    const m = info.machine;
    process.stdout.write(
      `${renderReport({
        title: `token-bridge benchmark · ${s.mode} · ${s.rounds} rounds × ${s.seconds} s · ${results.seconds} s in all`,
        subtitle: [
          `node ${m.node} · ${m.os} · ${m.cpus} × ${m.cpuModel} · load ${m.loadAverageAtStart.join(' ')} → ${results.loadAverageAtEnd.join(' ')}`,
          `app ${info.git.commit?.slice(0, 10) ?? '?'}${info.git.dirty ? ' (uncommitted changes)' : ''} · NODE_ENV=production LOG_LEVEL=${s.logLevel} · SQLite file · all traffic on 127.0.0.1`,
        ],
        rounds,
        medians,
        memory,
        goals,
        connections: s.connections,
        stormConcurrency: s.stormConcurrency,
        probeRate: s.probeRate,
      })}\n\nresults: ${path.relative(process.cwd(), s.out) || s.out}${chart ? ` · chart: ${path.relative(process.cwd(), chart) || chart}` : ''}${s.cpuProf ? ` · CPU profiles: ${s.cpuProf}` : ''}\n`,
    );
    if (exits.app !== undefined && exits.app !== '0') process.stderr.write(`bench: the app did not exit cleanly on SIGTERM (${exits.app})\n${app?.output().slice(-2000) ?? ''}\n`);
    const bad = errors.app.errors + errors.app.non2xx + errors.app.mismatches + errors.baselines.errors + errors.baselines.non2xx + errors.baselines.mismatches;
    if (bad > 0) {
      process.stderr.write(`bench: ${bad} failed requests: the figures above are not trustworthy\n`);
      return 1;
    }
    if (s.strict && goals.some((g) => g.pass === false)) return 1;
    return 0;
  } finally {
    clearTimeout(hardStop);
    for (const child of children) await child.stop(3_000).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    clearStatus();
    process.stderr.write(`bench: ${signal}, stopping\n`);
    killAll();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    clearStatus();
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
