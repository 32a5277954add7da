import type { Request } from 'express';
import type { AuditActor } from '../services/audit-log.js';

/** The audit fields of a browser request: user, address and user agent. Never a body, token or cookie. */
export function auditActor(req: Request, user?: { id: number; username: string } | null, username?: string): AuditActor {
  return {
    userId: user?.id ?? null,
    username: user?.username ?? username ?? null,
    ip: req.ip ?? null,
    userAgent: req.get('user-agent') ?? null,
  };
}

/** The address throttling counts: Express's `req.ip`, which honours TRUST_PROXY. */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}
