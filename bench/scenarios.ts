/**
 * The load scenarios: autocannon runs against 127.0.0.1, each bounded by a
 * duration or a request count and by a hard time limit, and an open-loop
 * `/healthz` probe. Every run counts errors, timeouts, unexpected statuses and
 * wrong bodies.
 */
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { RemoteBrowser } from '../test/helpers/remote-browser.js';

/** Every request of the benchmark goes to this address, and nothing else. */
export const LOOPBACK = '127.0.0.1';
/** The production session cookie (see config.ts): `__Host-` prefixed, Secure. */
const SESSION_COOKIE = '__Host-tb.sid';

/**
 * Sent on every request that needs a session. The app runs with
 * TRUST_PROXY=loopback, as behind a TLS-terminating proxy on the same host, so
 * express-session issues its Secure cookie; the benchmark sends it back itself
 * over plain loopback HTTP.
 */
export const PROXY_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'x-forwarded-proto': 'https' });

/** A browser's headers for pages and forms of the app on `port` (its origin is the proxy's https one). */
export function browserHeaders(port: number): Record<string, string> {
  return { ...PROXY_HEADERS, accept: 'text/html', origin: `https://${LOOPBACK}:${port}`, 'sec-fetch-site': 'same-origin' };
}

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

/** One autocannon run, `stop()`ped when it is still going after `limitMs`; `onStart` gets the instance (for its events). */
export function cannon(options: autocannon.Options, limitMs: number, onStart?: (instance: autocannon.Instance) => void): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    // Sampled every 100 ms (not every second): a run ends on the first sample after its duration or amount.
    const instance = autocannon({ pipelining: 1, timeout: 10, sampleInt: 100, ...options }, (err: unknown, res: autocannon.Result) => {
      clearTimeout(limit);
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(res);
    });
    const limit = setTimeout(() => instance.stop(), limitMs);
    onStart?.(instance);
  });
}

export function summarize(res: autocannon.Result, overrides: Partial<RunStats> = {}): RunStats {
  const statusCodes: Record<string, number> = {};
  for (const [code, stat] of Object.entries(res.statusCodeStats ?? {})) statusCodes[code] = (stat as { count?: number }).count ?? 0;
  const { p50, p90, p99, max, mean } = res.latency;
  return {
    requests: res.requests.total,
    seconds: res.duration,
    rps: res.duration > 0 ? res.requests.total / res.duration : 0,
    latency: { p50, p90, p99, max, mean },
    errors: res.errors,
    timeouts: res.timeouts,
    non2xx: res.non2xx,
    mismatches: res.mismatches,
    statusCodes,
    ...overrides,
  };
}

/** Nearest-rank percentiles, max and mean of milliseconds timed with performance.now(). */
export function latencyOf(times: number[]): LatencySummary {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length ? sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN);
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : NaN;
  return { p50: at(50), p90: at(90), p99: at(99), max: sorted.at(-1) ?? NaN, mean };
}

export interface ThroughputOptions {
  port: number;
  path: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
  /** Exact body every answer must have, or a predicate on it. */
  expect: string | ((body: string) => boolean);
}

/** Closed-loop throughput: `connections` keep-alive connections, one request in flight each. */
export async function throughput(o: ThroughputOptions): Promise<RunStats> {
  const res = await cannon(
    {
      url: `http://${LOOPBACK}:${o.port}${o.path}`,
      connections: o.connections,
      duration: o.seconds,
      headers: o.headers,
      ...(typeof o.expect === 'string' ? { expectBody: o.expect } : { verifyBody: o.expect as (body: unknown) => boolean }),
    },
    o.seconds * 1000 + 15_000,
  );
  return summarize(res);
}

export interface FixedAmountOptions {
  port: number;
  /** The requests each connection cycles through. */
  requests: { path: string; headers: Record<string, string>; expect: (body: string) => boolean }[];
  connections: number;
  amount: number;
  limitMs: number;
}

/** A fixed number of requests (the RSS scenario), each connection cycling through `requests`. */
export async function fixedAmount(o: FixedAmountOptions): Promise<RunStats> {
  let mismatches = 0;
  const res = await cannon(
    {
      url: `http://${LOOPBACK}:${o.port}`,
      connections: o.connections,
      amount: o.amount,
      requests: o.requests.map((r) => ({
        method: 'GET' as const,
        path: r.path,
        headers: r.headers,
        onResponse: (status: number, body: string) => {
          if (status >= 200 && status < 300 && !r.expect(body)) mismatches += 1;
        },
      })),
    },
    o.limitMs,
  );
  return summarize(res, { mismatches });
}

export interface LoginUser {
  username: string;
  password: string;
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
   * an idle app (null when it failed or took over 20 s).
   */
  drainMs: number | null;
}

export interface StormOptions {
  port: number;
  users: readonly LoginUser[];
  /** Concurrent browsers signing in, each looping GET /auth/login then POST /auth/login. */
  concurrency: number;
  seconds: number;
  /** Requests per second of the /healthz probe that runs during the storm. */
  probeRate: number;
}

interface FlowContext {
  cookie?: string;
  csrf?: string;
  user?: LoginUser;
  /** performance.now() when the POST was written. */
  postedAt?: number;
}

/** A header of autocannon's raw-cased response headers (an array when repeated). */
export function headerIn(headers: unknown, name: string): unknown {
  return Object.entries(headers as Record<string, unknown>).find(([key]) => key.toLowerCase() === name)?.[1];
}

