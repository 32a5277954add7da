import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import dotenv from 'dotenv';
import ms, { type StringValue } from 'ms';
import { z } from 'zod';
import { projectRoot } from './paths.js';

/** Typed, frozen application settings. Only this module reads `process.env`. */
export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly isProduction: boolean;
  readonly port: number;
  /**
   * `PUBLIC_URL`: the origin people reach the app at, without a trailing slash
   * (`https://app.example.com`). Links and commands shown to people are built
   * from it, never from the request's `Host` header.
   */
  readonly publicUrl: string;
  /** `PUBLIC_URL`'s parts; `hostname` is the WebAuthn relying-party id. */
  readonly publicOrigin: PublicOrigin;
  readonly databaseUrl: string;
  /** Most connections one process keeps to PostgreSQL (ignored for SQLite). */
  readonly databasePoolMax: number;
  /** How long a query waits for a pooled PostgreSQL connection before failing (503). */
  readonly databaseAcquireTimeoutMs: number;
  /** Longest run of one PostgreSQL statement before the server cancels it (503). */
  readonly databaseStatementTimeoutMs: number;
  /** Worker processes `server.ts` forks with node:cluster (1 = no cluster, serve in this process). */
  readonly webConcurrency: number;
  readonly logLevel: LogLevel;
  readonly trustProxy: boolean | number | string;
  readonly jwt: {
    /** `JWT_ALGORITHM`: HS256 signs with JWT_SECRET_KEY; ES256 and RS256 with the key set in the database (services/signing-keys.ts). */
    readonly algorithm: JwtAlgorithm;
    /** JWT_SECRET_KEY as given, first first: with ES256/RS256 the first encrypts stored private keys and every one may decrypt. */
    readonly secrets: readonly string[];
    /** The HS256 key that signs (the first of JWT_SECRET_KEY), as a KeyObject: jsonwebtoken skips its slow PEM parsing attempt for these. */
    readonly key: KeyObject;
    /** Every key a token may be signed with: the signing key first, then older ones still verifying (rotation). */
    readonly verifyKeys: readonly KeyObject[];
    readonly expiresInSeconds: number;
    readonly issuer: string;
    readonly audience: string;
    readonly clockToleranceSeconds: number;
  };
  readonly session: {
    readonly secrets: readonly string[];
    readonly cookieName: string;
    readonly secureCookie: boolean;
    readonly idleTimeoutMs: number;
    readonly absoluteTimeoutMs: number;
  };
  readonly throttle: {
    readonly accountMax: number;
    readonly accountWindowMs: number;
    readonly ipMax: number;
    readonly ipWindowMs: number;
    readonly registerMax: number;
    readonly registerWindowMs: number;
    /** Failed API-client authentications (`POST /auth/introspect`) per address before it is blocked. */
    readonly clientMax: number;
    readonly clientWindowMs: number;
    /** Wrong second-factor codes per account (any address) before its second step is blocked. */
    readonly secondFactorMax: number;
    readonly secondFactorWindowMs: number;
  };
  /** `REQUIRE_2FA_ROLES`: holders of these roles must sign in with a second factor (empty: nobody must). */
  readonly requireTwoFactorRoles: readonly string[];
  /** How long a token's session/user check may be answered from the in-process cache (revocation bound). */
  readonly revocationCacheTtlMs: number;
  readonly auditRetentionMs: number;
  /** The housekeeping pass (services/maintenance.ts): first run after start-up, then every `intervalMs`. */
  readonly maintenance: {
    readonly firstDelayMs: number;
    readonly intervalMs: number;
  };
  /**
   * `METRICS_PORT` and `METRICS_HOST`: where `GET /metrics` (Prometheus) is
   * served, on a listener of its own, never on `port`; null when
   * `METRICS_PORT` is unset (no metrics collected at all).
   */
  readonly metrics: { readonly port: number; readonly host: string } | null;
}

