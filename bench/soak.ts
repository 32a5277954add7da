/**
 * `npm run bench -- --soak MINUTES`: one app process under steady mixed
 * traffic for a long time. Browsers sign in through the real form, mint
 * tokens, call the API with them, sign out (a revocation) and check that the
 * revoked token is refused, at a fixed overall rate. Memory and event-loop lag
 * come from inside the server (bench/soak-probe.mjs, preloaded: the app's code
 * is unchanged), `/healthz` latency from outside; errors and 5xx are counted
 * per time bucket.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type autocannon from 'autocannon';
import { fmtInt, fmtMb, fmtMs, lowestBetween, table, type Goal } from './report.js';
import { browserHeaders, cannon, headerIn, latencyOf, probeLatency, PROXY_HEADERS, sessionCookieIn, summarize, type LatencySummary, type LoginUser, type RunStats } from './scenarios.js';
import { setUpApp, startApp, status, stopServer } from './servers.js';

/** Per sign-in: this many tokens minted, each used for this many API calls. */
const MINTS = 2;
const CALLS_PER_MINT = 10;
const CONNECTIONS = 8;
const POOL = 16;
const HEALTHZ_RATE = 10;

/** What the soak counts, per bucket and in all. */
export interface SoakCounts {
  /** Answers, of the load and of the /healthz probe. */
  requests: number;
  /** Socket errors and timeouts. */
  errors: number;
  /** Answers with a 5xx status. */
  serverErrors: number;
  /** Answers with another status than the step expects (5xx included). */
  unexpected: number;
  /** The expected status with the wrong content (no cookie, no token, wrong user, a revoked token accepted). */
  mismatches: number;
  signIns: number;
  mints: number;
  apiCalls: number;
  signOuts: number;
  /** Revoked tokens refused right after the sign-out (401). */
  refused: number;
}

export interface SoakBucket extends SoakCounts {
  /** Seconds since the load started. */
  from: number;
  to: number;
  /** Lowest RSS and heapUsed read inside the server in the bucket (bytes), null when no reading. */
  rssTrough: number | null;
  heapTrough: number | null;
  /** The V8 heap's size (used or not) at the bucket's last reading, and the lowest `external` (Buffers): what else RSS holds. */
  heapTotal?: number | null;
  externalTrough?: number | null;
  /** Event-loop lag (ms, 1 ms bins) in the bucket. */
  lagP99: number | null;
  lagMax: number | null;
  /** /healthz answer time (ms) in the bucket. */
  healthzP99: number | null;
}

export interface Soak {
  minutes: number;
  rate: number;
  connections: number;
  bucketSeconds: number;
  /** The first seconds, left out of the trough comparison (the heap sizes itself to the load). */
  warmupSeconds: number;
  flow: string;
  buckets: SoakBucket[];
  totals: SoakCounts;
  memory: { rssFirst: number | null; rssLast: number | null; rssGrowth: number | null; heapFirst: number | null; heapLast: number | null; heapGrowth: number | null; rssPeak: number | null };
  lag: { p50: number; p99: number; max: number; samples: number };
  healthz: LatencySummary;
  load: RunStats;
  appExit: string;
}

/** One line of bench/soak-probe.mjs. */
interface ProbeLine {
  t: number;
  rss: number;
  heap: number;
  rssMax: number;
  heapTotal: number;
  external?: number;
  lag: Record<string, number>;
}

const zero = (): SoakCounts => ({ requests: 0, errors: 0, serverErrors: 0, unexpected: 0, mismatches: 0, signIns: 0, mints: 0, apiCalls: 0, signOuts: 0, refused: 0 });

/** Nearest-rank percentile of 1 ms lag bins merged from probe lines; null when there are none. */
function lagPercentile(lines: readonly ProbeLine[], p: number): number | null {
  const bins = new Map<number, number>();
  for (const line of lines) for (const [ms, n] of Object.entries(line.lag)) bins.set(Number(ms), (bins.get(Number(ms)) ?? 0) + n);
  const sorted = [...bins].sort((a, b) => a[0] - b[0]);
  const total = sorted.reduce((n, [, c]) => n + c, 0);
  if (total === 0) return null;
  let seen = 0;
  for (const [ms, n] of sorted) {
    seen += n;
    if (seen >= Math.ceil((p / 100) * total)) return ms;
  }
  return sorted.at(-1)![0];
}

