import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { QueryTypes } from 'sequelize';
import sqlite3 from 'sqlite3';
import { ConfigError } from '../config.js';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { IDLE_GRACE_MS, Maintenance, type PruneSettings } from '../services/maintenance.js';
import { freshDatabase, startTestApp, testConfig, type TestApp } from './helpers/app.js';
import { randomSecret, startServer, tempDir, type ServerProcess } from './helpers/process.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The defaults: AUDIT_RETENTION=90d, SESSION_IDLE_TIMEOUT=2h. */
const SETTINGS: PruneSettings = { auditRetentionMs: 90 * DAY, sessionIdleTimeoutMs: 2 * HOUR };

const DEAD_REVOCATION = '00000000-0000-4000-8000-00000000dead';
const LIVE_REVOCATION = '00000000-0000-4000-8000-00000000a11e';

/** What is left in the five pruned tables: audit usernames, revocation ids, counter keys, session ids, reset-link hashes. */
interface Rows {
  auditEvents: string[];
  revocations: string[];
  rateLimits: string[];
  sessions: string[];
  passwordResets: string[];
}

const LIVE: Rows = {
  auditEvents: ['live-event'],
  revocations: [LIVE_REVOCATION],
  rateLimits: ['live-counter', 'lasting-counter'].sort(),
  sessions: ['live-anonymous', 'live-signed-in'],
  passwordResets: ['live-link'],
};
const DEAD: Rows = {
  auditEvents: ['dead-event'],
  revocations: [DEAD_REVOCATION],
  rateLimits: ['dead-counter'],
  sessions: ['dead-expired', 'dead-idle'],
  passwordResets: ['dead-link'],
};
const SEEDED: Rows = {
  auditEvents: [...DEAD.auditEvents, ...LIVE.auditEvents].sort(),
  revocations: [...DEAD.revocations, ...LIVE.revocations].sort(),
  rateLimits: [...DEAD.rateLimits, ...LIVE.rateLimits].sort(),
  sessions: [...DEAD.sessions, ...LIVE.sessions].sort(),
  passwordResets: [...DEAD.passwordResets, ...LIVE.passwordResets].sort(),
};

/**
 * One dead and one live row of each kind, as of `now` with the default
 * settings: an audit event of 100 days and one of a day; a revocation expired
 * a minute ago and one that lasts an hour; an expired counter, one that lasts
 * an hour and one without expiry; a signed-in session whose cookie expired, one
 * idle for 3 h, one seen a minute ago and an anonymous one (never seen).
 */
async function seed(database: Database, now: number): Promise<void> {
  const user = await database.users.create({ username: 'keeper', usernameKey: 'keeper', passwordHash: 'x' });
  const event = { event: 'signed_in' as const, userId: user.id, ip: null, userAgent: null, detail: null };
  await database.auditEvents.bulkCreate([
    { ...event, at: new Date(now - 100 * DAY), username: 'dead-event' },
    { ...event, at: new Date(now - DAY), username: 'live-event' },
  ]);
  await database.sessionRevocations.bulkCreate([
    { publicId: DEAD_REVOCATION, userId: user.id, revokedAt: new Date(now - 7 * HOUR), expiresAt: new Date(now - MINUTE) },
    { publicId: LIVE_REVOCATION, userId: user.id, revokedAt: new Date(now - 5 * HOUR), expiresAt: new Date(now + HOUR) },
  ]);
  await database.sequelize.query(
    "INSERT INTO rate_limits (rl_key, points, expire) VALUES ('dead-counter', 1, :past), ('live-counter', 1, :future), ('lasting-counter', 1, NULL)",
    { replacements: { past: now - 1000, future: now + HOUR } },
  );
  const signedIn = (sid: string, n: number, expires: number, lastSeen: number) => ({
    sid,
    expires: new Date(expires),
    data: '{}',
    userId: user.id,
    publicId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    lastSeenAt: new Date(lastSeen),
  });
  await database.sessions.bulkCreate([
    signedIn('dead-expired', 1, now - MINUTE, now - 5 * MINUTE),
    signedIn('dead-idle', 2, now + 9 * HOUR, now - 3 * HOUR),
    signedIn('live-signed-in', 3, now + 9 * HOUR, now - MINUTE),
    { sid: 'live-anonymous', expires: new Date(now + 9 * HOUR), data: '{}' },
  ]);
  await database.passwordResets.bulkCreate([
    { tokenHash: 'dead-link', userId: user.id, createdAt: new Date(now - HOUR), expiresAt: new Date(now - 30 * MINUTE), usedAt: null },
    { tokenHash: 'live-link', userId: user.id, createdAt: new Date(now - MINUTE), expiresAt: new Date(now + 29 * MINUTE), usedAt: null },
  ]);
}