export const JWT_ALGORITHMS = ['HS256', 'ES256', 'RS256'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** An http(s) origin taken apart. */
export interface PublicOrigin {
  readonly protocol: 'http:' | 'https:';
  /** Lower-cased (IDNs in punycode), IPv6 in brackets. */
  readonly hostname: string;
  /** The port, the scheme's default (80, 443) when none was given. */
  readonly port: number;
}

/** A configuration problem, reported as one line naming the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly variable: string, detail: string) {
    super(`${variable}: ${detail}`);
  }
}

const APP_NAME = 'token-bridge';
const MIN_SECRET_BYTES = 32;
/** Leeway for `exp`/`iat` between machines' clocks, in seconds. */
const CLOCK_TOLERANCE_SECONDS = 5;

/** Values that appear in documentation or examples and must never sign anything in production. */
const EXAMPLE_MARKERS = ['example', 'change-me', 'changeme', 'secret', 'test-only', 'password'];

/** A DNS host name (letters, digits, hyphens; dot-separated labels of at most 63). */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A duration variable; `name` is kept for call sites' readability, the error prefix names it already. */
const duration = (_name: string, fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const parsed = /^\d+$/.test(value) ? Number(value) * 1000 : ms(value as StringValue);
      if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 1000) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration like 6h, 30m or 3600 (seconds), at least 1 second' });
        return z.NEVER;
      }
      return parsed;
    });

const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: z
    .string()
    .default('3000')
    .refine((v) => /^\d{1,5}$/.test(v) && Number(v) <= 65535, 'must be a port number from 0 to 65535')
    .transform(Number),
  // Its default, http://localhost:PORT, needs PORT: applied in loadConfig.
  PUBLIC_URL: z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      const parsed = parsePublicUrl(value);
      if (typeof parsed === 'string') {
        ctx.addIssue({ code: 'custom', message: parsed });
        return z.NEVER;
      }
      return parsed;
    }),
  DATABASE_URL: z
    .string()
    .default('sqlite:data/app.sqlite')
    .refine(isSupportedDatabaseUrl, 'must be sqlite:PATH, sqlite::memory: or postgres://user@host/db'),
  DB_POOL_MAX: z
    .string()
    .default('10')
    .refine((v) => /^\d{1,4}$/.test(v) && Number(v) >= 1 && Number(v) <= 1000, 'must be a whole number from 1 to 1000')
    .transform(Number),
  DB_ACQUIRE_TIMEOUT: duration('DB_ACQUIRE_TIMEOUT', '5s'),
  DB_STATEMENT_TIMEOUT: duration('DB_STATEMENT_TIMEOUT', '10s'),
  WEB_CONCURRENCY: z
    .string()
    .default('1')
    .refine((v) => /^\d{1,3}$/.test(v) && Number(v) >= 1 && Number(v) <= 64, 'must be a whole number from 1 to 64')
    .transform(Number),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TRUST_PROXY: z
    .string()
    .default('false')
    .refine((v) => /^(true|false|\d{1,2}|[0-9a-fA-F.:/, a-z]+)$/.test(v), 'must be true, false, a hop count or a list of addresses')
    .transform(parseTrustProxy),
  JWT_ALGORITHM: z
    .string()
    .default('HS256')
    .transform((value, ctx) => {
      if ((JWT_ALGORITHMS as readonly string[]).includes(value)) return value as JwtAlgorithm;
      ctx.addIssue({ code: 'custom', message: `must be HS256, ES256 or RS256, not ${JSON.stringify(value.slice(0, 20))}` });
      return z.NEVER;
    }),
  JWT_SECRET_KEY: z.string({ error: 'is required (npm start writes one into .env)' }),
  SESSION_SECRET: z.string({ error: 'is required (npm start writes one into .env)' }),
  JWT_EXPIRES_IN: duration('JWT_EXPIRES_IN', '6h'),
  JWT_ISSUER: z.string().min(1).max(200).default(APP_NAME),
  JWT_AUDIENCE: z.string().min(1).max(200).default('api'),
  SESSION_IDLE_TIMEOUT: duration('SESSION_IDLE_TIMEOUT', '2h'),
  SESSION_ABSOLUTE_TIMEOUT: duration('SESSION_ABSOLUTE_TIMEOUT', '12h'),
  LOGIN_ACCOUNT_MAX_FAILURES: count('5'),
  LOGIN_ACCOUNT_WINDOW: duration('LOGIN_ACCOUNT_WINDOW', '15m'),
  LOGIN_IP_MAX_FAILURES: count('50'),
  LOGIN_IP_WINDOW: duration('LOGIN_IP_WINDOW', '15m'),
  REGISTER_IP_MAX: count('50'),
  REGISTER_IP_WINDOW: duration('REGISTER_IP_WINDOW', '1h'),
  INTROSPECT_IP_MAX_FAILURES: count('50'),
  INTROSPECT_IP_WINDOW: duration('INTROSPECT_IP_WINDOW', '15m'),
  SECOND_FACTOR_MAX_FAILURES: count('5'),
  SECOND_FACTOR_WINDOW: duration('SECOND_FACTOR_WINDOW', '15m'),
  REQUIRE_2FA_ROLES: z
    .string()
    .default('')
    .transform((value, ctx) => {
      const roles = value.split(',').map((r) => r.trim()).filter(Boolean);
      const bad = roles.find((r) => !/^[a-z][a-z0-9_-]{0,31}$/.test(r)); // ROLE_PATTERN (services/user-admin.ts)
      if (bad === undefined) return Object.freeze([...new Set(roles)]);
      ctx.addIssue({ code: 'custom', message: `must be a comma list of roles (lower-case letters, digits, - and _), not ${JSON.stringify(bad.slice(0, 40))}` });
      return z.NEVER;
    }),
  REVOCATION_CACHE_TTL: z
    .string()
    .default('2000')
    .refine((v) => /^\d{1,4}$/.test(v) && Number(v) <= 5000, 'must be milliseconds from 0 to 5000 (revocation must reach every instance within 5 s)')
    .transform(Number),
  AUDIT_RETENTION: duration('AUDIT_RETENTION', '90d'),
  MAINTENANCE_FIRST_DELAY: duration('MAINTENANCE_FIRST_DELAY', '5s'),
  MAINTENANCE_INTERVAL: duration('MAINTENANCE_INTERVAL', '1h'),
  METRICS_PORT: z
    .string()
    .optional()
    .refine((v) => v === undefined || (/^\d{1,5}$/.test(v) && Number(v) <= 65535), 'must be a port number from 0 to 65535')
    .transform((v) => (v === undefined ? undefined : Number(v))),
  METRICS_HOST: z
    .string()
    .default('127.0.0.1')
    .refine((v) => isIP(v) !== 0 || HOSTNAME.test(v), 'must be an IP address or a host name such as 127.0.0.1, ::1 or 0.0.0.0'),
});

