/**
 * The load scenarios, each one autocannon run (or two at once) against
 * 127.0.0.1, bounded by a duration or a request count and by a hard time limit.
 * Every run reports errors, timeouts, non-2xx answers and body mismatches.
 */
import { Agent, request as httpRequest } from 'node:http';
import autocannon from 'autocannon';
import { csrfFrom, formBody, formPostHeaders, headerValue, LOOPBACK, PROXY_HEADERS, request, sessionCookieFrom } from './lib/http.js';

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface RunStats {
  /** Completed responses. */
  requests: number;
  /** Seconds the run lasted. */
  seconds: number;
  /** Completed responses per second. */
  rps: number;
  /** Milliseconds (autocannon's resolution is 1 ms). */
  latency: LatencySummary;
  /** Socket errors, timeouts included. */
  errors: number;
  timeouts: number;
  /** Answers outside 2xx (for the login flow: answers other than the expected 200 and 302). */
  non2xx: number;
  /** 2xx answers whose body was not the expected one. */
  mismatches: number;
  statusCodes: Record<string, number>;
}

/** Hooks for the progress line. */
export interface Progress {
  (detail: { done: number; elapsedMs: number }): void;
}

type Cannon = autocannon.Instance;

/** Runs one autocannon instance; `stop()`s it when it is still going after `hardLimitMs`. */
function run(options: autocannon.Options, hardLimitMs: number, progress?: Progress): { instance: Cannon; result: Promise<autocannon.Result> } {
  let instance!: Cannon;
  const result = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(options, (err: unknown, res: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)));
  });
  const started = Date.now();
  let done = 0;
  instance.on('response', () => {
    done += 1;
  });
  const ticker = progress ? setInterval(() => progress({ done, elapsedMs: Date.now() - started }), 250) : undefined;
  const limit = setTimeout(() => instance.stop(), hardLimitMs);
  void result.finally(() => {
    clearTimeout(limit);
    if (ticker) clearInterval(ticker);
  }).catch(() => undefined);
  return { instance, result };
}

function summarize(res: autocannon.Result, overrides: Partial<RunStats> = {}): RunStats {
  const statusCodes: Record<string, number> = {};
  for (const [code, stat] of Object.entries(res.statusCodeStats ?? {})) statusCodes[code] = (stat as { count?: number }).count ?? 0;
  const requests = res.requests.total;
  const seconds = res.duration;
  return {
    requests,
    seconds,
    rps: seconds > 0 ? requests / seconds : 0,
    latency: { p50: res.latency.p50, p90: res.latency.p90, p99: res.latency.p99, max: res.latency.max, mean: res.latency.mean },
    errors: res.errors,
    timeouts: res.timeouts,
    non2xx: res.non2xx,
    mismatches: res.mismatches,
    statusCodes,
    ...overrides,
  };
}

export interface ThroughputOptions {
  port: number;
  path: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
  /** Exact body every answer must have, or a predicate on it. */
  expect: string | ((body: string) => boolean);
  progress?: Progress;
}

/** Closed-loop throughput: `connections` keep-alive connections, one request in flight each. */
export async function throughput(o: ThroughputOptions): Promise<RunStats> {
  const { result } = run(
    {
      url: `http://${LOOPBACK}:${o.port}${o.path}`,
      connections: o.connections,
      pipelining: 1,
      duration: o.seconds,
      timeout: 10,
      headers: o.headers,
      ...(typeof o.expect === 'string' ? { expectBody: o.expect } : { verifyBody: o.expect as (body: unknown) => boolean }),
    },
    o.seconds * 1000 + 15_000,
    o.progress,
  );
  return summarize(await result);
}

export interface MixedAmountOptions {
  port: number;
  /** The requests each connection cycles through. */
  requests: { path: string; headers: Record<string, string>; expect: (body: string) => boolean }[];
  connections: number;
  amount: number;
  hardLimitMs: number;
  progress?: Progress;
}

/** A fixed number of requests (the RSS scenario), each connection cycling through `requests`. */
export async function fixedAmount(o: MixedAmountOptions): Promise<RunStats> {
  let mismatches = 0;
  const { result } = run(
    {
      url: `http://${LOOPBACK}:${o.port}`,
      connections: o.connections,
      pipelining: 1,
      amount: o.amount,
      timeout: 10,
      requests: o.requests.map((r) => ({
        method: 'GET' as const,
        path: r.path,
        headers: r.headers,
        onResponse: (status: number, body: string) => {
          if (status >= 200 && status < 300 && !r.expect(body)) mismatches += 1;
        },
      })),
    },
    o.hardLimitMs,
    o.progress,
  );
  return summarize(await result, { mismatches });
}

