import { randomUUID } from 'node:crypto';
import connectSessionSequelize from 'connect-session-sequelize';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session, { type SessionData } from 'express-session';
import type { Config } from '../config.js';
import type { Database } from '../models/database.js';
import { SESSION_MODEL_NAME } from '../models/session.js';
import type { PublicUser } from '../services/users.js';

const SequelizeStore = connectSessionSequelize(session.Store);

/** How stale `lastSeenAt` may get before a request writes it (bounds session writes to one a minute). */
const LAST_SEEN_RESOLUTION_MS = 60_000;

type StoredSession = SessionData & { cookie: { expires?: string | Date | null } };

/**
 * express-session store on our own `sessions` table (never MemoryStore).
 * Copies the user id, public id, IP and user agent into columns so sessions
 * can be listed and revoked per user.
 */
export function createSessionStore(database: Database): session.Store {
  const store = new SequelizeStore({
    db: database.sequelize,
    table: SESSION_MODEL_NAME,
    checkExpirationInterval: 15 * 60 * 1000,
    // Saves (at most one a minute per session, see sessionLifetime) already move the row's expiry;
    // touching on every request would add a write to every read.
    disableTouch: true,
    extendDefaultFields: (defaults, data: StoredSession) => ({ ...defaults, ...columnsOf(data) }),
  } as ConstructorParameters<typeof SequelizeStore>[0]);

  // A signed-in session's row is created at sign-in (before its metadata exists) and
  // afterwards only ever updated: one UPDATE instead of the library's find-or-create,
  // and a request still in flight when its session is revoked or signed out cannot
  // bring the deleted row back when it saves at the end.
  const set = store.set.bind(store);
  store.set = (sid, data, callback) => {
    const stored = data as StoredSession;
    if (!stored.meta) return set(sid, data, callback);
    database.sessions
      .update(
        { data: JSON.stringify(stored), expires: expiryOf(stored), ...columnsOf(stored) },
        { where: { sid } },
      )
      .then(() => callback?.(), (err: unknown) => callback?.(err));
  };

  // Reads are on every signed-in page and token request: one plain SELECT of the data
  // column (Database.readSessionData) instead of the library's model lookup. Unlike the
  // library, an expired row is never returned (its periodic sweep may not have run yet).
  store.get = (sid, callback) => {
    database
      .readSessionData(sid)
      .then((stored) => {
        if (stored === null) return callback(null, null);
        const data = JSON.parse(stored) as StoredSession;
        const expires = data.cookie?.expires;
        if (expires && new Date(expires).getTime() <= Date.now()) {
          return store.destroy(sid, (destroyErr) => callback(destroyErr, null));
        }
        callback(null, data);
      })
      .catch((err: unknown) => callback(err));
  };
  return store;
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

function expiryOf(data: StoredSession): Date {
  const expires = data.cookie?.expires;
  return expires ? new Date(expires) : new Date(Date.now() + 24 * 60 * 60 * 1000);
}

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
export function sessionLifetime(settings: Config['session'], now: () => number = Date.now): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const meta = req.session?.meta;
    if (!meta) return next();
    const t = now();
    if (t - meta.createdAt > settings.absoluteTimeoutMs || t - meta.lastSeenAt > settings.idleTimeoutMs) {
      return req.session.regenerate(next);
    }
    if (t - meta.lastSeenAt > LAST_SEEN_RESOLUTION_MS) meta.lastSeenAt = t;
    next();
  };
}

/**
 * Signs a user in: Passport regenerates the session id (no fixation), then
 * the session's public metadata is recorded and saved before the caller redirects.
 */
export function signIn(req: Request, user: PublicUser, now: () => number = Date.now): Promise<void> {
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
      };
      saveSession(req).then(resolve, reject);
    });
  });
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