function count(fallback: string) {
  return z
    .string()
    .default(fallback)
    .refine((v) => /^\d{1,6}$/.test(v) && Number(v) >= 1, 'must be a whole number from 1')
    .transform(Number);
}

function isSupportedDatabaseUrl(value: string): boolean {
  if (value === 'sqlite::memory:') return true;
  if (/^sqlite:(?!:).+/.test(value)) return true;
  if (/^postgres(ql)?:\/\//.test(value)) {
    try {
      return new URL(value).hostname.length > 0;
    } catch {
      return false;
    }
  }
  return false;
}

type ParsedPublicUrl = PublicOrigin & { readonly origin: string };

const ORIGIN_SHAPE = /^https?:\/\/[^/\\?#@\s]+\/?$/i;

/**
 * Checks that `value` is only an http(s) origin — scheme, host, optional port
 * and at most a trailing slash — and returns it normalised with its parts, or
 * the reason it is refused. The value itself is never echoed (it could hold
 * credentials).
 *
 * @example
 * parsePublicUrl('https://App.Example.com:443/') // { origin: 'https://app.example.com', hostname: 'app.example.com', port: 443, … }
 */
export function parsePublicUrl(value: string): ParsedPublicUrl | string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an http(s) origin like https://app.example.com';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must start with http:// or https://';
  if (url.username || url.password || value.includes('@')) return 'must not contain credentials (user:password@)';
  if (!ORIGIN_SHAPE.test(value)) return 'must be only scheme, host and optional port like https://app.example.com:8443 (no path, query or fragment)';
  const protocol = url.protocol;
  return Object.freeze({
    origin: url.origin,
    protocol,
    hostname: url.hostname,
    port: url.port ? Number(url.port) : protocol === 'https:' ? 443 : 80,
  });
}

function parseTrustProxy(value: string): boolean | number | string {
  if (value === 'true') return true;
  if (value === 'false') return false;
  if (/^\d+$/.test(value)) return Number(value);
  return value;
}

