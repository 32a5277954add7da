import { Op, type InferCreationAttributes } from 'sequelize';
import type { AuditEventModel, AuditEventName, AuditEventRow } from '../models/audit-event.js';

/** Who did something and from where; `ip` and `userAgent` are null for the command line. */
export interface AuditActor {
  userId?: number | null;
  username?: string | null;
  ip?: string | null;
  userAgent?: string | null;
}

export interface AuditEntry {
  at: Date;
  event: AuditEventName;
  ip: string | null;
  userAgent: string | null;
  detail: string | null;
}

/**
 * How long the first event of a batch waits for company. In quick benchmark
 * runs 5 ms raised token mints per second by about half over batching per
 * event-loop turn, for at most 5 ms more on a request that writes an event.
 */
export const BATCH_WINDOW_MS = 5;

type AuditRecord = Omit<InferCreationAttributes<AuditEventRow>, 'id'>;

/**
 * Append-only record of authentication events, pruned after a retention period.
 *
 * Writes are group-committed: every event recorded within
 * {@link BATCH_WINDOW_MS} goes to the database in one INSERT, and each
 * `record` call resolves only once its row is stored. Under load this turns
 * one write per request into one write per batch without making any event
 * asynchronous.
 */
export class AuditLog {
  private pending: AuditRecord[] = [];
  private batch: Promise<void> | null = null;

  constructor(
    private readonly events: AuditEventModel,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records one event. `detail` must never hold a password, token or cookie. */
  record(event: AuditEventName, actor: AuditActor, detail: string | null = null): Promise<void> {
    this.pending.push({
      at: new Date(this.now()),
      event,
      userId: actor.userId ?? null,
      username: actor.username?.slice(0, 64) ?? null,
      ip: actor.ip?.slice(0, 64) ?? null,
      userAgent: actor.userAgent?.slice(0, 512) ?? null,
      detail: detail?.slice(0, 512) ?? null,
    });
    this.batch ??= new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        const rows = this.pending;
        this.pending = [];
        this.batch = null;
        // A plain multi-row INSERT: model instances for append-only rows are pure overhead.
        this.events.sequelize!
          .getQueryInterface()
          .bulkInsert(
            'audit_events',
            rows.map((r) => ({ at: r.at, event: r.event, user_id: r.userId, username: r.username, ip: r.ip, user_agent: r.userAgent, detail: r.detail })),
          )
          .then(() => resolve(), reject);
      }, BATCH_WINDOW_MS);
    });
    return this.batch;
  }

  /** The user's most recent events, newest first. */
  async recentForUser(userId: number, limit = 20): Promise<AuditEntry[]> {
    const rows: AuditEventRow[] = await this.events.findAll({
      where: { userId },
      order: [['at', 'DESC'], ['id', 'DESC']],
      limit,
    });
    return rows.map((r) => ({ at: r.at, event: r.event, ip: r.ip, userAgent: r.userAgent, detail: r.detail }));
  }

  /** Deletes events older than the retention period; returns how many. */
  prune(retentionMs: number): Promise<number> {
    return this.events.destroy({ where: { at: { [Op.lt]: new Date(this.now() - retentionMs) } } });
  }
}
