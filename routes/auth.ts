import { Router, type Request, type Response } from 'express';
import type passportModule from 'passport';
import type { Config } from '../config.js';
import { ForbiddenError, NotSignedInError } from '../errors.js';
import type { Csrf } from '../middleware/csrf.js';
import { destroySession, signIn } from '../middleware/session.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import type { TokenService } from '../services/tokens.js';
import type { FieldErrors, PublicUser, UserService } from '../services/users.js';
import { textField } from './form.js';
import { safeReturnTo } from './return-to.js';

export interface AuthRouteDeps {
  config: Config;
  users: UserService;
  tokens: TokenService;
  passport: passportModule.Authenticator;
  csrf: Csrf;
}

/** The one message for every failed sign-in, whether or not the name exists. */
export const LOGIN_FAILED = 'Invalid username or password';

/** Sign-in, registration, sign-out and token minting. */
export function authRoutes(deps: AuthRouteDeps): Router {
  const { config, users, tokens, passport, csrf } = deps;
  const router = Router();

  router.get('/login', showLogin);
  router.post('/login', csrf.protect, login);
  router.get('/register', showRegister);
  router.post('/register', csrf.protect, register);
  router.post('/logout', csrf.protect, logout);
  router.get('/token', mintToken);

  function showLogin(req: Request, res: Response) {
    if (req.user) return res.redirect(303, safeReturnTo(req.query.returnTo));
    renderLogin(res, 200, { returnTo: safeReturnTo(req.query.returnTo), username: '', error: null });
  }

  async function login(req: Request, res: Response) {
    const username = textField(req.body, 'username');
    const password = textField(req.body, 'password');
    const returnTo = safeReturnTo(textField(req.body, 'returnTo') || req.query.returnTo);
    // Credentials come from the body only: passport-local would also read the query string.
    if (!username || !password) {
      return renderLogin(res, 400, { returnTo, username, error: 'Enter your username and password.' });
    }
    const user = await authenticateLocal(req, res);
    if (!user) {
      res.set('WWW-Authenticate', 'Form realm="token-bridge"');
      return renderLogin(res, 401, { returnTo, username, error: LOGIN_FAILED });
    }
    await signIn(req, user);
    res.redirect(302, returnTo);
  }

  function authenticateLocal(req: Request, res: Response): Promise<PublicUser | false> {
    return new Promise((resolve, reject) => {
      passport.authenticate('local', { session: false }, (err: unknown, user: PublicUser | false) =>
        err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(user),
      )(req, res, reject);
    });
  }

  function showRegister(req: Request, res: Response) {
    renderRegister(res, 200, { returnTo: safeReturnTo(req.query.returnTo), username: '', errors: {} });
  }

  async function register(req: Request, res: Response) {
    const username = textField(req.body, 'username');
    const password = textField(req.body, 'password');
    const confirmPassword = textField(req.body, 'confirmPassword');
    const returnTo = safeReturnTo(textField(req.body, 'returnTo') || req.query.returnTo);
    const result = await users.register(username, password, confirmPassword);
    if (!result.ok) {
      return renderRegister(res, result.taken ? 409 : 400, { returnTo, username, errors: result.errors });
    }
    await signIn(req, result.user);
    res.redirect(302, returnTo);
  }

  async function logout(req: Request, res: Response) {
    await destroySession(req, res, config.session);
    res.redirect(302, '/');
  }

  function mintToken(req: Request, res: Response) {
    // Defence in depth beside SameSite=Lax and CORP: no other site may even trigger a mint.
    if (req.get('sec-fetch-site') === 'cross-site') throw new ForbiddenError('forbidden', 'Tokens are minted for this site only.');
    const meta = req.session?.meta;
    if (!req.user || !meta) throw new NotSignedInError();
    const minted = tokens.mint(req.user, meta.id);
    res.set('Cache-Control', 'no-store').set('Pragma', 'no-cache');
    res.json({ token: minted.token, token_type: 'Bearer', expires_in: minted.expiresIn });
  }

  return router;
}

function renderLogin(res: Response, status: number, view: { returnTo: string; username: string; error: string | null }) {
  res.status(status).render('login', { title: 'Sign in', ...view });
}

function renderRegister(res: Response, status: number, view: { returnTo: string; username: string; errors: FieldErrors }) {
  const errorList = Object.values(view.errors);
  res.status(status).render('register', {
    title: 'Create an account',
    ...view,
    errorList,
    passwordMin: PASSWORD_MIN_LENGTH,
    passwordMax: PASSWORD_MAX_LENGTH,
  });
}