function checkSecret(variable: string, value: string, production: boolean): void {
  if (Buffer.byteLength(value, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError(variable, `must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  if (!production) return;
  const lower = value.toLowerCase();
  if (EXAMPLE_MARKERS.some((marker) => lower.includes(marker)) || new Set(value).size < 10) {
    throw new ConfigError(variable, 'looks like an example or weak value; generate one with crypto.randomBytes(48)');
  }
}

/** A comma-separated list of secrets (the first is the current one), each checked. */
function secretList(variable: string, value: string, production: boolean): string[] {
  const secrets = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (secrets.length === 0) throw new ConfigError(variable, 'must list at least one secret');
  for (const secret of secrets) checkSecret(variable, secret, production);
  return secrets;
}

/**
 * Only the database setting, for tools (the users CLI, migrations) that must
 * run without the signing secrets.
 */
export function loadDatabaseUrl(env: Record<string, string | undefined>): string {
  const result = schema.shape.DATABASE_URL.safeParse(env.DATABASE_URL || undefined);
  if (!result.success) throw new ConfigError('DATABASE_URL', result.error.issues[0]!.message);
  return result.data;
}

/** `PUBLIC_URL` as parsed, or its default `http://localhost:PORT`. */
function publicUrlOf(e: { PUBLIC_URL?: ParsedPublicUrl | undefined; PORT: number }): ParsedPublicUrl {
  return e.PUBLIC_URL ?? { origin: `http://localhost:${e.PORT}`, protocol: 'http:', hostname: 'localhost', port: e.PORT };
}

/**
 * Only `PUBLIC_URL` (default `http://localhost:PORT`), as {@link Config.publicUrl}
 * has it: for the users CLI's reset links, which need no secrets.
 */
export function loadPublicUrl(env: Record<string, string | undefined>): string {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const picked = schema.pick({ PORT: true, PUBLIC_URL: true }).safeParse(cleaned);
  if (!picked.success) {
    const issue = picked.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), issue.message);
  }
  return publicUrlOf(picked.data).origin;
}

/** What the keys CLI needs: the algorithm, the secrets that encrypt the key set, and how long a retired key keeps verifying. */
export interface KeySetSettings {
  readonly algorithm: JwtAlgorithm;
  readonly secrets: readonly string[];
  readonly expiresInSeconds: number;
  readonly clockToleranceSeconds: number;
}

/**
 * Only JWT_ALGORITHM, JWT_SECRET_KEY and JWT_EXPIRES_IN (and NODE_ENV for the
 * secret checks), for `npm run keys`, which must run without SESSION_SECRET.
 */
export function loadKeySetSettings(env: Record<string, string | undefined>): KeySetSettings {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const picked = schema.pick({ NODE_ENV: true, JWT_ALGORITHM: true, JWT_SECRET_KEY: true, JWT_EXPIRES_IN: true }).safeParse(cleaned);
  if (!picked.success) {
    const issue = picked.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), issue.message);
  }
  const e = picked.data;
  return Object.freeze({
    algorithm: e.JWT_ALGORITHM,
    secrets: Object.freeze(secretList('JWT_SECRET_KEY', e.JWT_SECRET_KEY, e.NODE_ENV === 'production')),
    expiresInSeconds: Math.floor(e.JWT_EXPIRES_IN / 1000),
    clockToleranceSeconds: CLOCK_TOLERANCE_SECONDS,
  });
}