async function remaining(database: Database): Promise<Rows> {
  const column = async (sql: string) => (await database.sequelize.query<{ v: string }>(sql, { type: QueryTypes.SELECT })).map((r) => r.v).sort();
  return {
    auditEvents: await column('SELECT username AS v FROM audit_events'),
    revocations: await column('SELECT public_id AS v FROM session_revocations'),
    rateLimits: await column('SELECT rl_key AS v FROM rate_limits'),
    sessions: await column('SELECT sid AS v FROM sessions'),
    passwordResets: await column('SELECT token_hash AS v FROM password_resets'),
  };
}

/** `count` audit events older than the retention, inserted in one statement. */
async function seedOldEvents(database: Database, count: number, now: number): Promise<void> {
  await database.auditEvents.bulkCreate(
    Array.from({ length: count }, (_, i) => ({
      at: new Date(now - 100 * DAY - i * 1000),
      event: 'signed_in' as const,
      userId: null,
      username: `old-${i}`,
      ip: null,
      userAgent: null,
      detail: null,
    })),
  );
}

/**
 * Counts the statements matching `pattern` that the database runs while `fn`
 * runs (through Sequelize's logging option, called as each is sent), calling
 * `onMatch` as each one goes out.
 */
async function countingStatements<T>(
  database: Database,
  pattern: RegExp,
  fn: () => Promise<T>,
  onMatch: () => void = () => undefined,
): Promise<{ result: T; statements: number }> {
  const { options } = database.sequelize as unknown as { options: { logging: false | ((sql: string) => void) } };
  let statements = 0;
  options.logging = (sql: string) => {
    if (!pattern.test(sql)) return;
    statements += 1;
    onMatch();
  };
  try {
    const result = await fn();
    return { result, statements };
  } finally {
    options.logging = false;
  }
}

async function pollUntil(probe: () => Promise<boolean>, withinMs: number, what: string): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('maintenance settings (MAINTENANCE_FIRST_DELAY, MAINTENANCE_INTERVAL)', () => {
  it('default to a first pass 5 s after start-up and one an hour after each', () => {
    expect(testConfig().maintenance).to.deep.equal({ firstDelayMs: 5_000, intervalMs: HOUR });
    expect(testConfig({ MAINTENANCE_FIRST_DELAY: '30s', MAINTENANCE_INTERVAL: '15m' }).maintenance).to.deep.equal({ firstDelayMs: 30_000, intervalMs: 15 * MINUTE });
  });

  it('refuse a value that is not a duration of at least a second, naming the variable', () => {
    for (const variable of ['MAINTENANCE_FIRST_DELAY', 'MAINTENANCE_INTERVAL']) {
      for (const value of ['soon', '10ms', '-1']) {
        expect(() => testConfig({ [variable]: value }), `${variable}=${value}`).to.throw(ConfigError).with.property('variable', variable);
      }
    }
  });
});

