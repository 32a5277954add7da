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
