import type { Logger } from 'pino';
import type { AccessTokenClaims } from '../services/tokens.js';
import type { PublicUser } from '../services/users.js';

declare global {
  namespace Express {
    // Passport's req.user: the public view of an account, never the password hash.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface User extends PublicUser {}

    interface Request {
      /** Set by the bearer middleware on /api routes. */
      principal?: { user: PublicUser; claims: AccessTokenClaims };
      /** This request's id (a random UUID, also the `X-Request-Id` answer header), set by the request logger. */
      id?: string;
      /** The app's logger, set by the request logger. */
      log?: Logger;
    }
  }
}

export {};