interface FlowContext {
  cookie?: string;
  csrf?: string;
  user?: LoginUser;
  token?: string;
}

/** One step of the flow: the status it must answer, what it takes from the answer (false: wrong content), what it counts. */
interface Step {
  method: 'GET' | 'POST';
  path: string;
  expect: number;
  /** The request's headers and body from the context, or null when the context lacks what it needs (the flow starts over). */
  build: (ctx: FlowContext) => { headers: Record<string, string>; body?: string } | null;
  check?: (ctx: FlowContext, body: string, headers: unknown) => boolean;
  count?: keyof SoakCounts;
}

const CSRF = /name="_csrf" value="([^"]+)"/;

/**
 * One browser's loop: sign in through the form, MINTS × (mint a token, call
 * /api/me CALLS_PER_MINT times with it), open the home page for its form
 * token, sign out, and call /api/me once more with the revoked token (401).
 */
function flow(port: number, users: readonly LoginUser[]): Step[] {
  let next = 0;
  const html = { ...PROXY_HEADERS, accept: 'text/html' };
  const form = (ctx: FlowContext, fields: Record<string, string>) => ({
    headers: { ...browserHeaders(port), 'content-type': 'application/x-www-form-urlencoded', cookie: ctx.cookie! },
    body: new URLSearchParams({ _csrf: ctx.csrf!, ...fields }).toString(),
  });
  const api: Step = {
    method: 'GET',
    path: '/api/me',
    expect: 200,
    build: (ctx) => (ctx.token ? { headers: { authorization: `Bearer ${ctx.token}` } } : null),
    check: (ctx, body) => body.includes(`"username":"${ctx.user?.username}"`),
    count: 'apiCalls',
  };
  const mint: Step = {
    method: 'GET',
    path: '/auth/token',
    expect: 200,
    build: (ctx) => (ctx.cookie && ctx.user ? { headers: { ...PROXY_HEADERS, cookie: ctx.cookie } } : null),
    check: (ctx, body) => (ctx.token = /"token":"([^"]+)"/.exec(body)?.[1]) !== undefined,
    count: 'mints',
  };
  return [
    {
      method: 'GET',
      path: '/auth/login',
      expect: 200,
      build: () => ({ headers: html }),
      check: (ctx, body, headers) => {
        ctx.cookie = sessionCookieIn(headers);
        ctx.csrf = CSRF.exec(body)?.[1];
        ctx.user = users[next++ % users.length];
        return ctx.cookie !== undefined && ctx.csrf !== undefined;
      },
    },
    {
      method: 'POST',
      path: '/auth/login',
      expect: 302,
      build: (ctx) => (ctx.cookie && ctx.csrf && ctx.user ? form(ctx, { username: ctx.user.username, password: ctx.user.password }) : null),
      check: (ctx, _body, headers) => {
        const renewed = sessionCookieIn(headers);
        const ok = headerIn(headers, 'location') === '/' && renewed !== undefined && renewed !== ctx.cookie;
        ctx.cookie = ok ? renewed : undefined;
        return ok;
      },
      count: 'signIns',
    },
    ...Array.from({ length: MINTS }, () => [mint, ...Array.from({ length: CALLS_PER_MINT }, () => api)]).flat(),
    {
      method: 'GET',
      path: '/',
      expect: 200,
      build: (ctx) => (ctx.cookie ? { headers: { ...html, cookie: ctx.cookie } } : null),
      check: (ctx, body) => (ctx.csrf = CSRF.exec(body)?.[1]) !== undefined,
    },
    {
      method: 'POST',
      path: '/auth/logout',
      expect: 302,
      build: (ctx) => (ctx.cookie && ctx.csrf ? form(ctx, {}) : null),
      count: 'signOuts',
    },
    // Refused at once on the instance that revoked it; a 200 here (an unexpected status) is a revoked token accepted.
    { ...api, expect: 401, check: undefined, count: 'refused' },
  ];
}

