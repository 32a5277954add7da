import 'express-session';
import type { AuthMethod } from '../services/tokens.js';

/** What we keep about a signed-in session besides Passport's user id. */
export interface SessionMeta {
  /** Opaque public id: goes into tokens as `sid` and names the session on account pages. */
  id: string;
  createdAt: number;
  lastSeenAt: number;
  ip: string | null;
  userAgent: string | null;
  /** How the user signed in (RFC 8176), put into every token minted here; absent on sessions from before it was recorded (a password). */
  amr?: AuthMethod[];
}

/** A correct password whose second factor is still to come: not signed in (no user, no token, no account page). */
export interface PendingSecondFactor {
  userId: number;
  /** When the password was checked (the injected clock's ms): the second step must follow within 5 minutes. */
  at: number;
  returnTo: string;
}

declare module 'express-session' {
  interface SessionData {
    meta: SessionMeta;
    passport: { user?: number };
    pendingSecondFactor: PendingSecondFactor;
    /** A WebAuthn ceremony waiting for the browser's answer (used once, 5 minutes). */
    webauthn: { purpose: 'register' | 'sign-in'; challenge: string; at: number; userHandle?: string };
    /** A one-time notice shown on the next page (Post/Redirect/Get). */
    flash: string;
  }
}
