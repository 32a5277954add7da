import type { Request } from 'express';
import type { AuditActor } from '../services/audit-log.js';
import type { Actor } from '../services/revocation.js';

/** The audit fields of a browser request: user, address and user agent. Never a body, token or cookie. */
export function auditActor(req: Request, user?: { id: number; username: string } | null): AuditActor {
  return { ...requestActor(req), userId: user?.id ?? null, username: user?.username ?? null };
}

/**
 * Where a request comes from, for the services: Express's `req.ip` (which
 * honours TRUST_PROXY; also the address throttling counts) and the user agent.
 */
export function requestActor(req: Request): Actor {
  return { ip: req.ip ?? req.socket.remoteAddress ?? null, userAgent: req.get('user-agent') ?? null };
}
