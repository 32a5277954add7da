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
import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { projectRoot as root } from '../paths.js';
import { listeningPort, spawnNode, whenReady, type NodeProcess } from '../test/helpers/process.js';
import { callApi, RemoteBrowser } from '../test/helpers/remote-browser.js';
import { renderRatioChart } from './chart.js';
import { computeMedians, countErrors, evaluateGoals, fmtInt, memoryReport, renderReport, TARGET_LABELS, type MemoryReport, type Round, type RssSample, type TargetId } from './report.js';
import { browserHeaders, fixedAmount, loginStorm, LOOPBACK, probeLatency, PROXY_HEADERS, throughput, type LoginUser } from './scenarios.js';

// ------------------------------------------------------------------ options

const SCENARIOS = ['floor', 'ceiling', 'me', 'uncached', 'token', 'es256', 'rs256', 'login', 'rss'];
/** Not in the default run: asked for by name with --only. */
const OPT_IN = ['uncached', 'rs256'];

const USAGE = `usage: npm run bench [-- options]
  --quick          short run (< 1 minute): 3 rounds of 1 s, 10,000 requests (at most 8 s) for RSS
  --rounds N       alternating rounds (default 5, quick 3)
  --duration S     seconds per throughput run (default 6, quick 1)
  --rss-seconds S  time limit of the RSS run (default 60, quick 8)
  --only LIST      comma list of ${SCENARIOS.join(',')} (default: all but ${OPT_IN.join(' and ')};
                   uncached = /api/me on a second instance with REVOCATION_CACHE_TTL=0;
                   es256, rs256 = /api/me and /auth/token on an app with that JWT_ALGORITHM)
  --cpu-prof DIR   run the app under node --cpu-prof, profiles written to DIR (open them in Chrome DevTools)
  --out FILE       results file (default bench/results.json); the chart goes next to it as .svg
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
      'rss-seconds': { type: 'string' },
      only: { type: 'string' },
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
  const quick = values.quick === true;
  const s = {
    mode: quick ? 'quick' : 'full',
    rounds: Math.round(num('--rounds', values.rounds, quick ? 3 : 5, 1, 20)),
    /** Seconds of each throughput run. */
    seconds: num('--duration', values.duration, quick ? 1 : 6, 0.5, 60),
    warmupSeconds: quick ? 1 : 2,
    connections: 16,
    loginSeconds: quick ? 3 : 6,
    stormConcurrency: 16,
    probeRate: 50,
    rssRequests: quick ? 10_000 : 100_000,
    rssSeconds: num('--rss-seconds', values['rss-seconds'], quick ? 8 : 60, 1, 600),
    logLevel: 'warn',
    only,
    out: path.resolve(values.out ?? path.join(root, 'bench', 'results.json')),
    cpuProf: values['cpu-prof'] === undefined ? null : path.resolve(values['cpu-prof']),
    strict: values.strict === true,
    chart: values['no-chart'] !== true,
    /** Hard limit of the whole run, after which everything is killed. */
    maxTotalSeconds: 0,
  };
  // Worst case of the rounds (all nine throughput targets and slack) plus setup, RSS and slack; the full run stays under 5 minutes.
  s.maxTotalSeconds = Math.max(quick ? 120 : 480, 60 + s.rounds * (10 * s.seconds + s.loginSeconds + 20) + s.rssSeconds + 60);
  return s;
}

// ------------------------------------------------------------ environment

const started = Date.now();

/** One progress line per phase on stderr. */
function status(phase: string): void {
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] ${phase}\n`);
}

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

/** VmRSS and VmHWM (bytes) of a process from /proc/<pid>/status (Linux), or null elsewhere. */
function memoryOf(pid: number | undefined): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return Number.isFinite(kb('VmRSS')) ? { rss: kb('VmRSS'), hwm: kb('VmHWM') } : null;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system, all threads) a process has used, from /proc/<pid>/stat (Linux), or null elsewhere. */
function cpuSecondsOf(pid: number | undefined): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (in parentheses, may hold spaces): utime and stime are the 12th and 13th,
    // in clock ticks of USER_HZ, which is 100 on the Linux platforms Node runs on.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
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

// ------------------------------------------------------------ child processes

