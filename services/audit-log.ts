import type { Clock } from '../clock.js';
import type { AuditEventModel, AuditEventName, AuditEventRow } from '../models/audit-event.js';
import type { Database, SqlValue } from '../models/database.js';
import type { Metrics } from './metrics.js';

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

/** Most rows in one INSERT; a longer queue is written in several (SQLite's statement limits stay far away). */
export const MAX_BATCH_ROWS = 500;

/** One `audit_events` row as written: column names, not model attributes (the INSERT bypasses the model). */
interface AuditColumns {
  [column: string]: SqlValue;
  at: Date;
  event: AuditEventName;
  user_id: number | null;
  username: string | null;
  ip: string | null;
  user_agent: string | null;
  detail: string | null;
}

interface Batch {
  rows: AuditColumns[];
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Append-only record of authentication events, pruned after a retention period.
 *
 * Writes are group-committed: at most one INSERT is in flight; events recorded
 * while it runs wait for it and then go together in the next multi-row INSERT.
 * When idle an event is written on the next turn of the event loop (no timer),
 * so it waits for nothing but its own write; under load one write carries many
 * events. Each `record` call resolves only once its row is stored, so no event
 * is ever asynchronous to the request that caused it.
 */
export class AuditLog {
  private queue: Batch[] = [];
  private writing = false;
  private scheduled = false;

  private readonly events: AuditEventModel;
  private readonly insertRows: Database['insertRows'];

  constructor(
    database: Pick<Database, 'auditEvents' | 'insertRows'>,
    private readonly now: Clock,
    private readonly metrics?: Pick<Metrics, 'authEvent'>,
  ) {
    this.events = database.auditEvents;
    this.insertRows = database.insertRows;
  }

  /** Records one event. `detail` must never hold a password, token or cookie. */
  record(event: AuditEventName, actor: AuditActor, detail: string | null = null): Promise<void> {
    this.metrics?.authEvent(event);
    const batch = this.openBatch();
    batch.rows.push({
      at: new Date(this.now()),
      event,
      user_id: actor.userId ?? null,
      username: actor.username?.slice(0, 64) ?? null,
      ip: actor.ip?.slice(0, 64) ?? null,
      user_agent: actor.userAgent?.slice(0, 512) ?? null,
      detail: detail?.slice(0, 512) ?? null,
    });
    if (!this.writing && !this.scheduled) {
      this.scheduled = true;
      // The same turn's other events (a burst of requests parsed together) join this write.
      setImmediate(() => this.writeNext());
    }
    return batch.done;
  }

  /** The batch new events join: the last queued one, or a new one when it is full. */
  private openBatch(): Batch {
    const last = this.queue.at(-1);
    if (last && last.rows.length < MAX_BATCH_ROWS) return last;
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const batch: Batch = { rows: [], done, resolve, reject };
    this.queue.push(batch);
    return batch;
  }

  private writeNext(): void {
    this.scheduled = false;
    const batch = this.queue.shift();
    if (!batch) return;
    this.writing = true;
    // A plain multi-row INSERT: model instances for append-only rows are pure overhead.
    this.insertRows('audit_events', batch.rows)
      .then(() => batch.resolve(), batch.reject)
      .finally(() => {
        this.writing = false;
        this.writeNext();
      });
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
}
