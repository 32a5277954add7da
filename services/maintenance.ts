import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { QueryTypes } from 'sequelize';
import { systemClock, type Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Database } from '../models/database.js';

/**
 * Most rows one DELETE removes. Each batch is its own short statement, so a
 * large backlog never holds locks for long (on SQLite the file's one write
 * lock, which every request that writes waits for).
 */
export const PRUNE_BATCH_ROWS = 1_000;

/**
 * Extra time a session may sit past its idle limit before it is pruned. A
 * request that read the session just inside the limit saves it (with a new
 * last-seen time) when it ends; deleting the row in between would sign out
 * someone who was just active.
 */
export const IDLE_GRACE_MS = 60_000;

/** What one pass removed, per table. */
export interface PruneCounts {
  auditEvents: number;
  revocations: number;
  rateLimits: number;
  sessions: number;
  passwordResets: number;
}

export interface PruneResult extends PruneCounts {
  /** False when the pass was told to stop and skipped what was left. */
  complete: boolean;
}

/** The settings the pruning rules read (AUDIT_RETENTION, SESSION_IDLE_TIMEOUT). */
export interface PruneSettings {
  auditRetentionMs: number;
  sessionIdleTimeoutMs: number;
}

/** One table's rule: rows matching `where` are dead; `key` is the column a batch selects them by. */
interface Rule {
  count: keyof PruneCounts;
  table: string;
  key: string;
  where: string;
}

/**
 * Dead rows, table by table. A session is dead once its cookie has expired
 * (which covers the absolute lifetime: the cookie's expiry is set at sign-in
 * and never moved) or once it has been idle past the limit; an anonymous
 * session has no last-seen time and waits for its expiry. A counter with no
 * expiry is never dead.
 */
const RULES: readonly Rule[] = [
  { count: 'auditEvents', table: 'audit_events', key: 'id', where: 'at < :auditBefore' },
  { count: 'revocations', table: 'session_revocations', key: 'public_id', where: 'expires_at < :now' },
  { count: 'rateLimits', table: 'rate_limits', key: 'rl_key', where: 'expire < :nowMs' },
  { count: 'sessions', table: 'sessions', key: 'sid', where: 'expires < :now OR last_seen_at < :idleBefore' },
  // A reset link is dead at its expiry, used or not (a used one never works again anyway).
  { count: 'passwordResets', table: 'password_resets', key: 'token_hash', where: 'expires_at < :now' },
];

/**
 * Deletes what has outlived its use: audit events older than
 * `AUDIT_RETENTION`, revocations no token can carry any more, expired
 * rate-limit counters, expired or idle sessions, and expired password-reset links.
 *
 * Safe to run from several instances at once: every statement is an
 * idempotent DELETE of at most {@link PRUNE_BATCH_ROWS} rows, and on
 * PostgreSQL each batch skips rows another instance is deleting at that
 * moment (`FOR UPDATE SKIP LOCKED`) instead of waiting for them.
 */
export class Maintenance {
  constructor(
    private readonly database: Pick<Database, 'sequelize' | 'dialect'>,
    private readonly settings: PruneSettings,
    private readonly now: Clock = systemClock,
    private readonly batchRows = PRUNE_BATCH_ROWS,
  ) {}

  /**
   * One pass over every table. Once `signal` is aborted the pass stops after
   * the statement in flight and reports `complete: false`.
   */
  async prune(signal?: AbortSignal): Promise<PruneResult> {
    const t = this.now();
    const replacements = {
      now: new Date(t),
      nowMs: t,
      auditBefore: new Date(t - this.settings.auditRetentionMs),
      idleBefore: new Date(t - this.settings.sessionIdleTimeoutMs - IDLE_GRACE_MS),
      limit: this.batchRows,
    };
    const result: PruneResult = { auditEvents: 0, revocations: 0, rateLimits: 0, sessions: 0, passwordResets: 0, complete: true };
    for (const rule of RULES) {
      const sql = this.batchSql(rule);
      for (;;) {
        if (signal?.aborted) return { ...result, complete: false };
        const deleted = await this.database.sequelize.query(sql, { replacements, type: QueryTypes.BULKDELETE });
        result[rule.count] += deleted;
        if (deleted < this.batchRows) break;
      }
    }
    return result;
  }

  private batchSql({ table, key, where }: Rule): string {
    const lock = this.database.dialect === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
    return `DELETE FROM ${table} WHERE ${key} IN (SELECT ${key} FROM ${table} WHERE ${where} LIMIT :limit${lock})`;
  }
}

export interface MaintenanceTask {
  /**
   * Cancels the next pass and stops a running one after its current
   * statement; resolves once nothing is running, so the database can close.
   */
  stop(): Promise<void>;
}

/**
 * Runs {@link Maintenance} in a server: one pass `config.maintenance.firstDelayMs`
 * after start-up, then one every `intervalMs` after the previous one ended
 * (passes never overlap). Logs one info line per pass with what it deleted;
 * a failed pass is logged and the next one tries again.
 *
 * @example
 * const maintenance = startMaintenance({ database, config, logger });
 * // on SIGTERM, before closing the database:
 * await maintenance.stop();
 */
export function startMaintenance(deps: { database: Database; config: Config; logger: Logger; now?: Clock }): MaintenanceTask {
  const { database, config, logger } = deps;
  const maintenance = new Maintenance(
    database,
    { auditRetentionMs: config.auditRetentionMs, sessionIdleTimeoutMs: config.session.idleTimeoutMs },
    deps.now ?? systemClock,
  );
  const stopping = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const pass = async () => {
    logger.debug('maintenance pass started');
    const started = performance.now();
    try {
      const { complete, ...deleted } = await maintenance.prune(stopping.signal);
      const ms = Math.round(performance.now() - started);
      logger.info({ deleted, ms }, complete ? 'maintenance pass' : 'maintenance pass stopped early');
    } catch (err) {
      // Name and message only: a database error's own fields carry its SQL.
      const { name, message } = err as Error;
      logger.warn({ err: { type: name, message }, retryInMs: config.maintenance.intervalMs }, 'maintenance pass failed');
    }
  };
  const schedule = (delayMs: number) => {
    timer = setTimeout(() => {
      running = pass().finally(() => {
        running = undefined;
        if (!stopping.signal.aborted) schedule(config.maintenance.intervalMs);
      });
    }, delayMs);
    timer.unref();
  };
  schedule(config.maintenance.firstDelayMs);

  return {
    async stop() {
      stopping.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
