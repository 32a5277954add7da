/**
 * The catalogue of errors the app raises on purpose, one subclass per case.
 *
 * Each has a stable UPPER_SNAKE `code` for code and logs, and a `publicCode`:
 * the `error` member of a JSON answer, which API clients and the contract rely
 * on. The public code is the lower-case form of the code (`INVALID_TOKEN` ->
 * `invalid_token`, as RFC 6750 names it), so the two cannot drift apart.
 *
 * `expose` errors show their message to the client; the message of any other
 * becomes a generic one (and the error is logged).
 */
export class AppError extends Error {
  override name = 'AppError';
  /** The `error` member of a JSON answer (`invalid_token`, `csrf_failed` …). */
  readonly publicCode: string;
  readonly expose: boolean;
  constructor(
    /** Stable UPPER_SNAKE identifier, e.g. `INVALID_TOKEN`. */
    readonly code: string,
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.publicCode = code.toLowerCase();
    this.expose = status < 500;
  }
}

export class BadRequestError extends AppError {
  override name = 'BadRequestError';
  constructor(message = 'The request is not valid.') {
    super('BAD_REQUEST', 400, message);
  }
}

/**
 * A client error (4xx) raised by a library (a malformed URL, an aborted body …)
 * whose status we keep but whose message we do not show.
 */
export class RejectedRequestError extends AppError {
  override name = 'RejectedRequestError';
  constructor(status: number) {
    super('BAD_REQUEST', status, 'The request is not valid.');
  }
}

export class NotFoundError extends AppError {
  override name = 'NotFoundError';
  constructor(message = 'Nothing lives at this address.') {
    super('NOT_FOUND', 404, message);
  }
}

export class ForbiddenError extends AppError {
  override name = 'ForbiddenError';
  constructor(message = 'You may not do this.') {
    super('FORBIDDEN', 403, message);
  }
}

/** A state-changing request without a valid `_csrf` token. */
export class CsrfError extends AppError {
  override name = 'CsrfError';
  constructor() {
    super('CSRF_FAILED', 403, 'This form has expired or did not come from this site. Reload the page and try again.');
  }
}

/** A body over the limit. */
export class PayloadTooLargeError extends AppError {
  override name = 'PayloadTooLargeError';
  constructor() {
    super('PAYLOAD_TOO_LARGE', 413, 'The request body is too large.');
  }
}

/** A body in a content encoding or charset we do not read. */
export class UnsupportedMediaTypeError extends AppError {
  override name = 'UnsupportedMediaTypeError';
  constructor() {
    super('UNSUPPORTED_MEDIA_TYPE', 415, 'The request body encoding is not supported.');
  }
}

/** The challenge of every 401 that asks for a browser sign-in (RFC 9110: a 401 carries `WWW-Authenticate`). */
const SESSION_CHALLENGE: Readonly<Record<string, string>> = Object.freeze({ 'WWW-Authenticate': 'Cookie realm="token-bridge"' });

/** No session: the browser must sign in first. */
export class NotSignedInError extends AppError {
  override name = 'NotSignedInError';
  constructor() {
    super('NOT_SIGNED_IN', 401, 'Sign in first.', SESSION_CHALLENGE);
  }
}

/** Bearer authentication failures, answered per RFC 6750 section 3. */
export class BearerError extends AppError {
  override name = 'BearerError';
  static missing(): BearerError {
    return new BearerError('UNAUTHORIZED', 401, 'A bearer token is required.', 'Bearer realm="api"');
  }
  static invalid(description: string): BearerError {
    return new BearerError('INVALID_TOKEN', 401, description,
      `Bearer realm="api", error="invalid_token", error_description="${description}"`);
  }
  static insufficientScope(role: string): BearerError {
    return new BearerError('INSUFFICIENT_SCOPE', 403, `This needs the ${role} role.`,
      `Bearer realm="api", error="insufficient_scope", error_description="requires role ${role}", scope="${role}"`);
  }
  /** RFC 9470 step-up: the role needs a token from a sign-in with more than one factor. */
  static insufficientUserAuthentication(role: string): BearerError {
    return new BearerError('INSUFFICIENT_USER_AUTHENTICATION', 403, `The ${role} role needs a token from a sign-in with two-factor authentication.`,
      `Bearer realm="api", error="insufficient_user_authentication", error_description="the ${role} role requires multi-factor authentication"`);
  }
  private constructor(code: string, status: number, message: string, challenge: string) {
    super(code, status, message, { 'WWW-Authenticate': challenge });
  }
}

