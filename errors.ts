/**
 * The catalogue of errors the app raises on purpose. `expose` errors show their
 * message to the client; anything else becomes a generic 500 and is logged.
 */
export class AppError extends Error {
  override name = 'AppError';
  readonly expose: boolean;
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.expose = status < 500;
  }
}

export class BadRequestError extends AppError {
  override name = 'BadRequestError';
  constructor(message = 'The request is not valid.') {
    super('bad_request', 400, message);
  }
}

export class NotFoundError extends AppError {
  override name = 'NotFoundError';
  constructor(message = 'Nothing lives at this address.') {
    super('not_found', 404, message);
  }
}

export class ForbiddenError extends AppError {
  override name = 'ForbiddenError';
  constructor(code = 'forbidden', message = 'You may not do this.') {
    super(code, 403, message);
  }
}

/** No session: the browser must sign in first. */
export class NotSignedInError extends AppError {
  override name = 'NotSignedInError';
  constructor() {
    super('not_signed_in', 401, 'Sign in first.', { 'WWW-Authenticate': 'Cookie realm="token-bridge"' });
  }
}

/** Bearer authentication failures, answered per RFC 6750 section 3. */
export class BearerError extends AppError {
  override name = 'BearerError';
  static missing(): BearerError {
    return new BearerError('unauthorized', 401, 'A bearer token is required.', 'Bearer realm="api"');
  }
  static invalid(description: string): BearerError {
    return new BearerError('invalid_token', 401, description,
      `Bearer realm="api", error="invalid_token", error_description="${description}"`);
  }
  static insufficientScope(role: string): BearerError {
    return new BearerError('insufficient_scope', 403, `This needs the ${role} role.`,
      `Bearer realm="api", error="insufficient_scope", error_description="requires role ${role}", scope="${role}"`);
  }
  private constructor(code: string, status: number, message: string, challenge: string) {
    super(code, status, message, { 'WWW-Authenticate': challenge });
  }
}

/** The database could not be reached; the client may retry. */
export class ServiceUnavailableError extends AppError {
  override name = 'ServiceUnavailableError';
  constructor() {
    super('service_unavailable', 503, 'The service is briefly unavailable. Try again shortly.', { 'Retry-After': '5' });
  }
}
