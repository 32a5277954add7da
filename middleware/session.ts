import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session from 'express-session';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { isLive } from '../services/session-store.js';
import type { AuthMethod } from '../services/tokens.js';
import type { PublicUser } from '../services/users.js';

/** How stale `lastSeenAt` may get before a request writes it (bounds session writes to one a minute). */
const LAST_SEEN_RESOLUTION_MS = 60_000;

/** The session cookie: never `connect.sid`, HttpOnly, SameSite=Lax, Secure in production. */
export function sessionMiddleware(settings: Config['session'], store: session.Store): RequestHandler {
  return session({
    name: settings.cookieName,
    secret: [...settings.secrets],
    store,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    // 'keep': with 'destroy', a failed store read (database briefly down) leaves req.session unset and the session is deleted.
    unset: 'keep',
    cookie: {
      httpOnly: true,
      sameSite: 'lax',
      secure: settings.secureCookie,
      path: '/',
      maxAge: settings.absoluteTimeoutMs,
    },
  });
}

/**
 * Ends signed-in sessions past their idle or absolute lifetime (a fresh,
 * anonymous session takes their place) and records activity at most once a
 * minute. Runs before Passport reads the session.
 */
export function sessionLifetime(settings: Config['session'], now: Clock): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const meta = req.session?.meta;
    if (!meta) return next();
    const t = now();
    // The store returns no dead session; this catches one whose time ran out since it was read.
    if (!isLive({ expiresAt: null, createdAt: meta.createdAt, lastSeenAt: meta.lastSeenAt }, t, settings)) {
      return req.session.regenerate(next);
    }
    if (t - meta.lastSeenAt > LAST_SEEN_RESOLUTION_MS) meta.lastSeenAt = t;
    next();
  };
}

/**
 * Signs a user in: Passport regenerates the session id (no fixation; a
 * pending second step goes with the old session), then the session's public
 * metadata — with how the user signed in (`amr`) — is recorded and saved
 * before the caller redirects.
 */
export function signIn(req: Request, user: PublicUser, now: Clock, amr: readonly AuthMethod[]): Promise<void> {
  return new Promise((resolve, reject) => {
    req.login(user, { session: true, keepSessionInfo: false }, (loginErr) => {
      if (loginErr) return reject(loginErr);
      const t = now();
      req.session.meta = {
        id: randomUUID(),
        createdAt: t,
        lastSeenAt: t,
        ip: req.ip ?? null,
        userAgent: req.get('user-agent')?.slice(0, 512) ?? null,
        amr: [...amr],
      };
      saveSession(req).then(resolve, reject);
    });
  });
}

/** A new session id with empty data (the old session is destroyed in the store). */
export function regenerateSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.regenerate((err) => (err ? reject(err) : resolve())));
}

/** Saves the session now (before a redirect, so the next request sees it). */
export function saveSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.save((err) => (err ? reject(err) : resolve())));
}

/** Destroys the session in the store and tells the browser to drop the cookie. */
export function destroySession(req: Request, res: Response, settings: Config['session']): Promise<void> {
  return new Promise((resolve, reject) => {
    req.session.destroy((err) => {
      if (err) return reject(err);
      res.clearCookie(settings.cookieName, { httpOnly: true, sameSite: 'lax', secure: settings.secureCookie, path: '/' });
      resolve();
    });
  });
}
