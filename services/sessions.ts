import type { SessionData } from 'express-session';
import { Op } from 'sequelize';
import type { Clock } from '../clock.js';
import type { SessionModel } from '../models/session.js';
import type { SessionRevocationModel } from '../models/session-revocation.js';
import { isLive, timesOf, type SessionLifetime } from './session-store.js';

/** A signed-in session as the account page shows it (never its cookie id). */
export interface SessionInfo {
  publicId: string;
  createdAt: Date;
  lastSeenAt: Date;
  ip: string | null;
  userAgent: string | null;
}

/**
 * The signed-in sessions of each user, and the record of sessions ended on
 * purpose, which the bearer check consults.
 */
export class SessionService {
  constructor(
    private readonly sessions: SessionModel,
    private readonly revocations: SessionRevocationModel,
    /** How long a revocation must be remembered: the longest token lifetime plus clock tolerance. */
    private readonly tokenLifetimeMs: number,
    private readonly now: Clock,
  ) {}

  /**
   * The user's live sessions (by {@link isLive}, as the store judges them),
   * most recently used first. Rows of dead sessions wait for the maintenance
   * pass, so the table alone would still list them.
   */
  async listForUser(userId: number, lifetime: SessionLifetime): Promise<SessionInfo[]> {
    const t = this.now();
    const rows = await this.sessions.findAll({ where: { userId, publicId: { [Op.ne]: null } }, attributes: ['publicId', 'data', 'ip', 'userAgent'] });
    const live: SessionInfo[] = [];
    for (const row of rows) {
      const data = JSON.parse(row.data) as SessionData;
      const times = timesOf(data);
      if (!data.meta || !isLive(times, t, lifetime)) continue;
      live.push({
        publicId: row.publicId!,
        createdAt: new Date(data.meta.createdAt),
        lastSeenAt: new Date(data.meta.lastSeenAt),
        ip: row.ip,
        userAgent: row.userAgent,
      });
    }
    return live.sort((a, b) => b.lastSeenAt.getTime() - a.lastSeenAt.getTime() || b.createdAt.getTime() - a.createdAt.getTime());
  }

  /** Remembers that tokens from these sessions must be refused. */
  async recordRevoked(userId: number, publicIds: readonly string[]): Promise<void> {
    if (publicIds.length === 0) return;
    const t = this.now();
    await this.revocations.bulkCreate(
      publicIds.map((publicId) => ({
        publicId,
        userId,
        revokedAt: new Date(t),
        expiresAt: new Date(t + this.tokenLifetimeMs),
      })),
      { ignoreDuplicates: true },
    );
  }

  /**
   * Ends one session of the user (by public id). Returns false when the user
   * has no such session.
   */
  async revoke(userId: number, publicId: string): Promise<boolean> {
    const row = await this.sessions.findOne({ where: { userId, publicId }, attributes: ['sid'] });
    if (!row) return false;
    await this.recordRevoked(userId, [publicId]);
    await this.sessions.destroy({ where: { sid: row.sid } });
    return true;
  }

  /** Ends every session of the user except the one with cookie id `keepSid`; returns how many. */
  async revokeAll(userId: number, keepSid?: string): Promise<number> {
    const where = keepSid ? { userId, sid: { [Op.ne]: keepSid } } : { userId };
    const rows = await this.sessions.findAll({ where, attributes: ['sid', 'publicId'] });
    await this.recordRevoked(userId, rows.map((r) => r.publicId).filter((id): id is string => Boolean(id)));
    return this.sessions.destroy({ where: { sid: rows.map((r) => r.sid) } });
  }

  async isRevoked(publicId: string): Promise<boolean> {
    return (await this.revocations.count({ where: { publicId } })) > 0;
  }
}
