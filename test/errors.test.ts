import { expect } from 'chai';
import { ConnectionError } from 'sequelize';
import {
  AppError,
  BadRequestError,
  BearerError,
  ClientAuthError,
  CsrfError,
  ForbiddenError,
  InternalError,
  InvalidRoleError,
  NotFoundError,
  NotSignedInError,
  PasskeyFailedError,
  PasswordRequiredError,
  PayloadTooLargeError,
  RejectedRequestError,
  ServiceUnavailableError,
  SignInExpiredError,
  TooManyRequestsError,
  UnknownUserError,
  UnsupportedMediaTypeError,
} from '../errors.js';
import { describeError } from '../middleware/errors.js';

/** A foreign error shaped like the ones body-parser (http-errors) and csrf-sync raise. */
function foreign(status: number, fields: Record<string, unknown>, message = 'library text with a secret-value-123'): Error {
  return Object.assign(new Error(message), { status, expose: true }, fields);
}

describe('the error catalogue', () => {
  const catalogue: Array<[AppError, string, number]> = [
    [new BadRequestError(), 'bad_request', 400],
    [new RejectedRequestError(405), 'bad_request', 405],
    [new NotFoundError(), 'not_found', 404],
    [new ForbiddenError(), 'forbidden', 403],
    [new CsrfError(), 'csrf_failed', 403],
    [new PayloadTooLargeError(), 'payload_too_large', 413],
    [new UnsupportedMediaTypeError(), 'unsupported_media_type', 415],
    [new NotSignedInError(), 'not_signed_in', 401],
    [BearerError.missing(), 'unauthorized', 401],
    [BearerError.invalid('The token has expired'), 'invalid_token', 401],
    [BearerError.insufficientScope('admin'), 'insufficient_scope', 403],
    [new ServiceUnavailableError(), 'service_unavailable', 503],
    [new InternalError(), 'internal_error', 500],
    [new UnknownUserError('nobody'), 'unknown_user', 404],
    [new InvalidRoleError('Bad Role'), 'invalid_role', 400],
    [new ClientAuthError(), 'invalid_client', 401],
    [new TooManyRequestsError(60), 'too_many_requests', 429],
    [PasskeyFailedError.signIn(), 'passkey_failed', 401],
    [PasskeyFailedError.registration(), 'passkey_failed', 400],
    [new SignInExpiredError(), 'expired', 401],
    [new PasswordRequiredError('add a passkey'), 'password_required', 401],
  ];

  for (const [error, publicCode, status] of catalogue) {
    it(`${error.name} (${error.code}) answers ${status} with "error": "${publicCode}", the code clients already rely on`, () => {
      expect(error).to.be.instanceOf(AppError);
      expect(error.code).to.match(/^[A-Z][A-Z0-9_]*$/);
      expect(error.publicCode).to.equal(publicCode);
      expect(error.status).to.equal(status);
    });
  }

  it('gives every 401 a WWW-Authenticate challenge (RFC 9110)', () => {
    const unauthorized = catalogue.map(([error]) => error).filter((error) => error.status === 401);
    expect(unauthorized.length).to.be.at.least(6);
    for (const error of unauthorized) expect(error.headers['WWW-Authenticate'], error.name).to.match(/^\w+ realm="/);
  });

  it('shows the message of client errors, and of the 503 (it is written for clients), but not of other 5xx', () => {
    expect(new BadRequestError().expose).to.equal(true);
    expect(new ServiceUnavailableError().expose).to.equal(true);
    expect(new InternalError().expose).to.equal(false);
    expect(new AppError('SOMETHING_INTERNAL', 500, 'detail').expose).to.equal(false);
  });

  it('keeps the users CLI messages', () => {
    expect(new UnknownUserError('nobody-here').message).to.equal('no user named "nobody-here"');
    expect(new InvalidRoleError('X').message).to.match(/^invalid role "X": /);
  });
});

describe('describeError: foreign errors to catalogue errors', () => {
  const cases: Array<[string, unknown, new (...args: never[]) => AppError, number]> = [
    ["csrf-sync's EBADCSRFTOKEN", foreign(403, { code: 'EBADCSRFTOKEN' }), CsrfError, 403],
    ["body-parser's entity.too.large", foreign(413, { type: 'entity.too.large' }), PayloadTooLargeError, 413],
    ["body-parser's entity.parse.failed", foreign(400, { type: 'entity.parse.failed' }), BadRequestError, 400],
    ["body-parser's encoding.unsupported", foreign(415, { type: 'encoding.unsupported' }), UnsupportedMediaTypeError, 415],
    ["body-parser's charset.unsupported", foreign(415, { type: 'charset.unsupported' }), UnsupportedMediaTypeError, 415],
    ['any other 4xx from a library', foreign(400, { type: 'request.aborted' }), RejectedRequestError, 400],
    ["the database's connection loss", new ConnectionError(new Error('connection lost')), ServiceUnavailableError, 503],
    ['an unknown error', new Error('internal detail secret-value-123'), InternalError, 500],
    ['a thrown string', 'secret-value-123', InternalError, 500],
    ['a library 5xx', foreign(502, {}), InternalError, 500],
  ];
  for (const [what, err, kind, status] of cases) {
    it(`maps ${what} to ${kind.name} (${status}) without its own message`, () => {
      const mapped = describeError(err);
      expect(mapped).to.be.instanceOf(kind);
      expect(mapped.status).to.equal(status);
      expect(mapped.message).not.to.contain('secret-value-123');
    });
  }

  it('returns catalogue errors as they are', () => {
    const err = BearerError.invalid('The token has expired');
    expect(describeError(err)).to.equal(err);
  });
});
