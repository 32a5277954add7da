import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AUDIT_EVENTS, type AuditEventName } from '../models/audit-event.js';
import type { Database } from '../models/database.js';

/**
 * How `acceptToken` (services/token-access.ts) ended: `valid`; `invalid` (not
 * ours: format, header, signature, issuer, audience, claims, an unknown or
 * revoked key); `expired`; `revoked` (well signed, but its session ended, it
 * predates the user's "tokens valid after", or the user is disabled or gone);
 * `error` (the check itself failed, e.g. the database was unreachable).
 */
export const TOKEN_VERIFICATION_RESULTS = ['valid', 'invalid', 'expired', 'revoked', 'error'] as const;
export type TokenVerificationResult = (typeof TOKEN_VERIFICATION_RESULTS)[number];

/** The `route` label of a request no route handled (404s, static files, redirects by middleware). */
export const UNMATCHED_ROUTE = 'unmatched';

/** Seconds; from a cached API call (~0.2 ms) to an argon2id sign-in on a busy machine. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Methods that get their own `method` label; the rest (Node parses a few dozen) share `other`. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** What a sequelize-pool `Pool` tells about itself (Sequelize's PostgreSQL connection manager holds one). */
interface PoolStats {
  readonly size: number;
  readonly available: number;
  readonly using: number;
  readonly waiting: number;
  readonly maxSize: number;
}

/**
 * The app's Prometheus metrics, in a registry of its own (never prom-client's
 * global one, so a test process can hold several apps). `createApp({ metrics })`
 * hands the counters to the services; without it nothing is collected.
 * Labels hold only fixed words, route patterns and status codes: never a
 * username, token, address or id.
 *
 * @example
 * const metrics = new Metrics();
 * const app = createApp({ config, database, logger, metrics });
 * await startMetricsServer({ host: '127.0.0.1', port: 9464 }, metrics);
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly durations: Histogram<'method' | 'route' | 'status'>;
  private readonly authEvents: Counter<'event'>;
  private readonly minted: Counter;
  private readonly verifications: Counter<'result'>;

  /** `processMetrics: false` leaves out prom-client's default process metrics (CPU, memory, event loop, GC). */
  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests answered, by method, route pattern and status', labelNames: ['method', 'route', 'status'], registers });
    this.durations = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time from the request reaching the app to its response being sent, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.authEvents = new Counter({ name: 'auth_events_total', help: 'Audit log events recorded, by event', labelNames: ['event'], registers });
    this.minted = new Counter({ name: 'tokens_minted_total', help: 'Access tokens minted', registers });
    this.verifications = new Counter({ name: 'token_verifications_total', help: 'Bearer tokens checked (API and introspection), by result', labelNames: ['result'], registers });
    // Every series from the start, so rate() and absent-alerts work before the first event of a kind.
    for (const event of AUDIT_EVENTS) this.authEvents.inc({ event }, 0);
    for (const result of TOKEN_VERIFICATION_RESULTS) this.verifications.inc({ result }, 0);
  }

  /**
   * Middleware, first in the app: when the response has been sent, counts it
   * and its duration under the route pattern that handled it (see
   * {@link RouteLabels}). A request whose client left before the response was
   * sent is not counted.
   */
  httpRequests(): RequestHandler {
    const routes = new RouteLabels();
    return (req: Request, res: Response, next: NextFunction) => {
      const start = performance.now();
      res.once('finish', () => {
        const labels = { method: METHODS.has(req.method) ? req.method : 'other', route: routes.label(req), status: String(res.statusCode) };
        this.requests.inc(labels);
        this.durations.observe(labels, (performance.now() - start) / 1000);
      });
      next();
    };
  }

  /** One audit event recorded (AuditLog.record). */
  authEvent(event: AuditEventName): void {
    this.authEvents.inc({ event });
  }

  /** One access token minted (TokenService.mint). */
  tokenMinted(): void {
    this.minted.inc();
  }

  /** One bearer token checked by acceptToken. */
  tokenVerified(result: TokenVerificationResult): void {
    this.verifications.inc({ result });
  }

  /**
   * On PostgreSQL, gauges of Sequelize's connection pool, read at each scrape:
   * `db_pool_size` (open connections), `db_pool_available` (idle),
   * `db_pool_using` (lent to a query), `db_pool_waiting` (queries waiting for
   * a connection) and `db_pool_max` (`DB_POOL_MAX`). SQLite has no pool: nothing.
   */
  observePool(database: Pick<Database, 'dialect' | 'sequelize'>): void {
    if (database.dialect !== 'postgres') return;
    const pool = () => (database.sequelize.connectionManager as unknown as { pool?: PoolStats }).pool;
    const gauge = (name: string, help: string, read: (p: PoolStats) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const p = pool();
          if (p) this.set(read(p));
        },
      });
    gauge('db_pool_size', 'Open PostgreSQL connections in the pool (in use and idle)', (p) => p.size);
    gauge('db_pool_available', 'Idle PostgreSQL connections in the pool', (p) => p.available);
    gauge('db_pool_using', 'PostgreSQL connections lent to a query', (p) => p.using);
    gauge('db_pool_waiting', 'Queries waiting for a pooled PostgreSQL connection', (p) => p.waiting);
    gauge('db_pool_max', 'Most PostgreSQL connections the pool opens (DB_POOL_MAX)', (p) => p.maxSize);
  }

  /** The registry in the Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** One route of the app: the pattern as registered on its router, and the full pattern with its routers' mount paths. */
