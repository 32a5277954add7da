import 'express-session';

/** What we keep about a signed-in session besides Passport's user id. */
export interface SessionMeta {
  /** Opaque public id: goes into tokens as `sid` and names the session on account pages. */
  id: string;
  createdAt: number;
  lastSeenAt: number;
  ip: string | null;
  userAgent: string | null;
}

declare module 'express-session' {
  interface SessionData {
    meta: SessionMeta;
    passport: { user?: number };
    /** A one-time notice shown on the next page (Post/Redirect/Get). */
    flash: string;
  }
}
