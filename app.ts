import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { createCsrf } from './middleware/csrf.js';
import { errorHandler, notFound } from './middleware/errors.js';
import { createPassport, sessionUser } from './middleware/passport.js';
import { dropNoStore, noStore } from './middleware/no-store.js';
import { requestLogger } from './middleware/request-log.js';
import { sessionLifetime, sessionMiddleware } from './middleware/session.js';
import type { Database } from './models/database.js';
import { projectRoot } from './paths.js';
import { accountRoutes } from './routes/account.js';
import { registerApiRoutes } from './routes/api.js';
import { authRoutes, tokenRoute } from './routes/auth.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { introspectRoute } from './routes/introspect.js';
import { openApiDocument, type OpenApiDocument } from './routes/openapi.js';
import { pageRoutes } from './routes/pages.js';
import { passwordResetRoutes } from './routes/password-reset.js';
import { passkeyRoutes } from './routes/passkeys.js';
import { requireSecondFactorEnrolment, twoFactorRoutes } from './routes/two-factor.js';
import { wellKnownRoutes } from './routes/well-known.js';
import { ApiClientService } from './services/api-clients.js';
import { AuditLog } from './services/audit-log.js';
import type { Metrics } from './services/metrics.js';
import { PasswordResetService } from './services/password-reset.js';
import { RevocationService } from './services/revocation.js';
import { DatabaseSessionStore } from './services/session-store.js';
import { SessionService } from './services/sessions.js';
import { SignInService } from './services/sign-in.js';
import type { SigningKeys } from './services/signing-keys.js';
import { Throttle } from './services/throttle.js';
import { CounterStore } from './services/throttle-store.js';
import { TokenAccess } from './services/token-access.js';
import { TokenService } from './services/tokens.js';
import { PasskeyService } from './services/passkeys.js';
import { TwoFactorService } from './services/two-factor.js';
import { UserAdmin } from './services/user-admin.js';
import { UserService } from './services/users.js';

export interface AppDeps {
  config: Config;
  database: Database;
  logger: Logger;
  /** The one clock every service, the session store and the pages read (default: the system's). */
  clock?: Clock;
  /**
   * The loaded key set (`SigningKeys.open`), required with JWT_ALGORITHM
   * ES256 or RS256 and unused with HS256. Its owner stops it on shutdown.
   */
  signingKeys?: SigningKeys;
  /**
   * Tests only: middleware, made from the app's own OpenAPI document, that
   * checks every answer of a described route against it (test/helpers/contract.ts).
   */
  checkResponses?: (document: OpenApiDocument) => RequestHandler[];
  /** Where requests, audit events, mints and token checks are counted (services/metrics.ts); without it nothing is. */
  metrics?: Metrics;
}

/** @simplewebauthn/browser's self-contained UMD build (defines `SimpleWebAuthnBrowser`). */
const SIMPLEWEBAUTHN_BROWSER = path.join(path.dirname(createRequire(import.meta.url).resolve('@simplewebauthn/browser')), '..', 'dist', 'bundle', 'index.umd.min.js');

/** Largest form or JSON body accepted; anything bigger is a 413. */
const BODY_LIMIT = '16kb';

/**
 * Builds the Express app. Never listens: `server.ts` does, and tests hand the
 * app to supertest.
 */
