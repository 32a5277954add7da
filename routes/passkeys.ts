import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Clock } from '../clock.js';
import {
  BadRequestError,
  NotFoundError,
  NotSignedInError,
  PasskeyFailedError,
  PasswordRequiredError,
  SignInExpiredError,
  TooManyRequestsError,
} from '../errors.js';
import type { Csrf } from '../middleware/csrf.js';
import { saveSession, signIn as startSession } from '../middleware/session.js';
import { RECENT_SIGN_IN_MS, type Ceremony, type PasskeyService } from '../services/passkeys.js';
import type { SignInService } from '../services/sign-in.js';
import { requestActor } from './audit-actor.js';
import { requireSignedInForm } from './account.js';
import { textField } from './form.js';
import { safeReturnTo } from './return-to.js';


export interface PasskeyRouteDeps {
  csrf: Csrf;
  signIn: SignInService;
  passkeys: PasskeyService;
  clock: Clock;
}

/**
 * Passkeys in the browser (the script `public/passkeys.js` drives the
 * WebAuthn calls; every state change is a POST with the session's CSRF
 * token): options then answer for a sign-in or a second step (`/auth/passkey…`),
 * for adding one (`/account/passkeys…`), and a form to remove one. Each
 * ceremony's challenge lives in the session and is taken out before it is
 * checked, so it is used once.
 */
export function passkeyRoutes(deps: PasskeyRouteDeps): Router {
  const { csrf, signIn, passkeys, clock } = deps;
  const router = Router();

  router.post('/auth/passkey/options', csrf.protect, signInOptions);
  router.post('/auth/passkey', csrf.protect, signInWithPasskey);
  router.post('/account/passkeys/options', csrf.protect, requireSignedInJson, registrationOptions);
  router.post('/account/passkeys', csrf.protect, requireSignedInJson, addPasskey);
  router.post('/account/passkeys/:id/remove', csrf.protect, requireSignedInForm, removePasskey);

  /** The ceremony of `purpose` this session started, taken out of it (used once, whatever the answer). */
  async function takeCeremony(req: Request, purpose: 'register' | 'sign-in'): Promise<Ceremony | null> {
    const ceremony = req.session.webauthn;
    if (!ceremony) return null;
    delete req.session.webauthn;
    await saveSession(req);
    return ceremony.purpose === purpose ? ceremony : null;
  }

  async function startCeremony(req: Request, ceremony: NonNullable<Request['session']['webauthn']>): Promise<void> {
    req.session.webauthn = ceremony;
    await saveSession(req);
  }

  async function signInOptions(req: Request, res: Response) {
    const pending = req.session.pendingSecondFactor;
    const options = await passkeys.authenticationOptions(pending?.userId);
    await startCeremony(req, { purpose: 'sign-in', challenge: options.challenge, at: clock() });
    res.json(options);
  }

  async function signInWithPasskey(req: Request, res: Response) {
    const body = (req.body ?? {}) as { response?: unknown; returnTo?: unknown };
    const ceremony = await takeCeremony(req, 'sign-in');
    if (!ceremony || !isCredential(body.response)) throw new BadRequestError('Start the passkey sign-in again.');
    const pending = req.session.pendingSecondFactor;
    const outcome = await signIn.withPasskey({
      response: body.response as AuthenticationResponseJSON,
      ceremony,
      ...(pending ? { pending } : {}),
      actor: requestActor(req),
      startSession: (user, amr) => startSession(req, user, clock, amr),
    });
    if (outcome.status === 'throttled') throw new TooManyRequestsError(outcome.retryAfterSeconds);
    if (outcome.status === 'expired') throw new SignInExpiredError();
    if (outcome.status === 'invalid') throw PasskeyFailedError.signIn();
    res.json({ redirect: pending?.returnTo ?? safeReturnTo(body.returnTo) });
  }

  async function registrationOptions(req: Request, res: Response) {
    const user = req.user!;
    if (clock() - req.session.meta!.createdAt > RECENT_SIGN_IN_MS) {
      const currentPassword = textField(req.body, 'currentPassword');
      // No password typed is a question, not a guess: it is not counted.
      if (!currentPassword) throw new PasswordRequiredError('add a passkey');
      const confirmed = await signIn.confirmPassword(user, currentPassword, requestActor(req));
      if ('throttled' in confirmed) throw new TooManyRequestsError(confirmed.throttled, 'Too many wrong passwords: try again later.');
      if (!confirmed.ok) throw new PasswordRequiredError('add a passkey');
    }
    const options = await passkeys.registrationOptions(user);
    await startCeremony(req, { purpose: 'register', challenge: options.challenge, at: clock(), userHandle: options.user.id });
    res.json(options);
  }

  async function addPasskey(req: Request, res: Response) {
    const body = (req.body ?? {}) as { response?: unknown; name?: unknown };
    const ceremony = await takeCeremony(req, 'register');
    if (!ceremony || !isCredential(body.response)) throw new BadRequestError('Start adding the passkey again.');
    const name = typeof body.name === 'string' ? body.name : '';
    const added = await passkeys.register(req.user!, body.response as RegistrationResponseJSON, ceremony, name, requestActor(req));
    if (!added) throw PasskeyFailedError.registration();
    req.session.flash = `Passkey “${added.name}” added.`;
    await saveSession(req);
    res.status(201).json({ id: added.id, name: added.name, redirect: '/account' });
  }

  async function removePasskey(req: Request, res: Response) {
    const removed = await passkeys.remove(req.user!, String(req.params.id), requestActor(req));
    if (!removed) throw new NotFoundError('You have no passkey with that id.');
    req.session.flash = `Passkey “${removed.name}” removed.`;
    await saveSession(req);
    res.redirect(303, '/account');
  }

  return router;
}

/** The outer shape of a WebAuthn answer (`id`, `rawId`, `response`, `type`); the library checks the rest. */
function isCredential(value: unknown): boolean {
  if (!value || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return typeof v.id === 'string' && v.id.length <= 1400 && typeof v.rawId === 'string' && v.type === 'public-key' && !!v.response && typeof v.response === 'object';
}

function requireSignedInJson(req: Request, _res: Response, next: NextFunction): void {
  if (req.user && req.session?.meta) return next();
  throw new NotSignedInError();
}
