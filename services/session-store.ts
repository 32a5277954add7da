import session, { type SessionData } from 'express-session';
import type { Clock } from '../clock.js';
import type { Database } from '../models/database.js';

/** The two limits of a signed-in session (SESSION_IDLE_TIMEOUT, SESSION_ABSOLUTE_TIMEOUT). */
export interface SessionLifetime {
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;
}

/** The times a session is judged by; the sign-in times are absent for an anonymous session. */
export interface SessionTimes {
  /** When the cookie expires (epoch ms), or null when it has no expiry. */
  expiresAt: number | null;
  createdAt?: number | null;
  lastSeenAt?: number | null;
}

/**
 * The one rule for whether a session may still be used: its cookie has not
 * expired, and a signed-in session is neither older than the absolute
 * lifetime nor idle for longer than the idle timeout. The store, the
 * lifetime middleware and the account page's list all judge by it.
 */
export function isLive(times: SessionTimes, now: number, lifetime: SessionLifetime): boolean {
  if (times.expiresAt !== null && times.expiresAt <= now) return false;
  if (typeof times.createdAt === 'number' && now - times.createdAt > lifetime.absoluteTimeoutMs) return false;
  if (typeof times.lastSeenAt === 'number' && now - times.lastSeenAt > lifetime.idleTimeoutMs) return false;
  return true;
}

type StoredSession = SessionData & { cookie: { expires?: string | Date | null } };

type Callback<T = void> = (err?: unknown, value?: T) => void;

/** A session without a cookie expiry (none here: maxAge is always set) is kept a day. */
const FALLBACK_LIFETIME_MS = 24 * 60 * 60 * 1000;

/**
 * express-session's store on our own `sessions` table (never MemoryStore).
 *
 * Copies the user id, public id, address and user agent into columns so
 * sessions can be listed and revoked per user. A signed-in session's row is
 * created at sign-in and afterwards only ever updated, so a request still in
 * flight when its session is revoked or signed out cannot bring the deleted
 * row back when it saves at the end. A session that is no longer live is
 * never returned (and is deleted); the maintenance pass removes the rest.
 */
export class DatabaseSessionStore extends session.Store {
  constructor(
    private readonly database: Pick<Database, 'sessions' | 'readSessionData'>,
    private readonly lifetime: SessionLifetime,
    private readonly now: Clock,
  ) {
    super();
  }

  override get(sid: string, callback: Callback<SessionData | null>): void {
    this.readLive(sid).then((data) => callback(null, data), callback);
  }

  override set(sid: string, data: SessionData, callback?: Callback): void {
    this.write(sid, data as StoredSession).then(() => callback?.(), (err: unknown) => callback?.(err));
  }

  override destroy(sid: string, callback?: Callback): void {
    this.database.sessions.destroy({ where: { sid } }).then(() => callback?.(), (err: unknown) => callback?.(err));
  }

  private async readLive(sid: string): Promise<SessionData | null> {
    // The one query on every signed-in page and token mint (see Database.readSessionData).
    const stored = await this.database.readSessionData(sid);
    if (stored === null) return null;
    const data = JSON.parse(stored) as StoredSession;
    if (isLive(timesOf(data), this.now(), this.lifetime)) return data;
    await this.database.sessions.destroy({ where: { sid } });
    return null;
  }

  private async write(sid: string, data: StoredSession): Promise<void> {
    const row = { data: JSON.stringify(data), expires: new Date(timesOf(data).expiresAt ?? this.now() + FALLBACK_LIFETIME_MS), ...columnsOf(data) };
    if (data.meta) await this.database.sessions.update(row, { where: { sid } });
    else await this.database.sessions.upsert({ sid, ...row });
  }
}

/** The times of stored session data, as {@link isLive} judges them. */
export function timesOf(data: SessionData): SessionTimes {
  const expires = (data as StoredSession).cookie?.expires;
  return {
    expiresAt: expires ? new Date(expires).getTime() : null,
    createdAt: data.meta?.createdAt ?? null,
    lastSeenAt: data.meta?.lastSeenAt ?? null,
  };
}

/** The columns copied out of the session data so sessions can be listed and revoked per user. */
function columnsOf(data: StoredSession) {
  return {
    userId: data.passport?.user ?? null,
    publicId: data.meta?.id ?? null,
    ip: data.meta?.ip ?? null,
    userAgent: data.meta?.userAgent ?? null,
    lastSeenAt: data.meta ? new Date(data.meta.lastSeenAt) : null,
  };
}