describe('maintenance pass (pruning)', function () {
  this.timeout(30_000);

  let t: TestApp;
  let db: Database;
  beforeEach(async () => {
    t = await startTestApp();
    db = t.database;
  });
  afterEach(() => t?.close());

  it('deletes exactly the dead rows of each table and keeps the live ones', async () => {
    const now = Date.now();
    await seed(db, now);
    expect(await remaining(db)).to.deep.equal(SEEDED);
    const result = await new Maintenance(db, SETTINGS, () => now).prune();
    expect(result).to.deep.equal({ auditEvents: 1, revocations: 1, rateLimits: 1, sessions: 2, passwordResets: 1, complete: true });
    expect(await remaining(db)).to.deep.equal(LIVE);
  });

  it('judges by its injected clock: three hours later the signed-in session, the revocation, the counter and the reset link are dead too', async () => {
    const clock = { now: Date.now() };
    await seed(db, clock.now);
    const maintenance = new Maintenance(db, SETTINGS, () => clock.now);
    await maintenance.prune();
    clock.now += 3 * HOUR;
    expect(await maintenance.prune()).to.deep.equal({ auditEvents: 0, revocations: 1, rateLimits: 1, sessions: 1, passwordResets: 1, complete: true });
    expect(await remaining(db)).to.deep.equal({
      auditEvents: ['live-event'],
      revocations: [],
      rateLimits: ['lasting-counter'],
      sessions: ['live-anonymous'],
      passwordResets: [],
    });
  });

  it('keeps a session idle just under SESSION_IDLE_TIMEOUT plus the grace, deletes one just over it', async () => {
    const now = Date.now();
    const limit = SETTINGS.sessionIdleTimeoutMs + IDLE_GRACE_MS;
    await db.sessions.bulkCreate([
      { sid: 'under', expires: new Date(now + HOUR), data: '{}', lastSeenAt: new Date(now - limit + 1000) },
      { sid: 'over', expires: new Date(now + HOUR), data: '{}', lastSeenAt: new Date(now - limit - 1000) },
    ]);
    expect(await new Maintenance(db, SETTINGS, () => now).prune()).to.include({ sessions: 1 });
    expect((await remaining(db)).sessions).to.deep.equal(['under']);
  });

  it('deletes a backlog in batches: 25 old events with batches of 10 take three DELETEs and all go', async () => {
    const now = Date.now();
    await seedOldEvents(db, 25, now);
    const { result, statements } = await countingStatements(db, /DELETE FROM audit_events/, () => new Maintenance(db, SETTINGS, () => now, 10).prune());
    expect(result.auditEvents).to.equal(25);
    expect(statements).to.equal(3);
    expect(await db.auditEvents.count()).to.equal(0);
  });

  it('stops between batches once told to, reporting the pass incomplete', async () => {
    const now = Date.now();
    await seed(db, now);
    await seedOldEvents(db, 25, now);
    const stop = new AbortController();
    const maintenance = new Maintenance(db, SETTINGS, () => now, 10);
    // Told to stop as its first DELETE goes out.
    const { result, statements } = await countingStatements(db, /DELETE FROM/, () => maintenance.prune(stop.signal), () => stop.abort());
    expect(statements).to.equal(1);
    expect(result).to.deep.equal({ auditEvents: 10, revocations: 0, rateLimits: 0, sessions: 0, passwordResets: 0, complete: false });
    expect(await db.auditEvents.count(), "27 seeded, one batch gone").to.equal(27 - 10);
    expect((await remaining(db)).revocations).to.deep.equal(SEEDED.revocations);
  });

  it('two passes at once (two instances) delete every dead row exactly once, without errors', async () => {
    const now = Date.now();
    await seed(db, now);
    await seedOldEvents(db, 2_500, now);
    // On PostgreSQL a second connection pool, as another instance would have.
    const other = db.dialect === 'postgres' ? await openDatabase(db.url) : db;
    try {
      const [a, b] = await Promise.all([
        new Maintenance(db, SETTINGS, () => now, 100).prune(),
        new Maintenance(other, SETTINGS, () => now, 100).prune(),
      ]);
      expect(a.auditEvents + b.auditEvents).to.equal(2_501);
      expect(a.sessions + b.sessions).to.equal(2);
      expect(a.revocations + b.revocations).to.equal(1);
      expect(a.rateLimits + b.rateLimits).to.equal(1);
      expect(a.passwordResets + b.passwordResets).to.equal(1);
      expect(await remaining(db)).to.deep.equal(LIVE);
    } finally {
      if (other !== db) await other.close();
    }
  });

  it('skips rows another connection holds instead of waiting for them, and deletes them on the next pass (PostgreSQL)', async function () {
    if (db.dialect !== 'postgres') return this.skip(); // row locks: PostgreSQL only (run with TEST_DATABASE_URL)
    const now = Date.now();
    await seed(db, now);
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("SELECT sid FROM sessions WHERE sid = 'dead-idle' FOR UPDATE");
      const start = Date.now();
      const result = await new Maintenance(db, SETTINGS, () => now).prune();
      expect(Date.now() - start, 'the pass waited for the lock').to.be.below(2_000);
      expect(result).to.deep.equal({ auditEvents: 1, revocations: 1, rateLimits: 1, sessions: 1, passwordResets: 1, complete: true });
      expect((await remaining(db)).sessions).to.deep.equal(['dead-idle', ...LIVE.sessions]);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect(await new Maintenance(db, SETTINGS, () => now).prune()).to.include({ sessions: 1 });
    expect(await remaining(db)).to.deep.equal(LIVE);
  });
});