export interface SoakSettings {
  soakMinutes: number | null;
  soakRate: number;
}

/** The soak against one new app on a fresh SQLite file; `nodeArgs` go before the preload (e.g. --cpu-prof). */
export async function runSoak(o: { s: SoakSettings; tmp: string; appEnv: Record<string, string>; exits: Record<string, string> }, nodeArgs: string[]): Promise<Soak> {
  const minutes = o.s.soakMinutes!;
  const seconds = Math.round(minutes * 60);
  const bucketSeconds = Math.max(5, Math.round(minutes));
  const warmupSeconds = Math.round(seconds / 10);
  const preload = pathToFileURL(path.join(import.meta.dirname, 'soak-probe.mjs')).href;
  status(`soak: starting the app with bench/soak-probe.mjs preloaded, registering ${POOL} users through the form`);
  const app = await startApp('soak app', [...nodeArgs, '--import', preload], { ...o.appEnv, DATABASE_URL: `sqlite:${path.join(o.tmp, 'soak.sqlite')}` });
  let exit = '?';
  try {
    const { pool } = await setUpApp(app.port, POOL);
    const steps = flow(app.port, pool);
    const buckets = Array.from({ length: Math.ceil(seconds / bucketSeconds) }, zero);
    const healthzTimes: number[][] = buckets.map(() => []);
    const t0 = Date.now();
    const bucket = () => buckets[Math.min(buckets.length - 1, Math.floor((Date.now() - t0) / 1000 / bucketSeconds))]!;
    const requests = steps.map((step) => ({
      method: step.method,
      path: step.path,
      setupRequest: (req: autocannon.Request, context: object) => {
        const built = step.build(context as FlowContext);
        // Null makes autocannon start the flow over (a step before it failed).
        return (built ? { ...req, ...built } : null) as autocannon.Request;
      },
      onResponse: (code: number, body: string, context: object, headers: unknown) => {
        const c = bucket();
        if (code !== step.expect) c.unexpected += 1;
        else if (step.check && !step.check(context as FlowContext, body, headers)) c.mismatches += 1;
        else if (step.count) c[step.count] += 1;
      },
    }));
    status(`soak: ${minutes} min at ${fmtInt(o.s.soakRate)} req/s (${CONNECTIONS} browsers), /healthz probed at ${HEALTHZ_RATE} req/s`);
    const onStart = (instance: autocannon.Instance) => {
      instance.on('response', (_client: unknown, code: number) => {
        const c = bucket();
        c.requests += 1;
        if (code >= 500) c.serverErrors += 1;
      });
      instance.on('reqError', () => (bucket().errors += 1));
    };
    const progress = setInterval(() => status(`soak: ${Math.round((Date.now() - t0) / 1000)} of ${seconds} s`), 60_000);
    const [result, probe] = await Promise.all([
      cannon({ url: `http://127.0.0.1:${app.port}`, connections: CONNECTIONS, overallRate: o.s.soakRate, duration: seconds, requests }, (seconds + 30) * 1000, onStart),
      probeLatency({
        port: app.port,
        path: '/healthz',
        rate: HEALTHZ_RATE,
        seconds,
        expect: '{"status":"ok"}',
        onSample: (ms) => healthzTimes[Math.min(buckets.length - 1, Math.floor((Date.now() - t0) / 1000 / bucketSeconds))]!.push(ms),
      }),
    ]).finally(() => clearInterval(progress));
    exit = await stopServer(app);

    const lines = app.proc
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('bench-soak '))
      .map((l) => JSON.parse(l.slice('bench-soak '.length)) as ProbeLine)
      .filter((l) => l.t >= t0 && l.t <= t0 + seconds * 1000 + 1000)
      .map((l) => ({ ...l, ms: l.t - t0 }));
    const within = (from: number, to: number) => lines.filter((l) => l.ms > from * 1000 && l.ms <= to * 1000);
    const out: SoakBucket[] = buckets.map((c, i) => {
      const from = i * bucketSeconds;
      const to = Math.min(seconds, from + bucketSeconds);
      const mine = within(from, to);
      const trough = (pick: (l: ProbeLine) => number) => (mine.length ? Math.min(...mine.map(pick)) : null);
      const healthz = healthzTimes[i]!.length ? latencyOf(healthzTimes[i]!) : null;
      return {
        from,
        to,
        ...c,
        rssTrough: trough((l) => l.rss),
        heapTrough: trough((l) => l.heap),
        heapTotal: mine.at(-1)?.heapTotal ?? null,
        externalTrough: trough((l) => l.external ?? NaN),
        lagP99: lagPercentile(mine, 99), lagMax: lagPercentile(mine, 100), healthzP99: healthz?.p99 ?? null };
    });
    const totals = zero();
    for (const c of out) for (const k of Object.keys(totals) as (keyof SoakCounts)[]) totals[k] += c[k];
    totals.requests += probe.requests;
    totals.errors += probe.errors + probe.timeouts;
    totals.unexpected += probe.non2xx;
    totals.mismatches += probe.mismatches;
    totals.serverErrors += Object.entries(probe.statusCodes).reduce((n, [code, count]) => n + (Number(code) >= 500 ? count : 0), 0);

    // Troughs after the warm-up: the first fifth of the rest against its last fifth.
    const judged = (seconds - warmupSeconds) / 5;
    const low = (from: number, to: number, pick: (l: ProbeLine) => number) => lowestBetween(lines, from * 1000, to * 1000, pick);
    const growth = (a: number | null, b: number | null) => (a !== null && b !== null ? b - a : null);
    const rssFirst = low(warmupSeconds, warmupSeconds + judged, (l) => l.rss);
    const rssLast = low(seconds - judged, seconds + 1, (l) => l.rss);
    const heapFirst = low(warmupSeconds, warmupSeconds + judged, (l) => l.heap);
    const heapLast = low(seconds - judged, seconds + 1, (l) => l.heap);
    const samples = lines.reduce((n, l) => n + Object.values(l.lag).reduce((a, b) => a + b, 0), 0);
    return {
      minutes,
      rate: o.s.soakRate,
      connections: CONNECTIONS,
      bucketSeconds,
      warmupSeconds,
      flow: `sign in (GET + POST /auth/login), ${MINTS} × (GET /auth/token, ${CALLS_PER_MINT} × GET /api/me), GET /, POST /auth/logout, GET /api/me with the revoked token (401)`,
      buckets: out,
      totals,
      memory: {
        rssFirst,
        rssLast,
        rssGrowth: growth(rssFirst, rssLast),
        heapFirst,
        heapLast,
        heapGrowth: growth(heapFirst, heapLast),
        rssPeak: lines.length ? Math.max(...lines.map((l) => l.rssMax)) : null,
      },
      lag: { p50: lagPercentile(lines, 50) ?? NaN, p99: lagPercentile(lines, 99) ?? NaN, max: lagPercentile(lines, 100) ?? NaN, samples },
      healthz: probe.latency,
      load: summarize(result),
      appExit: exit,
    };
  } finally {
    o.exits[app.name] = exit === '?' ? await stopServer(app) : exit;
  }
}