/** The session cookie (`name=value`) a response set, if any. */
export function sessionCookieIn(headers: unknown): string | undefined {
  const cookies = [headerIn(headers, 'set-cookie') ?? []].flat() as unknown[];
  const cookie = cookies.find((c): c is string => typeof c === 'string' && c.startsWith(`${SESSION_COOKIE}=`));
  return cookie?.split(';', 1)[0];
}

/**
 * The real browser sign-in, `concurrency` at once: GET /auth/login (a new
 * anonymous session and its `_csrf`), then POST /auth/login with that cookie
 * and token; a 302 to `/` with a renewed session cookie counts as one login.
 * Each login uses the next user of the pool (correct passwords, so no
 * throttling). Probes /healthz at `probeRate` meanwhile.
 */
export async function loginStorm(o: StormOptions): Promise<{ login: LoginStats; healthz: RunStats }> {
  let next = 0;
  let logins = 0;
  let mismatches = 0;
  const postTimes: number[] = [];
  const storm = cannon(
    {
      url: `http://${LOOPBACK}:${o.port}`,
      connections: o.concurrency,
      duration: o.seconds,
      requests: [
        {
          method: 'GET',
          path: '/auth/login',
          headers: { ...PROXY_HEADERS, accept: 'text/html' },
          onResponse: (status, body, context, headers) => {
            const ctx = context as FlowContext;
            ctx.cookie = status === 200 ? sessionCookieIn(headers) : undefined;
            ctx.csrf = /name="_csrf" value="([^"]+)"/.exec(body)?.[1];
            if (status !== 200) return; // counted as unexpected below
            if (!ctx.cookie || !ctx.csrf) mismatches += 1;
            else ctx.user = o.users[next++ % o.users.length];
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
              headers: { ...browserHeaders(o.port), 'content-type': 'application/x-www-form-urlencoded', cookie: ctx.cookie },
              body: new URLSearchParams({ _csrf: ctx.csrf, username: ctx.user.username, password: ctx.user.password }).toString(),
            };
          },
          onResponse: (status, _body, context, headers) => {
            const ctx = context as FlowContext;
            if (ctx.postedAt !== undefined && postTimes.length < 1_000_000) postTimes.push(performance.now() - ctx.postedAt);
            if (status !== 200 && status !== 302) return; // counted as unexpected below
            const renewed = sessionCookieIn(headers);
            if (status === 302 && headerIn(headers, 'location') === '/' && renewed && renewed !== ctx.cookie) logins += 1;
            else mismatches += 1;
          },
        },
      ],
    },
    o.seconds * 1000 + 20_000,
  );

  // Let every browser get its first hash going before the probe starts, and stop probing before the storm ends.
  const rampMs = Math.min(1000, o.seconds * 200);
  await sleep(rampMs);
  const probe = probeLatency({ port: o.port, path: '/healthz', rate: o.probeRate, seconds: o.seconds - (2 * rampMs) / 1000, expect: '{"status":"ok"}' });
  const [stormRes, healthz] = await Promise.all([storm, probe]);

  const drainStarted = performance.now();
  const user = o.users[0]!;
  const drained = await new RemoteBrowser(browserHeaders(o.port)).login(`http://${LOOPBACK}:${o.port}`, user.username, user.password).catch(() => undefined);
  const drainMs = drained?.status === 302 && drained.headers.get('location') === '/' ? performance.now() - drainStarted : null;

  const base = summarize(stormRes);
  // 200 (login page) and 302 (signed in) are the expected answers of this flow.
  const unexpected = Object.entries(base.statusCodes)
    .filter(([code]) => code !== '200' && code !== '302')
    .reduce((sum, [, n]) => sum + n, 0);
  const login = {
    ...base,
    non2xx: unexpected,
    mismatches,
    logins,
    loginsPerSecond: base.seconds > 0 ? logins / base.seconds : 0,
    postLatency: latencyOf(postTimes),
    drainMs,
  };
  return { login, healthz };
}

export interface ProbeOptions {
  port: number;
  path: string;
  /** Requests per second, evenly spaced (not bursts). */
  rate: number;
  seconds: number;
  expect: string;
  /** Called with every answer's latency (ms) as it arrives. */
  onSample?: (ms: number) => void;
}

/**
 * An open-loop latency probe: one GET every 1/rate seconds on a keep-alive
 * connection (another one opens only when an answer is late), timed with
 * performance.now(). At most rate × seconds requests, each with a 10 s timeout.
 */
export async function probeLatency(o: ProbeOptions): Promise<RunStats> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const stats = { errors: 0, timeouts: 0, non2xx: 0, mismatches: 0 };
  const times: number[] = [];
  const statusCodes: Record<string, number> = {};
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = request({ host: LOOPBACK, port: o.port, path: o.path, agent, headers: PROXY_HEADERS }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          times.push(performance.now() - t0);
          o.onSample?.(times.at(-1)!);
          const code = res.statusCode ?? 0;
          statusCodes[code] = (statusCodes[code] ?? 0) + 1;
          if (code < 200 || code > 299) stats.non2xx += 1;
          else if (body !== o.expect) stats.mismatches += 1;
          resolve();
        });
      });
      req.setTimeout(10_000, () => {
        stats.timeouts += 1;
        req.destroy(new Error('timeout'));
      });
      req.on('error', () => {
        stats.errors += 1;
        resolve();
      });
      req.end();
    });
  const started = performance.now();
  const pending: Promise<void>[] = [];
  const total = Math.max(1, Math.floor(o.rate * o.seconds));
  for (let i = 0; i < total; i += 1) {
    const wait = started + (i * 1000) / o.rate - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(one());
  }
  await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { requests: times.length, seconds, rps: times.length / seconds, latency: latencyOf(times), ...stats, statusCodes };
}