/** Every child of this run: killed on any way out, including the hard time limit and Ctrl-C. */
const children: { name: string; proc: NodeProcess }[] = [];
let tempDir: string | undefined;
process.on('exit', () => {
  for (const { proc } of children) proc.child.kill('SIGKILL');
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench: ${signal}, stopping\n`);
    process.exit(130);
  });
}

/** A port that was free a moment ago on 127.0.0.1 (the app is given it: at LOG_LEVEL=warn it does not log the one it chose). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().on('error', reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts the built app on a free port; resolves once /readyz answers 200. */
async function startApp(name: string, nodeArgs: string[], env: Record<string, string>): Promise<{ proc: NodeProcess; port: number }> {
  const port = await freePort();
  const proc = spawnNode([...nodeArgs, path.join(root, 'dist', 'server.js')], { ...env, PORT: String(port) });
  children.push({ name, proc });
  await whenReady(
    proc,
    async () => {
      const res = await fetch(`http://${LOOPBACK}:${port}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      await res?.arrayBuffer();
      return res?.ok || undefined;
    },
    60_000,
  );
  return { proc, port };
}

/** Starts a baseline (it listens on a port of its choosing and logs it). */
async function startBaseline(name: string, file: string, env: Record<string, string> = {}): Promise<{ proc: NodeProcess; port: number }> {
  status(`starting the ${name}`);
  const proc = spawnNode(['--import', 'tsx', path.join(root, 'bench', 'baselines', file)], { NODE_ENV: 'production', PORT: '0', ...env });
  children.push({ name, proc });
  return { proc, port: await whenReady(proc, () => listeningPort(proc.stdout()), 30_000) };
}

// ----------------------------------------------------------------- app setup

/**
 * Registers users through the real form (a fresh browser each: GET the form
 * for `_csrf`, POST it), mints a token as the first one and checks /api/me.
 */
async function setUpApp(port: number, poolSize: number) {
  const base = `http://${LOOPBACK}:${port}`;
  const tag = randomBytes(3).toString('hex');
  const user = (i: number): LoginUser => ({ username: `bench_${tag}_${i}`, password: `bench ${randomBytes(12).toString('base64url')} pw` });
  const register = async (u: LoginUser) => {
    const browser = new RemoteBrowser(browserHeaders(port));
    const res = await browser.register(base, u.username, u.password);
    if (res.status !== 302) throw new Error(`POST /auth/register for ${u.username} answered ${res.status} (is the app behind TRUST_PROXY?): ${res.text.slice(0, 300)}`);
    return browser;
  };
  const first = user(0);
  const browser = await register(first);
  const pool = Array.from({ length: poolSize }, (_, i) => user(i + 1));
  // A few registrations at a time: each one hashes a password.
  for (let i = 0; i < pool.length; i += 4) await Promise.all(pool.slice(i, i + 4).map(register));
  const token = await browser.token(base);
  const me = await callApi(base, token);
  if (me.status !== 200 || !me.text.includes(`"username":"${first.username}"`)) throw new Error(`GET /api/me answered ${me.status}: ${me.text.slice(0, 300)}`);
  return { cookie: browser.cookieHeader(), token, meBody: me.text, pool };
}

// ---------------------------------------------------------------------- main

/** The targets of the apps signing with ES256 and RS256 (each app has its own database and key set). */
const ALG_TARGETS = { ES256: { me: 'meEs256', token: 'tokenEs256' }, RS256: { me: 'meRs256', token: 'tokenRs256' } } as const;