export interface LoginUser {
  username: string;
  password: string;
}

export interface LoginStormOptions {
  port: number;
  users: readonly LoginUser[];
  /** Concurrent browsers signing in, each looping GET /auth/login then POST /auth/login. */
  concurrency: number;
  seconds: number;
  /** Requests per second of the /healthz probe that runs during the storm (0: no probe). */
  probeRate: number;
  progress?: Progress;
}

/**
 * The sign-in flow's numbers. `requests`, `rps` and `latency` cover both steps
 * (GET the form, POST it); `non2xx` counts answers other than 200 and 302, and
 * `mismatches` 200/302 answers that lacked the session cookie, the `_csrf`
 * field or the redirect to `/`.
 */
export interface LoginStats extends RunStats {
  /** Successful sign-ins (302 to `/` with a renewed session cookie). */
  logins: number;
  loginsPerSecond: number;
  /** Milliseconds from writing POST /auth/login to its answer (sub-millisecond resolution). */
  postLatency: LatencySummary;
  /**
   * Milliseconds a sign-in took right after the storm stopped. autocannon drops
   * the connections of in-flight requests, but the app still hashes their
   * passwords; this sentinel waits behind them, so the next scenario starts on
   * an idle app (null when it failed or took over 60 s).
   */
  drainMs: number | null;
}

export interface StormResult {
  login: LoginStats;
  /** /healthz while the storm ran; null without a probe. */
  healthz: RunStats | null;
}

interface FlowContext {
  cookie?: string;
  csrf?: string;
  user?: LoginUser;
  /** performance.now() when the POST was written. */
  postedAt?: number;
}

/** Percentile of an ascending array (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * The real browser sign-in, `concurrency` at once: GET /auth/login (a new
 * anonymous session and its `_csrf`), then POST /auth/login with that cookie
 * and token; a 302 with a renewed session cookie counts as one login. Each
 * login uses the next user of the pool (correct passwords, so no throttling).
 * Optionally probes /healthz at a fixed rate meanwhile.
 */
export async function loginStorm(o: LoginStormOptions): Promise<StormResult> {
  let next = 0;
  let logins = 0;
  let mismatches = 0;
  const postTimes: number[] = [];
  const storm = run(
    {
      url: `http://${LOOPBACK}:${o.port}`,
      connections: o.concurrency,
      pipelining: 1,
      duration: o.seconds,
      timeout: 10,
      requests: [
        {
          method: 'GET',
          path: '/auth/login',
          headers: { ...PROXY_HEADERS, accept: 'text/html' },
          onResponse: (status, body, context, headers) => {
            const ctx = context as FlowContext;
            if (status !== 200) return; // counted as unexpected below
            const cookie = sessionCookieFrom(headers as Record<string, unknown>);
            const csrf = csrfFrom(body);
            if (!cookie || !csrf) {
              mismatches += 1;
              return;
            }
            ctx.cookie = cookie;
            ctx.csrf = csrf;
            ctx.user = o.users[next++ % o.users.length];
          },
        },
        {
          method: 'POST',
          path: '/auth/login',
          setupRequest: (req, context) => {
            const ctx = context as FlowContext;
            // No session or token from the GET: autocannon starts the flow over.
            if (!ctx.cookie || !ctx.csrf || !ctx.user) return null as unknown as autocannon.Request;
            ctx.postedAt = performance.now();
            return {
              ...req,
              headers: formPostHeaders(o.port, ctx.cookie),
              body: formBody({ _csrf: ctx.csrf, username: ctx.user.username, password: ctx.user.password }),
            };
          },
          onResponse: (status, _body, context, headers) => {
            const ctx = context as FlowContext;
            if (ctx.postedAt !== undefined && postTimes.length < 1_000_000) postTimes.push(performance.now() - ctx.postedAt);
            if (status !== 200 && status !== 302) return; // counted as unexpected below
            const renewed = sessionCookieFrom(headers as Record<string, unknown>);
            if (status === 302 && headerValue(headers as Record<string, unknown>, 'location') === '/' && renewed && renewed !== ctx.cookie) logins += 1;
            else mismatches += 1;
          },
        },
      ],
    },
    o.seconds * 1000 + 20_000,
    o.progress,
  );

  let probe: Promise<RunStats> | undefined;
  if (o.probeRate > 0) {
    // Let every browser get its first hash going before the probe starts, and stop probing before the storm ends.
    const rampMs = Math.min(1000, o.seconds * 200);
    await new Promise((resolve) => setTimeout(resolve, rampMs));
    probe = probeLatency({ port: o.port, path: '/healthz', rate: o.probeRate, seconds: o.seconds - (2 * rampMs) / 1000, expect: '{"status":"ok"}' });
  }
  const [stormRes, probeRes] = await Promise.all([storm.result, probe]);
  const drainStarted = performance.now();
  const drained = await signIn(o.port, o.users[0]!, 60_000).then(() => true, () => false);
  const drainMs = drained ? performance.now() - drainStarted : null;
  const base = summarize(stormRes);
  // 200 (login page) and 302 (signed in) are the expected answers of this flow.
  const unexpected = Object.entries(base.statusCodes)
    .filter(([code]) => code !== '200' && code !== '302')
    .reduce((sum, [, n]) => sum + n, 0);
  postTimes.sort((a, b) => a - b);
  const postLatency: LatencySummary = {
    p50: percentile(postTimes, 50),
    p90: percentile(postTimes, 90),
    p99: percentile(postTimes, 99),
    max: postTimes.at(-1) ?? NaN,
    mean: postTimes.length ? postTimes.reduce((a, b) => a + b, 0) / postTimes.length : NaN,
  };
  return {
    login: {
      ...base,
      postLatency,
      non2xx: unexpected,
      mismatches,
      logins,
      loginsPerSecond: base.seconds > 0 ? logins / base.seconds : 0,
      drainMs,
    },
    healthz: probeRes ?? null,
  };
}

