/**
 * Baseline 2, the machine's ceiling: a bare `node:http` server that checks an
 * HS256 bearer token with `node:crypto` (HMAC-SHA256, timingSafeEqual) plus
 * `exp`, `iss` and `aud`, and answers the token's user as JSON. This is the
 * least work an authenticated request can do in Node. Started by bench/run.ts
 * with the key in BENCH_JWT_KEY.
 */
import { createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const secret = process.env.BENCH_JWT_KEY;
if (!secret || secret.length < 32) {
  process.stderr.write('BENCH_JWT_KEY (at least 32 characters) is required\n');
  process.exit(1);
}
const key = createSecretKey(Buffer.from(secret, 'utf8'));
/** The app's `iss` and `aud` (see config.ts). */
const issuer = 'token-bridge';
const audience = 'api';
const BEARER = /^Bearer +([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+) *$/i;

interface Claims {
  sub?: unknown;
  username?: unknown;
  roles?: unknown;
  exp?: unknown;
  iss?: unknown;
  aud?: unknown;
}

function unauthorized(res: ServerResponse): void {
  const body = '{"error":"invalid_token","message":"The token is not valid."}';
  res.writeHead(401, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'www-authenticate': 'Bearer realm="api", error="invalid_token"',
  });
  res.end(body);
}

function verify(header: string | undefined): Claims | null {
  const match = header ? BEARER.exec(header) : null;
  if (!match) return null;
  const [, h, p, s] = match as unknown as [string, string, string, string];
  const joseHeader = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { alg?: unknown };
  if (joseHeader.alg !== 'HS256') return null;
  const expected = createHmac('sha256', key).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Claims;
  if (typeof claims.exp !== 'number' || claims.exp <= Date.now() / 1000) return null;
  if (claims.iss !== issuer || claims.aud !== audience) return null;
  return claims;
}

const server = createServer((req, res) => {
  let claims: Claims | null;
  try {
    claims = verify(req.headers.authorization);
  } catch {
    claims = null;
  }
  if (!claims) return unauthorized(res);
  const body = JSON.stringify({ id: claims.sub, username: claims.username, roles: claims.roles });
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
});
server.keepAliveTimeout = 5_000;

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
