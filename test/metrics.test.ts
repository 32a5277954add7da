import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { register as globalRegistry } from 'prom-client';
import request from 'supertest';
import { loadConfig } from '../config.js';
import { Metrics, startMetricsServer } from '../services/metrics.js';
import { TokenService } from '../services/tokens.js';
import { freshDatabase, startTestApp, type TestApp } from './helpers/app.js';
import { browser, formToken, loginUser, registerUser, STRONG_PASSWORD, uniqueName, userWithToken } from './helpers/browser.js';
import { configRefusal } from './helpers/config.js';
import { randomSecret, runUntilExit, type ServerProcess } from './helpers/process.js';
import { RemoteBrowser, startInstances, waitUntil, type Instances } from './helpers/remote-browser.js';

/** One sample line of the Prometheus text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    out.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return out;
}

/** The value of the one sample `name` with exactly these labels; 0 when there is none (a counter not yet touched). */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number {
  const found = samples(text).filter(
    (s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  expect(found.length, `${name} ${JSON.stringify(labels)} appears at most once`).to.be.at.most(1);
  return found[0]?.value ?? 0;
}

/** `/api/me` answered 200 (GET) as counted. */
const apiMeOk = { method: 'GET', route: '/api/me', status: '200' };

/**
 * Polls `read` until `name{labels}` has reached `expected` (a response is
 * counted when it has been sent, a moment after the client may have read it),
 * then returns the text, for an exact comparison.
 */
async function reaching(read: () => Promise<string>, name: string, labels: Record<string, string>, expected: number): Promise<string> {
  let text = await read();
  const deadline = Date.now() + 5_000;
  while (valueOf(text, name, labels) < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    text = await read();
  }
  return text;
}

const random = () => randomBytes(12).toString('hex');

describe('metrics in the app (createApp({ metrics }))', function () {
  this.timeout(30_000);
  let t: TestApp;
  let metrics: Metrics;
  const read = () => metrics.text();

  before(async () => {
    metrics = new Metrics();
    t = await startTestApp({ metrics });
  });
  after(() => t?.close());

  it('counts http_requests_total and the duration histogram for GET /api/me 200 up by exactly the calls made', async () => {
    const { token } = await userWithToken(t.server);
    const before = await read();
    for (let i = 0; i < 7; i += 1) await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    const after = await reaching(read, 'http_requests_total', apiMeOk, valueOf(before, 'http_requests_total', apiMeOk) + 7);
    expect(valueOf(after, 'http_requests_total', apiMeOk) - valueOf(before, 'http_requests_total', apiMeOk)).to.equal(7);
    expect(valueOf(after, 'http_request_duration_seconds_count', apiMeOk) - valueOf(before, 'http_request_duration_seconds_count', apiMeOk)).to.equal(7);
    const inf = { ...apiMeOk, le: '+Inf' };
    expect(valueOf(after, 'http_request_duration_seconds_bucket', inf) - valueOf(before, 'http_request_duration_seconds_bucket', inf)).to.equal(7);
    const seconds = valueOf(after, 'http_request_duration_seconds_sum', apiMeOk) - valueOf(before, 'http_request_duration_seconds_sum', apiMeOk);
    expect(seconds).to.be.greaterThan(0).and.lessThan(7 * 5);
    // A 401 is its own series, under the same route.
    await request(t.server).get('/api/me').expect(401);
    const unauthorised = await reaching(read, 'http_requests_total', { ...apiMeOk, status: '401' }, 1);
    expect(valueOf(unauthorised, 'http_requests_total', apiMeOk)).to.equal(valueOf(after, 'http_requests_total', apiMeOk));
  });

  it('counts auth_events_total by audit event: registered, signed_in, sign_in_failed', async () => {
    const before = await read();
    const agent = browser(t.server);
    const username = await registerUser(agent);
    const signIn = browser(t.server);
    expect((await loginUser(signIn, username, `wrong ${STRONG_PASSWORD}`)).status).to.equal(401);
    expect((await loginUser(signIn, username)).status).to.equal(302);
    const after = await read();
    const delta = (event: string) => valueOf(after, 'auth_events_total', { event }) - valueOf(before, 'auth_events_total', { event });
    expect(delta('registered')).to.equal(1);
    expect(delta('sign_in_failed')).to.equal(1);
    expect(delta('signed_in')).to.equal(1);
    // Every audit event name has its series from the start.
    expect(valueOf(before, 'auth_events_total', { event: 'password_reset' })).to.equal(0);
    expect(samples(before).filter((s) => s.name === 'auth_events_total').length).to.be.greaterThan(20);
  });

  it('counts tokens_minted_total once per mint', async () => {
    const { agent } = await userWithToken(t.server);
    const before = valueOf(await read(), 'tokens_minted_total');
    await agent.get('/auth/token').expect(200);
    await agent.get('/auth/token').expect(200);
    expect(valueOf(await read(), 'tokens_minted_total') - before).to.equal(2);
  });

  it('counts token_verifications_total by result: valid, invalid, expired, revoked', async () => {
    const { agent, token } = await userWithToken(t.server);
    const expired = new TokenService(t.config.jwt, () => Date.now() - 7 * 3600_000).mint(
      { id: 1, username: 'nobody', roles: [], disabled: false, createdAt: new Date(0), tokensValidAfter: null },
      'sid-x',
    ).token;
    const before = await read();
    const call = (bearer: string, status: number) => request(t.server).get('/api/me').set('Authorization', `Bearer ${bearer}`).expect(status);
    await call(token, 200);
    await call(token, 200);
    await call(`${token.slice(0, -4)}AAAA`, 401);
    await call('not.a.jwt', 401);
    await call(expired, 401);
    const _csrf = await formToken(agent, '/');
    await agent.post('/auth/logout').type('form').send({ _csrf }).expect(302);
    await call(token, 401);
    const after = await read();
    const delta = (result: string) => valueOf(after, 'token_verifications_total', { result }) - valueOf(before, 'token_verifications_total', { result });
    expect({ valid: delta('valid'), invalid: delta('invalid'), expired: delta('expired'), revoked: delta('revoked'), error: delta('error') }).to.deep.equal({
      valid: 2,
      invalid: 2,
      expired: 1,
      revoked: 1,
      error: 0,
    });
  });

  it('labels requests with route patterns, never the ids, tokens and paths asked for', async () => {
    const { agent, username, token } = await userWithToken(t.server);
    await request(t.server).get('/api/me').set('Authorization', `Bearer ${token}`).expect(200);
    const [sessionId, resetToken, path1, path2] = [random(), random(), random(), random()];
    const _csrf = await formToken(agent, '/account');
    const revoke = await agent.post(`/account/sessions/${sessionId}/revoke`).type('form').send({ _csrf });
    const reset = await request(t.server).get(`/auth/reset/${resetToken}`);
    // Express matches paths case-insensitively: the label is still the pattern.
    await request(t.server).get(`/AUTH/RESET/${resetToken}x`);
    const missing = await request(t.server).get(`/no/such/${path1}?q=${path2}`).expect(404);
    // An error inside a router mounted at /auth (no CSRF token: 403) keeps the mount path in its label.
    await request(t.server).post('/auth/login').type('form').send({ username: 'x', password: 'y' }).expect(403);

    const text = await reaching(read, 'http_requests_total', { method: 'POST', route: '/auth/login', status: '403' }, 1);
    expect(valueOf(text, 'http_requests_total', { method: 'POST', route: '/account/sessions/:id/revoke', status: String(revoke.status) })).to.equal(1);
    expect(valueOf(text, 'http_requests_total', { method: 'GET', route: '/auth/reset/:token', status: String(reset.status) })).to.equal(2);
    expect(valueOf(text, 'http_requests_total', { method: 'GET', route: 'unmatched', status: String(missing.status) })).to.be.at.least(1);
    const routes = new Set(samples(text).filter((s) => s.name === 'http_requests_total').map((s) => s.labels.route));
    for (const route of routes) expect(route === 'unmatched' || route!.startsWith('/'), route).to.equal(true);
    expect([...routes]).to.not.include('/login');
    for (const secret of [sessionId, resetToken, path1, path2, username, username.toLowerCase(), token, token.split('.')[1]!, '127.0.0.1', '::ffff:']) {
      expect(text, secret).to.not.include(secret);
    }
  });

  it('has the process metrics: CPU, memory, event-loop lag, GC', async () => {
    const text = await read();
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds']) {
      expect(samples(text).some((s) => s.name === name), name).to.equal(true);
    }
    expect(text).to.include('# TYPE nodejs_gc_duration_seconds histogram');
  });

  it('has the pool gauges on PostgreSQL (size, available, using, waiting, max), none on SQLite', async () => {
    const text = await read();
    const names = ['db_pool_size', 'db_pool_available', 'db_pool_using', 'db_pool_waiting', 'db_pool_max'];
    if (t.database.dialect === 'postgres') {
      for (const name of names) expect(samples(text).filter((s) => s.name === name), name).to.have.length(1);
      expect(valueOf(text, 'db_pool_max')).to.equal(t.config.databasePoolMax);
      // Between requests nothing waits, and every open connection is either lent out or idle.
      expect(valueOf(text, 'db_pool_waiting')).to.equal(0);
      expect(valueOf(text, 'db_pool_size')).to.equal(valueOf(text, 'db_pool_available') + valueOf(text, 'db_pool_using'));
      expect(valueOf(text, 'db_pool_size')).to.be.at.least(1);
    } else {
      for (const name of names) expect(text, name).to.not.include(name);
    }
  });

  it('keeps each app in its own registry: another app’s traffic is not counted here, nor in prom-client’s global one', async () => {
    const other = new Metrics({ processMetrics: false });
    const second = await startTestApp({ metrics: other });
    try {
      const mine = valueOf(await read(), 'http_requests_total', { method: 'GET', route: '/healthz', status: '200' });
      await request(second.server).get('/healthz').expect(200);
      await request(second.server).get('/healthz').expect(200);
      const theirs = await reaching(() => other.text(), 'http_requests_total', { method: 'GET', route: '/healthz', status: '200' }, 2);
      expect(valueOf(theirs, 'http_requests_total', { method: 'GET', route: '/healthz', status: '200' })).to.equal(2);
      expect(valueOf(await read(), 'http_requests_total', { method: 'GET', route: '/healthz', status: '200' })).to.equal(mine);
      expect(await globalRegistry.metrics()).to.not.include('http_requests_total');
      expect(theirs).to.not.include('process_cpu');
    } finally {
      await second.close();
    }
  });

  it('serves them on a listener of its own: GET and HEAD /metrics, 404 elsewhere, 405 for other methods', async () => {
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, metrics);
    try {
      const res = await request(server).get('/metrics').expect(200);
      expect(res.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
      expect(res.headers['cache-control']).to.equal('no-store');
      expect(res.text).to.include('# TYPE http_requests_total counter');
      expect(res.text).to.include('# TYPE token_verifications_total counter');
      await request(server).head('/metrics').expect(200);
      await request(server).get('/metrics?x=1').expect(200);
      await request(server).get('/').expect(404);
      await request(server).get('/metrics/x').expect(404);
      const post = await request(server).post('/metrics').expect(405);
      expect(post.headers.allow).to.equal('GET, HEAD');
      // And the app itself has no /metrics.
      await request(t.server).get('/metrics').expect(404);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('METRICS_PORT and METRICS_HOST (config)', () => {
  const base = { JWT_SECRET_KEY: randomSecret(), SESSION_SECRET: randomSecret() };
  const refusal = (env: Record<string, string>): string => configRefusal({ ...base, ...env })?.message ?? 'accepted';

  it('is off when unset, and listens on 127.0.0.1 by default when set', () => {
    expect(loadConfig(base).metrics).to.equal(null);
    expect(loadConfig({ ...base, METRICS_PORT: '' }).metrics).to.equal(null);
    expect(loadConfig({ ...base, METRICS_PORT: '9464' }).metrics).to.deep.equal({ port: 9464, host: '127.0.0.1' });
    for (const host of ['0.0.0.0', '::1', '10.1.2.3', 'metrics.internal', 'localhost']) {
      expect(loadConfig({ ...base, METRICS_PORT: '9464', METRICS_HOST: host }).metrics).to.deep.equal({ port: 9464, host });
    }
    // 0 picks a free port for each listener: with PORT=0 too they never collide.
    expect(loadConfig({ ...base, PORT: '0', METRICS_PORT: '0' }).metrics).to.deep.equal({ port: 0, host: '127.0.0.1' });
  });

  it('refuses a bad port, the app port, and a bad host, naming the variable', () => {
    for (const value of ['abc', '-1', '65536', '1.5', '9464 ', '0x10']) expect(refusal({ METRICS_PORT: value }), value).to.match(/^METRICS_PORT: must be a port number/);
    expect(refusal({ PORT: '3000', METRICS_PORT: '3000' })).to.equal('METRICS_PORT: must differ from PORT (metrics are never served on the app port)');
    expect(refusal({ METRICS_PORT: '3000' }), 'PORT defaults to 3000').to.match(/^METRICS_PORT: must differ from PORT/);
    for (const value of ['a b', 'http://x', 'host/path', '-x.example']) expect(refusal({ METRICS_PORT: '9464', METRICS_HOST: value }), value).to.match(/^METRICS_HOST: /);
  });
});

/** The TCP ports `pid` listens on, with their local address (from /proc: the sockets among its open files). */
function listeningSockets(pid: number): Array<{ address: string; port: number }> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1));
    } catch {
      // closed meanwhile
    }
  }
  const found: Array<{ address: string; port: number }> = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A' || !inodes.has(cols[9]!)) continue;
      const [hex, port] = cols[1]!.split(':');
      const address = hex === '0100007F' ? '127.0.0.1' : /^0+$/.test(hex!) ? 'any' : hex!;
      found.push({ address, port: parseInt(port!, 16) });
    }
  }
  return found.sort((a, b) => a.port - b.port);
}

