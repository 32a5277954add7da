import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Database } from '../models/database.js';
import { AuditLog } from './audit-log.js';
import { SessionService } from './sessions.js';
import { CounterStore } from './throttle-store.js';

const EVERY_MS = 60 * 60 * 1000;

/**
 * Prunes old audit events, expired revocations and rate-limit counters now
 * and then hourly. Returns a function that stops the timer.
 */
export function startMaintenance(deps: { database: Database; config: Config; logger: Logger }): () => void {
  const { database, config, logger } = deps;
  const audit = new AuditLog(database, Date.now);
  const sessions = new SessionService(database.sessions, database.sessionRevocations, config.jwt.expiresInSeconds * 1000, Date.now);
  const counters = new CounterStore(database.sequelize, Date.now);

  const runOnce = async () => {
    try {
      const [events, revocations] = await Promise.all([audit.prune(config.auditRetentionMs), sessions.pruneRevocations()]);
      await counters.clearExpired();
      if (events || revocations) logger.info({ events, revocations }, 'pruned old audit events and revocations');
    } catch (err) {
      logger.warn({ err }, 'maintenance failed; will retry');
    }
  };
  void runOnce();
  const timer = setInterval(() => void runOnce(), EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
