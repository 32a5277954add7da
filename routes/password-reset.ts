import { Router, type Request, type Response } from 'express';
import type { Csrf } from '../middleware/csrf.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import type { PasswordResetService } from '../services/password-reset.js';
import type { PasswordChangeErrors } from '../services/users.js';
import { requestActor } from './audit-actor.js';
import { textField } from './form.js';

export interface PasswordResetRouteDeps {
  csrf: Csrf;
  resets: PasswordResetService;
}

/** Where a successful reset sends the browser; the sign-in page shows a notice for `reset=1`. */
export const AFTER_RESET = '/auth/login?reset=1';

/** The one answer for an unknown, used or expired link. */
export const INVALID_LINK_MESSAGE = 'This password-reset link is invalid or has expired. Ask an administrator for a new one.';

/**
 * The page a reset link (`npm run users -- reset-link`) opens, and its form.
 * The token is in the path: pages go out with `Referrer-Policy: no-referrer`
 * and the request log writes the path as `/auth/reset/:token`.
 */
export function passwordResetRoutes(deps: PasswordResetRouteDeps): Router {
  const { csrf, resets } = deps;
  const router = Router();

  router.get('/auth/reset/:token', showForm);
  router.post('/auth/reset/:token', csrf.protect, reset);

  async function showForm(req: Request, res: Response) {
    const token = String(req.params.token);
    const link = await resets.find(token);
    if (!link) return renderInvalid(res);
    renderForm(res, 200, { token, username: link.username, errors: {} });
  }

  async function reset(req: Request, res: Response) {
    const token = String(req.params.token);
    const outcome = await resets.reset(token, textField(req.body, 'newPassword'), textField(req.body, 'confirmPassword'), requestActor(req));
    if (outcome.status === 'invalid') return renderInvalid(res);
    if (outcome.status === 'rejected') return renderForm(res, 400, { token, username: outcome.username, errors: outcome.errors });
    res.redirect(303, AFTER_RESET);
  }

  return router;
}

function renderForm(res: Response, status: number, view: { token: string; username: string; errors: PasswordChangeErrors }) {
  res.status(status).render('reset-password', {
    title: 'Choose a new password',
    action: `/auth/reset/${encodeURIComponent(view.token)}`,
    username: view.username,
    errors: view.errors,
    passwordMin: PASSWORD_MIN_LENGTH,
    passwordMax: PASSWORD_MAX_LENGTH,
  });
}

function renderInvalid(res: Response) {
  res.status(404).render('error', { title: 'Reset link not valid', status: 404, message: INVALID_LINK_MESSAGE });
}
