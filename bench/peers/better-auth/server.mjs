/**
 * The benchmark's optional peer (`npm run bench -- --peer better-auth`):
 * Better Auth with its JWT plugin on Express 5 and SQLite (better-sqlite3),
 * configured as its documentation shows, plus the resource server a service
 * of its users would write with jose. Started by bench/run.ts, never by the app.
 *
 *   POST /api/auth/sign-up/email   email + password account, sets the session cookie
 *   GET  /api/auth/token           the JWT plugin's token for the session (the mint measured)
 *   GET  /api/auth/jwks            the plugin's public keys
 *   GET  /api/me                   bearer token verified with jose against that JWKS (the call measured)
 *
 * Settings, all from the environment: PORT (0: any), BETTER_AUTH_DB (the
 * SQLite file, shared by the run's peer processes), BETTER_AUTH_SECRET (one
 * per run: it encrypts the stored private key). Differences from Better
 * Auth's defaults, both so that the load measures the routes: its built-in
 * rate limiter is off (in production it allows 100 requests per 10 s per
 * address; the app has no limit on these routes either) and telemetry is off
 * (this machine has no network). Logs `{"msg":"listening","port":N}` once
 * ready, as the baselines do.
 */
import process from 'node:process';
import { URL } from 'node:url';
import express from 'express';
import Database from 'better-sqlite3';
import { betterAuth } from 'better-auth';
import { getMigrations } from 'better-auth/db/migration';
import { toNodeHandler } from 'better-auth/node';
import { jwt } from 'better-auth/plugins';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { PORT = '0', BETTER_AUTH_DB, BETTER_AUTH_SECRET } = process.env;
if (!BETTER_AUTH_DB || !BETTER_AUTH_SECRET) throw new Error('BETTER_AUTH_DB and BETTER_AUTH_SECRET must be set');

const app = express();
const server = app.listen(Number(PORT), '127.0.0.1');
await new Promise((resolve, reject) => server.once('listening', resolve).once('error', reject));
const baseURL = `http://127.0.0.1:${server.address().port}`;

const database = new Database(BETTER_AUTH_DB);
database.pragma('journal_mode = WAL');
const auth = betterAuth({
  baseURL,
  secret: BETTER_AUTH_SECRET,
  database,
  emailAndPassword: { enabled: true },
  plugins: [jwt()],
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
});
const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

// The plugin's defaults: issuer and audience are the base URL.
const jwks = createRemoteJWKSet(new URL('/api/auth/jwks', baseURL));

// Before any body parser, as Better Auth's Express guide says.
app.all('/api/auth/{*path}', toNodeHandler(auth));
app.get('/api/me', async (req, res) => {
  const [scheme, token] = (req.headers.authorization ?? '').split(' ');
  if (scheme !== 'Bearer' || !token) return res.status(401).json({ error: 'invalid_token' });
  try {
    const { payload } = await jwtVerify(token, jwks, { issuer: baseURL, audience: baseURL });
    res.json({ id: payload.sub, email: payload.email, name: payload.name });
  } catch {
    res.status(401).json({ error: 'invalid_token' });
  }
});

process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`);
process.on('SIGTERM', () => {
  server.close(() => {
    database.close();
    process.exit(0);
  });
  server.closeAllConnections();
});