describe('maintenance in the server process', function () {
  this.timeout(90_000);
  this.slow(10_000);

  let target: Awaited<ReturnType<typeof freshDatabase>>;
  let tmp: ReturnType<typeof tempDir>;
  let server: ServerProcess | undefined;
  let database: Database;

  /** A fresh database (SQLite file, or PostgreSQL in the PostgreSQL run), migrated and seeded. */
  beforeEach(async () => {
    target = await freshDatabase();
    tmp = tempDir();
    writeFileSync(path.join(tmp.dir, '.env'), '');
    database = await openDatabase(target.url);
    await migrateUp(database);
    await seed(database, Date.now());
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    await database?.close();
    tmp?.cleanup();
    await target?.cleanup();
  });

  const launch = (env: Record<string, string>) =>
    startServer({
      ENV_FILE: path.join(tmp.dir, '.env'),
      DATABASE_URL: target.url,
      JWT_SECRET_KEY: randomSecret(),
      SESSION_SECRET: randomSecret(),
      ...env,
    });
  const passLines = (s: ServerProcess) => s.logLines().filter((l) => String(l.msg).startsWith('maintenance pass'));
  const deadRowsGone = async () => JSON.stringify(await remaining(database)) === JSON.stringify(LIVE);

  it('prunes exactly the dead rows shortly after start-up, logs one line with the counts, and exits 0 on SIGTERM', async () => {
    server = await launch({ MAINTENANCE_FIRST_DELAY: '1s' });
    await pollUntil(deadRowsGone, 20_000, 'the dead rows gone');
    expect(await remaining(database)).to.deep.equal(LIVE);
    await pollUntil(async () => passLines(server!).length > 0, 5_000, 'the pass line');
    const [line, ...more] = passLines(server);
    expect(more).to.deep.equal([]);
    expect(line).to.include({ msg: 'maintenance pass', level: 30 });
    expect(line!.deleted).to.deep.equal({ auditEvents: 1, revocations: 1, rateLimits: 1, sessions: 2, passwordResets: 1 });
    const exit = await server.stop();
    expect(exit).to.deep.equal({ code: 0, signal: null });
    expect(server.logLines().at(-1)).to.include({ msg: 'stopped' });
    expect(server.stderr()).to.equal('');
  });

  it('with WEB_CONCURRENCY=2 only the primary runs the passes: one line per pass, none from a worker', async () => {
    server = await launch({ WEB_CONCURRENCY: '2', MAINTENANCE_FIRST_DELAY: '1s', MAINTENANCE_INTERVAL: '1s' });
    const s = server;
    await pollUntil(async () => s.logLines().filter((l) => String(l.msg).startsWith('listening')).length === 2, 30_000, 'both workers listening');
    const workersUp = Math.max(...s.logLines().filter((l) => String(l.msg).startsWith('listening')).map((l) => Number(l.time)));
    // A worker running passes would have logged its first one MAINTENANCE_FIRST_DELAY after it listened.
    await pollUntil(async () => passLines(s).some((l) => Number(l.time) > workersUp + 1_500), 20_000, 'a pass 1.5 s after the workers listened');
    const lines = passLines(s);
    expect(lines.length).to.be.at.least(2);
    expect(lines.filter((l) => l.worker !== undefined || l.pid !== undefined)).to.deep.equal([]);
    // Passes follow each other (never overlapping), about MAINTENANCE_INTERVAL apart.
    const times = lines.map((l) => Number(l.time));
    for (let i = 1; i < times.length; i += 1) expect(times[i]! - times[i - 1]!).to.be.at.least(900);
    expect(lines[0]!.deleted).to.deep.equal({ auditEvents: 1, revocations: 1, rateLimits: 1, sessions: 2, passwordResets: 1 });
    for (const l of lines.slice(1)) expect(l.deleted).to.deep.equal({ auditEvents: 0, revocations: 0, rateLimits: 0, sessions: 0, passwordResets: 0 });
    expect(await remaining(database)).to.deep.equal(LIVE);
    expect(await s.stop()).to.deep.equal({ code: 0, signal: null });
    expect(s.logLines().at(-1)).to.include({ msg: 'stopped' });
    expect(s.stderr()).to.equal('');
  });

  it('SIGTERM during a pass: the pass stops after its statement in flight, then the database closes and the process exits 0', async () => {
    server = await launch({ MAINTENANCE_FIRST_DELAY: '3s', LOG_LEVEL: 'debug' });
    const s = server;
    // Another connection holds the lock the pass's first DELETE (audit_events) needs.
    const release = await holdWriteLock(target);
    let released = false;
    try {
      await pollUntil(async () => s.logLines().some((l) => l.msg === 'maintenance pass started'), 10_000, 'the pass started');
      if (target.dialect === 'postgres') {
        await pollUntil(async () => (await waitingDeletes(database)) > 0, 10_000, 'the DELETE waiting for the lock');
      }
      s.child.kill('SIGTERM');
      await pollUntil(async () => s.logLines().some((l) => l.msg === 'shutting down'), 10_000, 'shutting down');
      expect(s.child.exitCode, 'exited while its pass was still running').to.equal(null);
      released = true;
      await release();
    } finally {
      if (!released) await release();
    }
    const exit = await s.exited;
    expect(exit).to.deep.equal({ code: 0, signal: null });
    const msgs = s.logLines().map((l) => String(l.msg));
    expect(msgs.indexOf('maintenance pass stopped early')).to.be.above(msgs.indexOf('shutting down'));
    expect(msgs.at(-1)).to.equal('stopped');
    const line = s.logLines().find((l) => l.msg === 'maintenance pass stopped early')!;
    expect(line.deleted).to.deep.equal({ auditEvents: 1, revocations: 0, rateLimits: 0, sessions: 0, passwordResets: 0 });
    // The statement in flight finished; nothing after it ran.
    expect(await remaining(database)).to.deep.equal({ ...SEEDED, auditEvents: LIVE.auditEvents });
    expect(s.stderr()).to.equal('');
  });
});