/** Issue 14's soak goals: trough growth under 20 MB (RSS and heap), event-loop lag p99 under 50 ms, no 5xx, no other failure. */
export function soakGoals(soak: Soak): Goal[] {
  const mb = 1024 * 1024;
  const t = soak.totals;
  const growthGoal = (name: string, bytes: number | null): Goal => ({
    name: `${name} trough growth over ${soak.minutes} min`,
    target: '< 20 MB',
    value: `${bytes !== null && bytes >= 0 ? '+' : ''}${fmtMb(bytes)} MB`,
    pass: bytes === null ? null : bytes < 20 * mb,
  });
  return [
    growthGoal('RSS', soak.memory.rssGrowth),
    growthGoal('heap', soak.memory.heapGrowth),
    { name: 'event-loop lag p99 (inside the server)', target: '< 50 ms', value: `${fmtMs(soak.lag.p99)} ms (max ${fmtMs(soak.lag.max)})`, pass: Number.isFinite(soak.lag.p99) ? soak.lag.p99 < 50 : null },
    { name: '5xx answers', target: '0', value: fmtInt(t.serverErrors), pass: t.serverErrors === 0 },
    { name: 'errors, unexpected statuses, wrong answers', target: '0', value: `${t.errors} / ${t.unexpected} / ${t.mismatches}`, pass: t.errors + t.unexpected + t.mismatches === 0 },
  ];
}

