/**
 * Users from the command line: `npm run users -- <command>`.
 * Needs only DATABASE_URL (environment or .env), never the signing secrets;
 * `reset-link` also reads PUBLIC_URL (or PORT for its default).
 * Passwords are read from stdin (a pipe, or a prompt that does not echo).
 */
import { read } from 'read';
import { CliError, runCli } from './cli.js';
import { systemClock } from '../clock.js';
import { loadPublicUrl, readEnvironment } from '../config.js';
import type { Database } from '../models/database.js';
import { AuditLog } from '../services/audit-log.js';
import { PasswordResetService, RESET_LINK_LIFETIME_MS } from '../services/password-reset.js';
import { InvalidRoleError, UnknownUserError } from '../errors.js';
import { ROLE_PATTERN, UserAdmin } from '../services/user-admin.js';
import { UserService } from '../services/users.js';
import { RevocationService } from '../services/revocation.js';
import { SessionService } from '../services/sessions.js';
import { TwoFactorService } from '../services/two-factor.js';

const USAGE = `usage: npm run users -- <command>
  create <username> [--role <role>]   password from stdin
  list
  disable <username>
  enable <username>
  grant <username> <role>
  revoke <username> <role>
  reset-link <username>               prints a one-time password-reset URL (PUBLIC_URL)
  reset-2fa <username>                turns two-factor authentication off (a lost device)`;

const CLI_ACTOR = { ip: null, userAgent: 'users-cli' } as const;
/** Revocations must outlive any token; the CLI does not know JWT_EXPIRES_IN, so it keeps them a day. */
const REVOCATION_MEMORY_MS = 24 * 60 * 60 * 1000;

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const first = await read({ prompt: 'Password: ', silent: true, replace: '' });
    const again = await read({ prompt: 'Repeat password: ', silent: true, replace: '' });
    if (first !== again) throw new CliError('the two passwords do not match');
    return first;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text.split(/\r?\n/)[0] ?? '';
}

async function run(db: Database, args: string[], out: (line: string) => void): Promise<void> {
  const [command, ...rest] = args;
  const users = new UserService(db.users, systemClock);
  const admin = new UserAdmin(db.users, systemClock);
  const audit = new AuditLog(db, systemClock);
  const sessions = new SessionService(db.sessions, db.sessionRevocations, REVOCATION_MEMORY_MS, systemClock);
  // Running instances drop their cached answers at once (PostgreSQL NOTIFY); on SQLite within REVOCATION_CACHE_TTL.
  const revocation = new RevocationService({ sessions, users, admin, audit, changes: db.changes });

  switch (command) {
    case 'create': {
      const [username, flag, role] = rest;
      if (!username || (flag !== undefined && (flag !== '--role' || !role)) || rest.length > 3) throw new CliError(USAGE, 2);
      // Checked before the account exists, so a bad role never leaves a user without it.
      if (role !== undefined && !ROLE_PATTERN.test(role)) throw new InvalidRoleError(role);
      const password = await readPassword();
      const result = await users.register(username, password, password);
      if (!result.ok) throw new CliError(Object.values(result.errors).join(' '));
      await audit.record('user_created', { ...CLI_ACTOR, userId: result.user.id, username: result.user.username });
      if (role) {
        await admin.setRole(result.user.username, role, true);
        await audit.record('role_granted', { ...CLI_ACTOR, userId: result.user.id, username: result.user.username }, role);
      }
      out(`created ${result.user.username} (id ${result.user.id})${role ? ` with role ${role}` : ''}`);
      return;
    }
    case 'list': {
      if (rest.length) throw new CliError(USAGE, 2);
      const all = await admin.list();
      out(['id', 'username', 'roles', 'disabled', 'created'].join('\t'));
      for (const u of all) out([u.id, u.username, u.roles.join(',') || '-', u.disabled ? 'yes' : 'no', u.createdAt.toISOString()].join('\t'));
      return;
    }
    case 'disable':
    case 'enable': {
      const [username] = rest;
      if (!username || rest.length !== 1) throw new CliError(USAGE, 2);
      const disabled = command === 'disable';
      const { user, changed } = await revocation.setDisabled(username, disabled, CLI_ACTOR);
      out(`${user.username} is ${disabled ? 'disabled' : 'enabled'}${changed ? '' : ' (no change)'}`);
      return;
    }
    case 'grant':
    case 'revoke': {
      const [username, role] = rest;
      if (!username || !role || rest.length !== 2) throw new CliError(USAGE, 2);
      const granting = command === 'grant';
      const { user, changed } = await admin.setRole(username, role, granting);
      if (changed) await audit.record(granting ? 'role_granted' : 'role_revoked', { ...CLI_ACTOR, userId: user.id, username: user.username }, role);
      if (changed) await db.changes.publish({ kind: 'user', userId: user.id });
      out(`${user.username} roles: ${user.roles.join(', ') || '(none)'}${changed ? '' : ' (no change)'}`);
      return;
    }
    case 'reset-link': {
      const [username] = rest;
      if (!username || rest.length !== 1) throw new CliError(USAGE, 2);
      const resets = new PasswordResetService({
        resets: db.passwordResets,
        users,
        revocation,
        audit,
        clock: systemClock,
        publicUrl: loadPublicUrl(readEnvironment()),
      });
      const link = await resets.createLink(username, CLI_ACTOR);
      out(link.url);
      process.stderr.write(
        `one-time link for ${link.user.username}, valid ${RESET_LINK_LIFETIME_MS / 60_000} minutes (until ${link.expiresAt.toISOString()}); give it to them privately\n`,
      );
      return;
    }
    case 'reset-2fa': {
      const [username] = rest;
      if (!username || rest.length !== 1) throw new CliError(USAGE, 2);
      const user = await users.findByUsername(username);
      if (!user) throw new UnknownUserError(username);
      // Only deletes: no secret is read, so the CLI still needs no JWT_SECRET_KEY.
      const twoFactor = new TwoFactorService({ database: db, secrets: [], issuer: '', clock: systemClock });
      const wasOn = await twoFactor.resetForLostDevice(user, CLI_ACTOR, audit);
      out(`${user.username}: two-factor authentication ${wasOn ? 'is off; they sign in with the password and may set it up again' : 'was off already (no change)'}`);
      return;
    }
    default:
      throw new CliError(USAGE, 2);
  }
}

runCli(USAGE, run);