interface Candidate {
  prefix: string;
  full: string;
}

/** What `router.listRoutes()` (router 2.3, Express 5's router) gives. */
interface ListedRoute {
  path: string | RegExp;
  router?: RouteLister | undefined;
}
interface RouteLister {
  listRoutes(): ListedRoute[];
}

/**
 * The `route` label of a finished request: the full pattern of the route that
 * handled it (`/auth/reset/:token`, never the path that was asked for), or
 * {@link UNMATCHED_ROUTE}.
 *
 * `req.route` is the matched route, but its `path` is relative to the router
 * it is registered on, and Express has put `req.baseUrl` back to the outer
 * router's by the time an error from inside a mounted router has been
 * rendered. So the app's routes are listed once (`router.listRoutes()`, with
 * the mount paths of nested routers), and a route path registered under
 * several mount paths is told apart by which one the URL starts with.
 */
class RouteLabels {
  private app: unknown;
  private byPath = new Map<string, Candidate[]>();

  label(req: Request): string {
    const route = req.route as { path?: unknown } | undefined;
    if (!route) return UNMATCHED_ROUTE;
    const own = String(route.path);
    if (req.app !== this.app) this.index(req.app);
    const candidates = this.byPath.get(own);
    if (!candidates) return own;
    if (candidates.length === 1) return candidates[0]!.full;
    const url = req.originalUrl;
    for (const { prefix, full } of candidates) {
      if (prefix === '') return full;
      // Express matches mount paths case-insensitively, on a segment boundary.
      const next = url.charCodeAt(prefix.length);
      if ((Number.isNaN(next) || next === 0x2f || next === 0x3f) && url.slice(0, prefix.length).toLowerCase() === prefix) return full;
    }
    return own;
  }

  private index(app: Request['app']): void {
    this.app = app;
    this.byPath = new Map();
    const walk = (router: RouteLister, prefix: string) => {
      for (const entry of router.listRoutes()) {
        const path = String(entry.path);
        if (entry.router) {
          walk(entry.router, prefix + (path === '/' ? '' : path.replace(/\/$/, '')));
          continue;
        }
        const list = this.byPath.get(path) ?? [];
        if (!list.some((c) => c.prefix === prefix.toLowerCase())) list.push({ prefix: prefix.toLowerCase(), full: prefix + path });
        this.byPath.set(path, list);
      }
    };
    walk(app.router as unknown as RouteLister, '');
    // Longest mount path first: /a/b before /a before the app itself.
    for (const list of this.byPath.values()) list.sort((a, b) => b.prefix.length - a.prefix.length);
  }
}

/** Where a metrics listener takes its text from: one process's {@link Metrics}, or a cluster primary's workers. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/**
 * In a cluster worker: answer the primary's requests for this process's
 * metrics (prom-client's AggregatorRegistry message protocol over the cluster
 * IPC channel).
 */
export function answerClusterPrimary(metrics: Metrics): void {
  // Its constructor installs the worker's message listener; setRegistries says what it answers with.
  void new AggregatorRegistry();
  AggregatorRegistry.setRegistries(metrics.registry);
}

/**
 * In a cluster primary: the metrics of every live worker, gathered over IPC at
 * each scrape and summed (counters, histograms, pool gauges, CPU and memory;
 * event-loop lag is averaged). A worker that does not answer within 5 s (one
 * still starting) fails that scrape, answered 503.
 */
export function clusterMetricsSource(): MetricsSource {
  const aggregator = new AggregatorRegistry();
  return { text: () => aggregator.clusterMetrics(), contentType: aggregator.contentType };
}

/**
 * Serves `GET /metrics` (and HEAD) from `source` on a plain node:http server
 * of its own, bound to `host`:`port` (0 picks a free port); every other path
 * is a 404, every other method a 405. Resolves once listening.
 */
export function startMetricsServer(where: { host: string; port: number }, source: MetricsSource, onError: (err: Error) => void = () => undefined): Promise<Server> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?')[0];
    res.setHeader('Cache-Control', 'no-store');
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
      return;
    }
    source.text().then(
      (text) => res.writeHead(200, { 'Content-Type': source.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => {
        onError(err);
        res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Metrics are unavailable right now\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port, where.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** The port a started metrics server listens on (useful with `METRICS_PORT=0`). */
export function metricsPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