/**
 * Takes a lock from another connection that the pass's first DELETE must wait
 * for: SQLite's write lock (BEGIN IMMEDIATE), or on PostgreSQL an exclusive
 * lock on audit_events. Resolves with the function that releases it.
 */
async function holdWriteLock(target: { url: string; dialect: 'sqlite' | 'postgres' }): Promise<() => Promise<void>> {
  if (target.dialect === 'postgres') {
    const client = new pg.Client({ connectionString: target.url });
    await client.connect();
    await client.query('BEGIN');
    await client.query('LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE');
    return async () => {
      await client.query('ROLLBACK');
      await client.end();
    };
  }
  const file = target.url.slice('sqlite:'.length);
  const handle = await new Promise<sqlite3.Database>((resolve, reject) => {
    const opened = new sqlite3.Database(file, (err) => (err ? reject(err) : resolve(opened)));
  });
  handle.configure('busyTimeout', 10_000);
  await new Promise<void>((resolve, reject) => handle.exec('BEGIN IMMEDIATE', (err) => (err ? reject(err) : resolve())));
  return async () => {
    await new Promise<void>((resolve, reject) => handle.exec('ROLLBACK', (err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve, reject) => handle.close((err) => (err ? reject(err) : resolve())));
  };
}

/** PostgreSQL: how many DELETEs on audit_events wait for a lock. */
async function waitingDeletes(database: Database): Promise<number> {
  const [row] = await database.sequelize.query<{ n: string }>(
    "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM audit_events%'",
    { type: QueryTypes.SELECT },
  );
  return Number(row!.n);
}