/** The soak's text: totals, memory, lag, and one row per tenth of the run. */
export function renderSoak(soak: Soak): string[] {
  const t = soak.totals;
  const mb = (b: number | null) => `${fmtMb(b)} MB`;
  const signed = (b: number | null) => `${b !== null && b >= 0 ? '+' : ''}${mb(b)}`;
  const tenth = Math.max(1, Math.round(soak.buckets.length / 10));
  const rows: string[][] = [];
  for (let i = 0; i < soak.buckets.length; i += tenth) {
    const part = soak.buckets.slice(i, i + tenth);
    const sum = (k: keyof SoakCounts) => part.reduce((n, b) => n + b[k], 0);
    const secs = part.at(-1)!.to - part[0]!.from;
    const lowest = (k: 'rssTrough' | 'heapTrough' | 'externalTrough') => Math.min(...part.map((b) => b[k] ?? Infinity));
    const highest = (k: 'lagP99' | 'lagMax' | 'healthzP99') => Math.max(...part.map((b) => b[k] ?? NaN));
    rows.push([
      `${part[0]!.from}–${part.at(-1)!.to} s`,
      fmtInt(sum('requests') / secs),
      (sum('signIns') / secs).toFixed(1),
      fmtMb(lowest('rssTrough')),
      fmtMb(lowest('heapTrough')),
      fmtMb(part.at(-1)!.heapTotal ?? null),
      fmtMb(lowest('externalTrough')),
      fmtMs(highest('lagP99')),
      fmtMs(highest('lagMax')),
      fmtMs(highest('healthzP99')),
      `${sum('errors')}/${sum('serverErrors')}/${sum('unexpected')}/${sum('mismatches')}`,
    ]);
  }
  return [
    `Soak: one app process, ${soak.minutes} min at ${fmtInt(soak.rate)} req/s over ${soak.connections} browsers, each looping: ${soak.flow}`,
    `  ${fmtInt(t.requests)} answers: ${fmtInt(t.signIns)} sign-ins, ${fmtInt(t.mints)} mints, ${fmtInt(t.apiCalls)} API calls, ${fmtInt(t.signOuts)} sign-outs (${fmtInt(t.refused)} revoked tokens refused); ` +
      `load ${fmtInt(soak.load.rps)} req/s, p99 ${fmtMs(soak.load.latency.p99)} ms; /healthz p50 ${fmtMs(soak.healthz.p50)} ms, p99 ${fmtMs(soak.healthz.p99)} ms`,
    `  memory inside the server (lowest readings, every 100 ms), after a ${soak.warmupSeconds} s warm-up, first fifth → last fifth: ` +
      `RSS ${mb(soak.memory.rssFirst)} → ${mb(soak.memory.rssLast)} (${signed(soak.memory.rssGrowth)}), heap used ${mb(soak.memory.heapFirst)} → ${mb(soak.memory.heapLast)} (${signed(soak.memory.heapGrowth)}); RSS peak ${mb(soak.memory.rssPeak)}`,
    `  event-loop lag (a 10 ms timer inside the server, ${fmtInt(soak.lag.samples)} samples): p50 ${fmtMs(soak.lag.p50)} ms, p99 ${fmtMs(soak.lag.p99)} ms, max ${fmtMs(soak.lag.max)} ms; app exit on SIGTERM: ${soak.appExit}`,
    table(['time', 'req/s', 'sign-ins/s', 'RSS trough MB', 'heap trough MB', 'heap size MB', 'external trough MB', 'lag p99 ms', 'lag max ms', 'healthz p99 ms', 'err/5xx/unexp/bad'], rows),
    '',
  ];
}