/** The port of the "metrics at …" line, once logged. */
function loggedMetricsPort(server: ServerProcess): number | undefined {
  const line = server.logLines().find((l) => typeof l.metricsPort === 'number');
  return line?.metricsPort as number | undefined;
}

function scrape(port: number): Promise<{ status: number; text: string }> {
  return fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(20_000) }).then(async (res) => ({ status: res.status, text: await res.text() }));
}

describe('the metrics listener of a server process', function () {
  this.timeout(90_000);
  this.slow(8_000);
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let app: Instances;
  let server: ServerProcess;
  let metricsPort: number;

  before(async () => {
    db = await freshDatabase();
    app = await startInstances(1, { DATABASE_URL: db.url, METRICS_PORT: '0' });
    server = app.servers[0]!;
    metricsPort = loggedMetricsPort(server)!;
  });
  after(async () => {
    await app?.stopAll();
    await db?.cleanup();
  });

  it('answers GET /metrics on METRICS_PORT (bound to 127.0.0.1) with the contract series after traffic; PORT has no /metrics', async () => {
    expect(metricsPort).to.be.a('number').and.not.equal(server.port);
    expect(listeningSockets(server.child.pid!).find((s) => s.port === metricsPort)?.address).to.equal('127.0.0.1');
    const user = new RemoteBrowser();
    const username = uniqueName('metrics');
    expect((await user.register(server.baseUrl, username)).status).to.equal(302);
    const token = await user.token(server.baseUrl);
    for (let i = 0; i < 3; i += 1) expect((await fetch(`${server.baseUrl}/api/me`, { headers: { Authorization: `Bearer ${token}` } })).status).to.equal(200);
    expect((await fetch(`${server.baseUrl}/api/me`, { headers: { Authorization: 'Bearer nope' } })).status).to.equal(401);
    expect((await fetch(`${server.baseUrl}/metrics`)).status).to.equal(404);

    const text = await reaching(async () => (await scrape(metricsPort)).text, 'http_requests_total', apiMeOk, 3);
    expect(valueOf(text, 'http_requests_total', apiMeOk)).to.equal(3);
    expect(valueOf(text, 'http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).to.equal(1);
    expect(valueOf(text, 'http_request_duration_seconds_count', apiMeOk)).to.equal(3);
    expect(valueOf(text, 'auth_events_total', { event: 'registered' })).to.equal(1);
    expect(valueOf(text, 'auth_events_total', { event: 'token_minted' })).to.equal(1);
    expect(valueOf(text, 'tokens_minted_total')).to.equal(1);
    expect(valueOf(text, 'token_verifications_total', { result: 'valid' })).to.equal(3);
    expect(valueOf(text, 'token_verifications_total', { result: 'invalid' })).to.equal(1);
    expect(samples(text).some((s) => s.name === 'process_cpu_seconds_total')).to.equal(true);
    expect(samples(text).some((s) => s.name === 'db_pool_size')).to.equal(db.dialect === 'postgres');
    expect(text).to.not.include(username.toLowerCase());
    expect(text).to.not.include(token);
  });

  it('listens on exactly two ports with METRICS_PORT set, and on PORT alone without it', async () => {
    expect(listeningSockets(server.child.pid!).map((s) => s.port)).to.deep.equal([server.port, metricsPort].sort((a, b) => a - b));
    const other = await startInstances(1, { DATABASE_URL: db.url });
    const plain = other.servers[0]!;
    try {
      expect(listeningSockets(plain.child.pid!).map((s) => s.port)).to.deep.equal([plain.port]);
      expect(plain.logLines().some((l) => 'metricsPort' in l || String(l.msg).startsWith('metrics'))).to.equal(false);
      expect((await fetch(`${plain.baseUrl}/metrics`)).status).to.equal(404);
    } finally {
      await other.stopAll();
    }
  });

  it('stops the start with one line for a bad METRICS_PORT, the app port, or a port in use', async () => {
    const env = app.envs[0]!;
    const bad = await runUntilExit({ ...env, METRICS_PORT: 'ninety' });
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.equal('config error: METRICS_PORT: must be a port number from 0 to 65535\n');
    const same = await runUntilExit({ ...env, PORT: '39999', METRICS_PORT: '39999' });
    expect(same.code).to.equal(1);
    expect(same.stderr).to.equal('config error: METRICS_PORT: must differ from PORT (metrics are never served on the app port)\n');
    const taken = await runUntilExit({ ...env, PORT: '0', METRICS_PORT: String(metricsPort) });
    expect(taken.code).to.equal(1);
    expect(taken.stderr).to.match(/^metrics server error: listen EADDRINUSE[^\n]*\n$/);
  });
});

/** One GET on a connection of its own: node:cluster hands each new connection to the next worker. Resolves with the pid that answered. */
async function getOnNewConnection(server: ServerProcess, urlPath: string): Promise<number> {
  const id = await new Promise<string>((resolve, reject) => {
    const req = httpRequest(`${server.baseUrl}${urlPath}`, { agent: false, headers: { Connection: 'close' }, timeout: 20_000 }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(String(res.headers['x-request-id'])) : reject(new Error(`GET ${urlPath}: ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
  const line = () => server.logLines().find((l) => (l.req as { id?: string } | undefined)?.id === id);
  await waitUntil(async () => line() !== undefined, 5_000, 20);
  return line()!.pid as number;
}

describe('metrics with WEB_CONCURRENCY=2', function () {
  this.timeout(90_000);
  this.slow(10_000);
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let app: Instances;
  let server: ServerProcess;

  before(async () => {
    db = await freshDatabase();
    app = await startInstances(1, { DATABASE_URL: db.url, WEB_CONCURRENCY: '2', METRICS_PORT: '0' });
    server = app.servers[0]!;
    await waitUntil(async () => server.logLines().filter((l) => String(l.msg).startsWith('listening')).length >= 2, 30_000);
  });
  after(async () => {
    await app?.stopAll();
    await db?.cleanup();
  });

  it('the primary serves the sum of both workers’ counts', async () => {
    const metricsLine = server.logLines().find((l) => typeof l.metricsPort === 'number')!;
    expect(metricsLine.worker, 'the primary serves metrics').to.equal(undefined);
    const port = metricsLine.metricsPort as number;
    const workers = server.logLines().filter((l) => String(l.msg).startsWith('listening')).map((l) => l.pid as number);
    expect(new Set(workers).size).to.equal(2);
    // The primary listens on the metrics port, neither worker does.
    expect(listeningSockets(server.child.pid!).map((s) => s.port)).to.include(port);
    for (const pid of workers) expect(listeningSockets(pid).map((s) => s.port)).to.not.include(port);

    const served: number[] = [];
    while (served.length < 10 || !workers.every((pid) => served.includes(pid))) {
      if (served.length >= 30) throw new Error(`30 requests did not reach both workers: ${served.join(',')}`);
      served.push(await getOnNewConnection(server, '/healthz'));
    }
    const perWorker = workers.map((pid) => served.filter((p) => p === pid).length);
    expect(Math.min(...perWorker), 'each worker served some').to.be.at.least(1);

    const healthz = { method: 'GET', route: '/healthz', status: '200' };
    const text = await reaching(
      async () => {
        const res = await scrape(port);
        return res.status === 200 ? res.text : '';
      },
      'http_requests_total',
      healthz,
      served.length,
    );
    expect(valueOf(text, 'http_requests_total', healthz), `served by workers ${perWorker.join(' + ')}`).to.equal(served.length);
    expect(valueOf(text, 'http_request_duration_seconds_count', healthz)).to.equal(served.length);
    expect(samples(text).some((s) => s.name === 'process_cpu_seconds_total')).to.equal(true);
  });
});