export function createApp({ config, database, logger, clock = systemClock, signingKeys, metrics, checkResponses }: AppDeps): Express {
  const keys = config.jwt.algorithm === 'HS256' ? undefined : signingKeys;
  if (config.jwt.algorithm !== 'HS256' && !keys) throw new TypeError(`JWT_ALGORITHM=${config.jwt.algorithm} needs createApp({ signingKeys })`);
  const users = new UserService(database.users, clock, { cacheTtlMs: config.revocationCacheTtlMs });
  const tokens = new TokenService(config.jwt, clock, keys, metrics);
  const sessions = new SessionService(
    database.sessions,
    database.sessionRevocations,
    (config.jwt.expiresInSeconds + config.jwt.clockToleranceSeconds) * 1000,
    clock,
  );
  const tokenAccess = new TokenAccess(users, sessions, config.revocationCacheTtlMs, clock, metrics);
  const audit = new AuditLog(database, clock, metrics);
  metrics?.observePool(database);
  const admin = new UserAdmin(database.users, clock);
  const revocation = new RevocationService({ sessions, users, admin, audit, tokenAccess, changes: database.changes });
  followChanges(database, { tokenAccess, keys, logger });
  const throttle = new Throttle(new CounterStore(database.sequelize, clock), config.throttle);
  const twoFactor = new TwoFactorService({ database, secrets: config.jwt.secrets, issuer: config.jwt.issuer, clock });
  // The relying party is PUBLIC_URL's host and origin, never the request's Host header.
  const passkeys = new PasskeyService({ passkeys: database.passkeys, audit, rp: { id: config.publicOrigin.hostname, origin: config.publicUrl, name: 'Token Bridge' }, clock });
  const signIn = new SignInService({ users, throttle, audit, revocation, twoFactor, passkeys, requireTwoFactorRoles: config.requireTwoFactorRoles, clock });
  const passport = createPassport(users);
  const csrf = createCsrf();
  const store = new DatabaseSessionStore(database, config.session, clock);

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  app.set('view engine', 'ejs');
  app.set('views', path.join(projectRoot, 'views'));
  app.locals.appName = 'Token Bridge';

  // Responses are no-store JSON or pages rendered per user: an ETag (a hash of every body) buys nothing.
  app.set('etag', false);

  if (metrics) app.use(metrics.httpRequests());
  app.use(requestLogger(logger));
  app.use(noStore);
  const openApi = openApiDocument({ sessionCookieName: config.session.cookieName });
  if (checkResponses) app.use(checkResponses(openApi));

  const jsonHeaders = apiSecurityHeaders(config);
  const session = [sessionMiddleware(config.session, store), sessionLifetime(config.session, clock)];

  // The API needs neither sessions, body parsing nor the headers that only matter to HTML
  // documents: only a bearer token and the headers that matter to JSON.
  registerApiRoutes(app, { tokens, access: tokenAccess, admin, headers: jsonHeaders, requireTwoFactorRoles: config.requireTwoFactorRoles, openApi });

  // Minting needs the session and Passport, and nothing a page needs (bodies, CSRF, view locals).
  app.get('/auth/token', jsonHeaders, ...session, sessionUser(passport), tokenRoute({ tokens, audit }));

  // Introspection (RFC 7662) is for other services: HTTP Basic client credentials and a form body, no session or CSRF.
  const clients = new ApiClientService({ clients: database.apiClients, audit, clock });
  const introspectBody = express.urlencoded({ extended: false, limit: BODY_LIMIT, parameterLimit: 10 });
  app.post('/auth/introspect', jsonHeaders, introspectBody, introspectRoute({ tokens, access: tokenAccess, clients, throttle }));

  app.use(healthRoutes({ database }));
  app.use(wellKnownRoutes({ headers: jsonHeaders, ...(keys ? { keys } : {}) }));
  app.use(securityHeaders(config));
  app.use(docsRoutes({ isProduction: config.isProduction }));
  // Static files are the same for everyone: they get serve-static's caching instead of no-store.
  // The WebAuthn browser helper, from its npm package (no CDN): one file.
  app.get('/static/vendor/simplewebauthn-browser.js', dropNoStore, (_req, res) => res.sendFile(SIMPLEWEBAUTHN_BROWSER, { maxAge: config.isProduction ? '1h' : 0 }));
  app.use('/static', dropNoStore, express.static(path.join(projectRoot, 'public'), { maxAge: config.isProduction ? '1h' : 0, index: false }));

  // Everything below is for browsers: bodies, session, Passport, CSRF.
  app.use(express.urlencoded({ extended: false, limit: BODY_LIMIT, parameterLimit: 50 }));
  app.use(express.json({ limit: BODY_LIMIT }));
  app.use(...session, passport.session());
  app.use(csrf.exposeToken);
  app.use((req, res, next) => {
    res.locals.currentUser = req.user ?? null;
    next();
  });

  app.use(requireSecondFactorEnrolment(signIn));
  app.use(pageRoutes({ config, tokens, audit, clock, keys }));
  app.use('/auth', authRoutes({ config, passport, csrf, signIn, revocation, clock }));
  app.use(accountRoutes({ config, sessions, audit, csrf, signIn, revocation, twoFactor, passkeys, clock }));
  app.use(passwordResetRoutes({ csrf, resets: new PasswordResetService({ resets: database.passwordResets, users, revocation, audit, clock, publicUrl: config.publicUrl }) }));
  app.use(twoFactorRoutes({ csrf, signIn, twoFactor, clock }));
  app.use(passkeyRoutes({ csrf, signIn, passkeys, clock }));

  app.use(notFound);
  app.use(errorHandler);
  return app;
}

/** For JSON answers: no sniffing, no framing, no cross-origin reads, no referrer; HSTS in production. */
function apiSecurityHeaders(config: Config) {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { 'default-src': ["'none'"], 'frame-ancestors': ["'none'"] } },
    strictTransportSecurity: config.isProduction ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  });
}

function securityHeaders(config: Config) {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"],
        'script-src': ["'self'"],
        'style-src': ["'self'"],
        'img-src': ["'self'", 'data:'],
        'connect-src': ["'self'"],
        'font-src': ["'self'"],
        'form-action': ["'self'"],
        'frame-ancestors': ["'none'"],
        'base-uri': ["'none'"],
        'object-src': ["'none'"],
        ...(config.isProduction ? { 'upgrade-insecure-requests': [] } : {}),
      },
    },
    strictTransportSecurity: config.isProduction ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
}

/**
 * Other instances' revocations, user changes and key changes (the change
 * feed: PostgreSQL LISTEN) drop this process's cached answers at once; the
 * cache TTL stays the bound while the feed is down.
 */
function followChanges(database: Database, deps: { tokenAccess: TokenAccess; keys: SigningKeys | undefined; logger: Logger }): void {
  database.changes.subscribe(
    (change) => {
      if (change.kind === 'user') deps.tokenAccess.forgetUser(change.userId);
      else if (change.kind === 'resync') deps.tokenAccess.forgetAll();
      if (change.kind !== 'user') void deps.keys?.reload();
    },
    (err, message) => deps.logger.warn({ err }, message),
  );
}