/**
 * Parses and validates settings from an environment object.
 * Throws a {@link ConfigError} naming the first bad variable.
 *
 * @example
 * const config = loadConfig(readEnvironment());
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    throw new ConfigError(variable, issue.message);
  }
  const e = result.data;
  const production = e.NODE_ENV === 'production';
  // Plain http:// is accepted in production too (an internal deployment may choose it); see README.
  const publicUrl = publicUrlOf(e);
  const jwtSecrets = secretList('JWT_SECRET_KEY', e.JWT_SECRET_KEY, production);
  const sessionSecrets = secretList('SESSION_SECRET', e.SESSION_SECRET, production);
  const jwtKeys = Object.freeze(jwtSecrets.map((secret) => createSecretKey(Buffer.from(secret, 'utf8'))));
  if (e.WEB_CONCURRENCY > 1 && e.DATABASE_URL === 'sqlite::memory:') {
    throw new ConfigError('WEB_CONCURRENCY', 'must be 1 with sqlite::memory: (each worker would get its own empty database)');
  }
  if (e.SESSION_ABSOLUTE_TIMEOUT < e.SESSION_IDLE_TIMEOUT) {
    throw new ConfigError('SESSION_ABSOLUTE_TIMEOUT', 'must not be shorter than SESSION_IDLE_TIMEOUT');
  }
  // 0 picks a free port for each, so two zeros never collide.
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT !== 0 && e.METRICS_PORT === e.PORT) {
    throw new ConfigError('METRICS_PORT', 'must differ from PORT (metrics are never served on the app port)');
  }

  return Object.freeze({
    env: e.NODE_ENV,
    isProduction: production,
    port: e.PORT,
    publicUrl: publicUrl.origin,
    publicOrigin: Object.freeze({ protocol: publicUrl.protocol, hostname: publicUrl.hostname, port: publicUrl.port }),
    databaseUrl: e.DATABASE_URL,
    databasePoolMax: e.DB_POOL_MAX,
    databaseAcquireTimeoutMs: e.DB_ACQUIRE_TIMEOUT,
    databaseStatementTimeoutMs: e.DB_STATEMENT_TIMEOUT,
    webConcurrency: e.WEB_CONCURRENCY,
    logLevel: e.LOG_LEVEL,
    trustProxy: e.TRUST_PROXY,
    jwt: Object.freeze({
      algorithm: e.JWT_ALGORITHM,
      secrets: Object.freeze(jwtSecrets),
      key: jwtKeys[0]!,
      verifyKeys: jwtKeys,
      expiresInSeconds: Math.floor(e.JWT_EXPIRES_IN / 1000),
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      clockToleranceSeconds: CLOCK_TOLERANCE_SECONDS,
    }),
    session: Object.freeze({
      secrets: Object.freeze(sessionSecrets),
      // The __Host- prefix makes browsers refuse the cookie unless it is Secure, host-only and Path=/.
      cookieName: production ? '__Host-tb.sid' : 'tb.sid',
      secureCookie: production,
      idleTimeoutMs: e.SESSION_IDLE_TIMEOUT,
      absoluteTimeoutMs: e.SESSION_ABSOLUTE_TIMEOUT,
    }),
    throttle: Object.freeze({
      accountMax: e.LOGIN_ACCOUNT_MAX_FAILURES,
      accountWindowMs: e.LOGIN_ACCOUNT_WINDOW,
      ipMax: e.LOGIN_IP_MAX_FAILURES,
      ipWindowMs: e.LOGIN_IP_WINDOW,
      registerMax: e.REGISTER_IP_MAX,
      registerWindowMs: e.REGISTER_IP_WINDOW,
      clientMax: e.INTROSPECT_IP_MAX_FAILURES,
      clientWindowMs: e.INTROSPECT_IP_WINDOW,
      secondFactorMax: e.SECOND_FACTOR_MAX_FAILURES,
      secondFactorWindowMs: e.SECOND_FACTOR_WINDOW,
    }),
    requireTwoFactorRoles: e.REQUIRE_2FA_ROLES,
    revocationCacheTtlMs: e.REVOCATION_CACHE_TTL,
    auditRetentionMs: e.AUDIT_RETENTION,
    maintenance: Object.freeze({ firstDelayMs: e.MAINTENANCE_FIRST_DELAY, intervalMs: e.MAINTENANCE_INTERVAL }),
    metrics: e.METRICS_PORT === undefined ? null : Object.freeze({ port: e.METRICS_PORT, host: e.METRICS_HOST }),
  });
}

/**
 * Where the `.env` file lives: `ENV_FILE` when set (a relative path is taken
 * from the project folder), else the project's `.env`.
 */
export function resolveEnvFilePath(env: Record<string, string | undefined>): string {
  const chosen = env.ENV_FILE;
  return chosen ? path.resolve(projectRoot, chosen) : path.join(projectRoot, '.env');
}

/** Path of the `.env` file this process reads and, when missing, creates. */
export const envFilePath = resolveEnvFilePath(process.env);

/**
 * Returns the process environment merged over `.env` (real environment wins).
 * Does not mutate `process.env`.
 */
export function readEnvironment(file = envFilePath): Record<string, string | undefined> {
  const fromFile = existsSync(file) ? dotenv.parse(readFileSync(file)) : {};
  return { ...fromFile, ...process.env };
}

/**
 * Writes `.env` with fresh random secrets when it does not exist yet.
 * Returns true when a file was created.
 */
export function ensureEnvFile(file = envFilePath): boolean {
  if (existsSync(file)) return false;
  const secret = () => randomBytes(48).toString('base64url');
  const body = [
    '# Created on first start. Keep it private; it is git-ignored.',
    `JWT_SECRET_KEY=${secret()}`,
    `SESSION_SECRET=${secret()}`,
    '',
  ].join('\n');
  try {
    writeFileSync(file, body, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another instance starting at the same moment wrote it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  return true;
}
