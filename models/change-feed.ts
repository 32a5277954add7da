import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { QueryTypes, type Sequelize } from 'sequelize';

/**
 * What one instance tells the others so they drop cached answers at once:
 * a user's state or sessions changed (revocation, disable, roles, password),
 * the signing key set changed, or — after the feed was down — anything may
 * have, so drop everything.
 */
export type Change = { kind: 'user'; userId: number } | { kind: 'keys' } | { kind: 'resync' };

export interface ChangeFeed {
  /** Tells every other instance (PostgreSQL `NOTIFY`); nothing to do on SQLite. */
  publish(change: Change): Promise<void>;
  /**
   * Calls `listener` for every change another instance publishes; the first
   * subscriber starts the `LISTEN` connection. `onError` hears of a lost
   * connection (it is reopened by itself).
   */
  subscribe(listener: (change: Change) => void, onError?: (err: unknown, message: string) => void): void;
  /** Whether changes from other instances arrive now (false on SQLite, and while the listener reconnects). */
  readonly connected: boolean;
  close(): Promise<void>;
}

/** The one channel; payloads are small JSON objects (PostgreSQL allows 8,000 bytes). */
export const CHANGE_CHANNEL = 'token_bridge_changes';
/** The listener's application_name, so operators (and tests) can tell its connection apart. */
export const LISTENER_APPLICATION_NAME = 'token-bridge-listen';
const FIRST_RETRY_MS = 250;
const LONGEST_RETRY_MS = 5_000;

/** SQLite: one machine, nothing to push; the cache TTL is the bound. */
export const noChangeFeed: ChangeFeed = {
  publish: async () => undefined,
  subscribe: () => undefined,
  connected: false,
  close: async () => undefined,
};

/** The IPC message type cluster workers and their primary pass changes with. */
const CLUSTER_MESSAGE = 'token-bridge:change';

interface ClusterMessage {
  type: typeof CLUSTER_MESSAGE;
  change: Change;
}

function isClusterMessage(message: unknown): message is ClusterMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === CLUSTER_MESSAGE;
}

/**
 * SQLite under WEB_CONCURRENCY > 1: the workers of one process group tell
 * each other through their primary (node:cluster IPC, see
 * {@link relayClusterChanges}). Changes made by another process (the users
 * CLI) are not heard: for those the cache TTL stays the bound.
 */
export function clusterChangeFeed(): ChangeFeed {
  const listeners: Array<(change: Change) => void> = [];
  let listening = false;
  return {
    async publish(change) {
      if (process.send) process.send({ type: CLUSTER_MESSAGE, change } satisfies ClusterMessage);
    },
    subscribe(listener) {
      listeners.push(listener);
      if (listening) return;
      listening = true;
      process.on('message', (message: unknown) => {
        if (isClusterMessage(message)) for (const l of listeners) l(message.change);
      });
    },
    get connected() {
      return cluster.isWorker && process.connected;
    },
    close: async () => undefined,
  };
}

/** The primary's half of {@link clusterChangeFeed}: a change from one worker goes to every other live worker. */
export function relayClusterChanges(workers: () => Iterable<Worker>): void {
  cluster.on('message', (from: Worker, message: unknown) => {
    if (!isClusterMessage(message)) return;
    for (const worker of workers()) if (worker !== from && worker.isConnected()) worker.send(message);
  });
}

interface Wire {
  /** The instance that published it: its own changes are not delivered back to it. */
  o: string;
  c: Change;
}

function parse(payload: string | undefined): Wire | null {
  try {
    const wire = JSON.parse(payload ?? '') as Partial<Wire>;
    const c = wire.c as Partial<Change> | undefined;
    if (typeof wire.o !== 'string' || !c) return null;
    if (c.kind === 'user' && typeof c.userId === 'number') return { o: wire.o, c: { kind: 'user', userId: c.userId } };
    if (c.kind === 'keys' || c.kind === 'resync') return { o: wire.o, c: { kind: c.kind } };
    return null;
  } catch {
    return null;
  }
}

/**
 * PostgreSQL's LISTEN/NOTIFY as the instances' change feed. Publishing is one
 * `SELECT pg_notify(…)` on the pool. Receiving is a dedicated connection
 * (pooled connections cannot hold a LISTEN), opened on the first subscribe;
 * when it drops (server restart, network, `pg_terminate_backend`) it is
 * opened again with back-off, and once it is back the subscribers get a
 * `resync` — notifications sent while it was down are lost, so everything
 * cached is dropped. Meanwhile the caches' own TTL is the bound.
 */
export class PostgresChangeFeed implements ChangeFeed {
  private readonly origin = randomUUID();
  private readonly listeners: Array<(change: Change) => void> = [];
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = FIRST_RETRY_MS;
  private retryTimer: NodeJS.Timeout | null = null;
  private isConnected = false;

  private onError: (err: unknown, message: string) => void = () => undefined;

  constructor(
    private readonly url: string,
    private readonly sequelize: Sequelize,
  ) {}

  get connected(): boolean {
    return this.isConnected;
  }

  async publish(change: Change): Promise<void> {
    const payload = JSON.stringify({ o: this.origin, c: change } satisfies Wire);
    await this.sequelize.query('SELECT pg_notify(:channel, :payload)', { replacements: { channel: CHANGE_CHANNEL, payload }, type: QueryTypes.SELECT });
  }

  subscribe(listener: (change: Change) => void, onError?: (err: unknown, message: string) => void): void {
    if (onError) this.onError = onError;
    this.listeners.push(listener);
    if (this.listeners.length === 1) void this.connect(false);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    this.isConnected = false;
    await client?.end().catch(() => undefined);
  }

  private async connect(again: boolean): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, application_name: LISTENER_APPLICATION_NAME, connectionTimeoutMillis: 5_000, keepAlive: true });
    let dropped = false;
    const drop = (err?: unknown) => {
      if (dropped) return;
      dropped = true;
      if (this.client === client) this.client = null;
      this.isConnected = false;
      void client.end().catch(() => undefined);
      if (this.closed) return;
      this.onError(err, 'the change feed connection was lost; reconnecting (the cache TTL bounds revocation meanwhile)');
      this.retryTimer = setTimeout(() => void this.connect(true), this.retryMs);
      this.retryTimer.unref();
      this.retryMs = Math.min(this.retryMs * 2, LONGEST_RETRY_MS);
    };
    client.on('error', drop);
    client.on('end', () => drop());
    client.on('notification', (message) => {
      const wire = message.channel === CHANGE_CHANNEL ? parse(message.payload) : null;
      if (wire && wire.o !== this.origin) this.deliver(wire.c);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (err) {
      drop(err);
      return;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.isConnected = true;
    this.retryMs = FIRST_RETRY_MS;
    // Whatever was published while the feed was down never arrives: drop every cached answer.
    if (again) this.deliver({ kind: 'resync' });
  }

  private deliver(change: Change): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.onError(err, 'a change feed subscriber failed');
      }
    }
  }
}
