import type { NextFunction, Request, RequestHandler, Response } from 'express';
import passportModule from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import type { UserService } from '../services/users.js';

/**
 * A Passport instance of our own (not the module singleton) with the local
 * strategy. The session stores only the user id; a missing or disabled user
 * is dropped from the session when it is read back.
 */
export function createPassport(users: UserService): passportModule.Authenticator {
  const passport = new passportModule.Passport();
  passport.use(
    'local',
    new LocalStrategy({ usernameField: 'username', passwordField: 'password', session: true }, (username, password, done) => {
      users.authenticate(username, password).then(
        (user) => (user ? done(null, user) : done(null, false, { message: 'Invalid username or password' })),
        done,
      );
    }),
  );
  passport.serializeUser<number>((user, done) => done(null, user.id));
  passport.deserializeUser<number>((id, done) => {
    users.findActiveById(id).then((user) => done(null, user ?? false), done);
  });
  return passport;
}

/**
 * Sets `req.user` from the session exactly as Passport's session strategy
 * does (through the same `deserializeUser`; a user that is gone or disabled is
 * dropped from the session), without `passport.authenticate('session')`'s
 * per-request strategy set-up (about 3% of a token mint's CPU in the profile).
 * For routes that only read the signed-in user: they get no `req.login` or
 * `req.logout`.
 */
export function sessionUser(passport: passportModule.Authenticator): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const stored = req.session?.passport;
    if (stored?.user === undefined) return next();
    passport.deserializeUser(stored.user, req, (err: unknown, user?: Express.User | false | null) => {
      if (err) return next(err);
      if (user) req.user = user;
      else delete stored.user;
      next();
    });
  };
}