export interface ProbeOptions {
  port: number;
  path: string;
  /** Requests per second, evenly spaced (not bursts). */
  rate: number;
  seconds: number;
  expect: string;
}

/**
 * An open-loop latency probe: one GET every 1/rate seconds on a keep-alive
 * connection (a second one opens only when an answer is late), timed with
 * performance.now(). Bounded: at most rate × seconds requests, each with a 10 s timeout.
 */
export async function probeLatency(o: ProbeOptions): Promise<RunStats> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const total = Math.max(1, Math.floor(o.rate * o.seconds));
  const times: number[] = [];
  const statusCodes: Record<string, number> = {};
  let errors = 0;
  let timeouts = 0;
  let non2xx = 0;
  let mismatches = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = httpRequest({ host: LOOPBACK, port: o.port, path: o.path, agent, headers: PROXY_HEADERS }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          times.push(performance.now() - t0);
          const code = res.statusCode ?? 0;
          statusCodes[code] = (statusCodes[code] ?? 0) + 1;
          if (code < 200 || code > 299) non2xx += 1;
          else if (body !== o.expect) mismatches += 1;
          resolve();
        });
      });
      req.setTimeout(10_000, () => {
        timeouts += 1;
        req.destroy(new Error('timeout'));
      });
      req.on('error', () => {
        errors += 1;
        resolve();
      });
      req.end();
    });
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i += 1) {
    const due = started + (i * 1000) / o.rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(one());
  }
  await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  times.sort((a, b) => a - b);
  return {
    requests: times.length,
    seconds,
    rps: times.length / seconds,
    latency: {
      p50: percentile(times, 50),
      p90: percentile(times, 90),
      p99: percentile(times, 99),
      max: times.at(-1) ?? NaN,
      mean: times.length ? times.reduce((a, b) => a + b, 0) / times.length : NaN,
    },
    errors,
    timeouts,
    non2xx,
    mismatches,
    statusCodes,
  };
}

/** One browser sign-in (GET the form, POST it); resolves with the signed-in cookie or rejects. */
export async function signIn(port: number, user: LoginUser, timeoutMs: number): Promise<string> {
  const page = await request(port, 'GET', '/auth/login', { headers: { ...PROXY_HEADERS, accept: 'text/html' }, timeoutMs });
  const cookie = sessionCookieFrom(page.headers as Record<string, unknown>);
  const csrf = csrfFrom(page.body);
  if (page.status !== 200 || !cookie || !csrf) throw new Error(`GET /auth/login answered ${page.status}`);
  const res = await request(port, 'POST', '/auth/login', {
    headers: formPostHeaders(port, cookie),
    body: formBody({ _csrf: csrf, username: user.username, password: user.password }),
    timeoutMs,
  });
  const signedIn = sessionCookieFrom(res.headers as Record<string, unknown>);
  if (res.status !== 302 || !signedIn) throw new Error(`POST /auth/login answered ${res.status}`);
  return signedIn;
}