async function main(): Promise<number> {
  const s = settingsFrom(process.argv.slice(2));
  if (!existsSync(path.join(root, 'dist', 'server.js'))) throw new Error('dist/server.js is missing: run `npm run bench` (it builds first) or `npm run build`');
  setTimeout(() => {
    process.stderr.write(`bench: still running after ${s.maxTotalSeconds} s, giving up\n`);
    process.exit(1);
  }, s.maxTotalSeconds * 1000).unref();

  const info = { machine: machine(), versions: versions(), git: gitInfo() };
  const tmp = (tempDir = mkdtempSync(path.join(os.tmpdir(), 'token-bridge-bench-')));
  const secret = () => randomBytes(48).toString('base64url');
  const jwtKey = secret();
  const wants = (x: string) => s.only.includes(x);

  let app: { proc: NodeProcess; port: number } | undefined;
  let uncached: typeof app;
  const signers: { alg: 'ES256' | 'RS256'; proc: NodeProcess; port: number }[] = [];
  if (['me', 'uncached', 'token', 'es256', 'rs256', 'login', 'rss'].some(wants)) {
    status('starting the app (production, fresh SQLite file)');
    const appEnv = {
      NODE_ENV: 'production',
      // The app's .env, created on first start, goes to the temp folder, not the project's.
      ENV_FILE: path.join(tmp, '.env'),
      DATABASE_URL: `sqlite:${path.join(tmp, 'bench.sqlite')}`,
      LOG_LEVEL: s.logLevel,
      JWT_SECRET_KEY: secret(),
      SESSION_SECRET: secret(),
      TRUST_PROXY: 'loopback',
    };
    // The HS256 app's profile goes to the --cpu-prof folder, the ES256 and RS256 apps' to its es256/ and rs256/.
    const profiled = (folder: string) => (s.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(s.cpuProf, folder)}`] : []);
    app = await startApp('app', profiled(''), appEnv);
    if (wants('uncached')) {
      // A second instance on the same database file and keys, without the revocation cache:
      // the same token, checked against the database (two indexed lookups) on every call.
      status('starting a second app instance with REVOCATION_CACHE_TTL=0');
      uncached = await startApp('app, revocation cache off', [], { ...appEnv, REVOCATION_CACHE_TTL: '0' });
    }
    for (const alg of ['ES256', 'RS256'] as const) {
      if (!wants(alg.toLowerCase())) continue;
      // Its own database, where it creates its key set on first start; set up through the forms like the HS256 app.
      status(`starting an app with JWT_ALGORITHM=${alg} (its own SQLite file)`);
      const env = { ...appEnv, JWT_ALGORITHM: alg, DATABASE_URL: `sqlite:${path.join(tmp, `bench-${alg.toLowerCase()}.sqlite`)}` };
      signers.push({ alg, ...(await startApp(`app, ${alg}`, profiled(alg.toLowerCase()), env)) });
    }
  }
  const floor = wants('floor') ? await startBaseline('express floor', 'express-floor.ts') : undefined;
  const ceiling = wants('ceiling') ? await startBaseline('node:http ceiling', 'http-ceiling.ts', { BENCH_JWT_KEY: jwtKey }) : undefined;

  // -- users and tokens through the real forms; the baselines answer what they should
  if (app) status('setup: registering users through the register form');
  const fixture = app ? await setUpApp(app.port, wants('login') ? s.stormConcurrency : 0) : undefined;
  const idleAfterSetup = app ? memoryOf(app.proc.child.pid) : null;
  const ceilingJwt = ceilingToken(jwtKey);
  const floorBody = JSON.stringify({ id: '1', username: 'bench_floor', roles: [] });
  const ceilingBody = JSON.stringify({ id: '1', username: 'bench_ceiling', roles: [] });
  for (const [base, expected] of [[floor, floorBody], [ceiling, ceilingBody]] as const) {
    if (base === undefined) continue;
    const res = await callApi(`http://${LOOPBACK}:${base.port}`, ceilingJwt);
    if (res.status !== 200 || res.text !== expected) throw new Error(`the baseline on port ${base.port} answered ${res.status}: ${res.text.slice(0, 200)}`);
  }

  // The app instances' routes: which target each one's /api/me and /auth/token are, and its user's token and cookie.
  type Fixture = Awaited<ReturnType<typeof setUpApp>>;
  const instances: { proc: NodeProcess; port: number; fixture: Fixture; me?: TargetId; token?: TargetId }[] = [];
  if (app && fixture) instances.push({ ...app, fixture, me: wants('me') ? 'me' : undefined, token: wants('token') ? 'token' : undefined });
  if (uncached && fixture) instances.push({ ...uncached, fixture, me: 'uncached' });
  for (const signer of signers) {
    const ids = ALG_TARGETS[signer.alg];
    instances.push({ ...signer, fixture: await setUpApp(signer.port, 0), ...ids });
  }

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  type Target = { id: TargetId; proc: NodeProcess; port: number; path: string; headers: Record<string, string>; expect: string | ((b: string) => boolean) };
  const targets: Target[] = [];
  if (floor) targets.push({ id: 'floor', ...floor, path: '/api/me', headers: {}, expect: floorBody });
  if (ceiling) targets.push({ id: 'ceiling', ...ceiling, path: '/api/me', headers: bearer(ceilingJwt), expect: ceilingBody });
  const tokenBody = (b: string) => b.startsWith('{"token":"ey') && b.includes('"token_type":"Bearer"');
  // A route's targets next to each other (HS256, then ES256, RS256), so that a ratio to HS256 compares runs close in time.
  for (const { me, proc, port, fixture: f } of instances) if (me) targets.push({ id: me, proc, port, path: '/api/me', headers: bearer(f.token), expect: f.meBody });
  for (const { token, proc, port, fixture: f } of instances) if (token) targets.push({ id: token, proc, port, path: '/auth/token', headers: { ...PROXY_HEADERS, cookie: f.cookie }, expect: tokenBody });

  // -- warm-up (not recorded): JIT, connection pools, SQLite page cache
  for (const t of targets) {
    status(`warm-up ${TARGET_LABELS[t.id]}`);
    await throughput({ ...t, connections: s.connections, seconds: s.warmupSeconds });
  }

  // -- alternating rounds, the order of the targets rotated every round
  const rounds: Round[] = [];
  for (let r = 0; r < s.rounds; r += 1) {
    const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
    const round: Round = { round: r + 1, order: order.map((t) => t.id), throughput: {} };
    for (const t of order) {
      status(`round ${r + 1}/${s.rounds} · ${TARGET_LABELS[t.id]}`);
      const cpuBefore = cpuSecondsOf(t.proc.child.pid);
      const run = await throughput({ ...t, connections: s.connections, seconds: s.seconds });
      const cpuAfter = cpuSecondsOf(t.proc.child.pid);
      const cpuUs = cpuBefore !== null && cpuAfter !== null && run.requests > 0 ? ((cpuAfter - cpuBefore) * 1e6) / run.requests : null;
      round.throughput[t.id] = { ...run, cpuUs };
    }
    if (app && fixture && wants('login')) {
      status(`round ${r + 1}/${s.rounds} · /healthz probe, app idle`);
      round.healthzIdle = await probeLatency({ port: app.port, path: '/healthz', rate: s.probeRate, seconds: s.mode === 'quick' ? 1 : 2, expect: '{"status":"ok"}' });
      status(`round ${r + 1}/${s.rounds} · sign-in storm (${s.stormConcurrency} browsers) + /healthz probe`);
      const storm = await loginStorm({ port: app.port, users: fixture.pool, concurrency: s.stormConcurrency, seconds: s.loginSeconds, probeRate: s.probeRate });
      round.login = storm.login;
      round.healthz = storm.healthz;
    }
    rounds.push(round);
  }

  // -- RSS around a fixed number of requests
  let memory: MemoryReport | undefined;
  if (app && fixture && wants('rss')) {
    const pid = app.proc.child.pid;
    const mix = (amount: number) =>
      fixedAmount({
        port: app.port,
        connections: s.connections,
        amount,
        limitMs: s.rssSeconds * 1000,
        requests: [
          { path: '/api/me', headers: bearer(fixture.token), expect: (b) => b === fixture.meBody },
          { path: '/auth/token', headers: { ...PROXY_HEADERS, cookie: fixture.cookie }, expect: (b) => b.includes('"token_type":"Bearer"') },
        ],
      });
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
    const run = await mix(s.rssRequests);
    clearInterval(sampler);
    const after = memoryOf(pid);
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
  for (const { name, proc } of children) {
    const { code, signal } = await proc.stop(12_000);
    exits[name] = signal ?? String(code);
  }

  const medians = computeMedians(rounds);
  const errors = countErrors(rounds, memory);
  const goals = evaluateGoals(medians, memory, errors.app);
  const finishedAt = new Date();
  const results = {
    schema: 1,
    startedAt: new Date(started).toISOString(),
    finishedAt: finishedAt.toISOString(),
    seconds: Math.round((finishedAt.getTime() - started) / 1000),
    settings: s,
    ...info,
    loadAverageAtEnd: loadAverage(),
    appExit: exits,
    medians,
    goals,
    errors,
    memory,
    rounds,
  };
  writeFileSync(s.out, `${JSON.stringify(results, null, 2)}\n`);
  // The chart's path: the results file's with .svg for its extension (`/tmp/x.json` → `/tmp/x.svg`).
  const { dir, name, ext } = path.parse(s.out);
  const chart = s.chart ? path.join(dir, ext.toLowerCase() === '.svg' ? `${name}${ext}.svg` : `${name}.svg`) : null;
  if (chart) writeFileSync(chart, renderRatioChart(results));

  const m = info.machine;
  const shown = (file: string) => path.relative(process.cwd(), file) || file;
  const report = renderReport({
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
  });
  process.stdout.write(`${report}\n\nresults: ${shown(s.out)}${chart ? ` · chart: ${shown(chart)}` : ''}${s.cpuProf ? ` · CPU profiles: ${s.cpuProf}` : ''}\n`);
  if (exits.app !== undefined && exits.app !== '0') process.stderr.write(`bench: the app did not exit cleanly on SIGTERM (${exits.app})\n${app?.proc.stderr().slice(-2000) ?? ''}\n`);
  const bad = [errors.app, errors.baselines].reduce((n, e) => n + e.errors + e.non2xx + e.mismatches, 0);
  if (bad > 0) {
    process.stderr.write(`bench: ${bad} failed requests: the figures above are not trustworthy\n`);
    return 1;
  }
  return s.strict && goals.some((g) => g.pass === false) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? `\n${USAGE}` : '';
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}${usage}\n`);
    process.exit(1);
  },
);