/** Missing or wrong API-client credentials at `POST /auth/introspect` (RFC 6749 section 5.2's `invalid_client`). */
export class ClientAuthError extends AppError {
  override name = 'ClientAuthError';
  constructor() {
    super('INVALID_CLIENT', 401, 'Client authentication failed: send the client_id and client_secret from `npm run clients` with HTTP Basic.', {
      'WWW-Authenticate': 'Basic realm="introspect"',
    });
  }
}

/** Too many failures (from this address, or for this account's password); `Retry-After` says when to try again. */
export class TooManyRequestsError extends AppError {
  override name = 'TooManyRequestsError';
  constructor(retryAfterSeconds: number, message = 'Too many failed attempts from your address: try again later.') {
    super('TOO_MANY_REQUESTS', 429, message, { 'Retry-After': String(retryAfterSeconds) });
  }
}

/** A passkey answer the server did not accept: at sign-in (401) or when adding one (400). */
export class PasskeyFailedError extends AppError {
  override name = 'PasskeyFailedError';
  static signIn(): PasskeyFailedError {
    return new PasskeyFailedError(401, 'That passkey was not accepted. Sign in with your password, or try another passkey.');
  }
  static registration(): PasskeyFailedError {
    return new PasskeyFailedError(400, 'The passkey could not be added. Try again.');
  }
  private constructor(status: number, message: string) {
    super('PASSKEY_FAILED', status, message, status === 401 ? SESSION_CHALLENGE : {});
  }
}

/** The second step of a sign-in came too late (or its account is gone or disabled since): sign in again. */
export class SignInExpiredError extends AppError {
  override name = 'SignInExpiredError';
  constructor() {
    super('EXPIRED', 401, 'That took too long: sign in again.', SESSION_CHALLENGE);
  }
}

/** A change that needs the current password came without it, or with a wrong one. */
export class PasswordRequiredError extends AppError {
  override name = 'PasswordRequiredError';
  /** @param action what the password is for, e.g. `add a passkey` */
  constructor(action: string) {
    super('PASSWORD_REQUIRED', 401, `Enter your current password to ${action}.`, SESSION_CHALLENGE);
  }
}

/** A stored TOTP secret that no JWT_SECRET_KEY entry decrypts: a configuration error, answered 503 and logged. */
export class TwoFactorUnavailableError extends AppError {
  override name = 'TwoFactorUnavailableError';
  // Written for the user: shown although it is a 5xx.
  override readonly expose = true;
  constructor() {
    super('TWO_FACTOR_UNAVAILABLE', 503, 'Two-factor sign-in is unavailable right now. Ask an administrator (the server cannot read its stored secrets).');
  }
}

/** The database could not be reached; the client may retry. */
export class ServiceUnavailableError extends AppError {
  override name = 'ServiceUnavailableError';
  // Written for the client, and it tells them to retry: shown although it is a 5xx.
  override readonly expose = true;
  constructor() {
    super('SERVICE_UNAVAILABLE', 503, 'The service is briefly unavailable. Try again shortly.', { 'Retry-After': '5' });
  }
}

/** Anything that was not raised on purpose: the client sees only this. */
export class InternalError extends AppError {
  override name = 'InternalError';
  constructor() {
    super('INTERNAL_ERROR', 500, 'Something went wrong on our side.');
  }
}

/** An operator named an account that does not exist (users CLI, admin actions). */
export class UnknownUserError extends AppError {
  override name = 'UnknownUserError';
  constructor(username: string) {
    super('UNKNOWN_USER', 404, `no user named ${JSON.stringify(username)}`);
  }
}

/** An operator asked for a password-reset link for a disabled account (it could not sign in with the new password). */
export class DisabledUserError extends AppError {
  override name = 'DisabledUserError';
  constructor(username: string) {
    super('USER_DISABLED', 409, `user ${JSON.stringify(username)} is disabled: enable the account first`);
  }
}

/** A role name that breaks the rules of `ROLE_PATTERN` (services/user-admin.ts). */
export class InvalidRoleError extends AppError {
  override name = 'InvalidRoleError';
  constructor(role: string) {
    super('INVALID_ROLE', 400, `invalid role ${JSON.stringify(role)}: use lower-case letters, digits, - and _ (at most 32)`);
  }
}
