/**
 * The ES256/RS256 signing key set from the command line: `npm run keys -- <command>`.
 * Needs only DATABASE_URL and JWT_SECRET_KEY (environment or .env), and
 * JWT_ALGORITHM for add and rotate; never SESSION_SECRET.
 */
import { systemClock } from '../clock.js';
import { loadDatabaseUrl, loadKeySetSettings, readEnvironment } from '../config.js';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { AuditLog } from '../services/audit-log.js';
import { KeySetService, KeySetStore } from '../services/signing-keys.js';

const USAGE = `usage: npm run keys -- <command>
  list          kid, algorithm, state, created
  add           a new key in state next (published at once, not signing yet)
  rotate        next (made now if none) becomes current; current becomes previous
  revoke <kid>  the key never verifies again (a leaked key)
  reencrypt     rewrites every private key under the first JWT_SECRET_KEY`;

const CLI_ACTOR = { ip: null, userAgent: 'keys-cli' } as const;

class UsageError extends Error {}

async function run(db: Database, args: string[], out: (line: string) => void): Promise<void> {
  const [command, ...rest] = args;
  const env = readEnvironment();
  const store = new KeySetStore(db, loadKeySetSettings(env), systemClock);
  const keys = new KeySetService({ store, audit: new AuditLog(db, systemClock) });
  const day = (d: Date | null) => d?.toISOString() ?? '-';
  switch (command) {
    case 'list': {
      if (rest.length) throw new UsageError(USAGE);
      out(['kid', 'alg', 'state', 'created', 'verifies until'].join('\t'));
      for (const k of await keys.list()) {
        const until = k.state === 'previous' ? day(k.verifyUntil) : k.state === 'revoked' ? `revoked ${day(k.revokedAt)}` : '-';
        out([k.kid, k.alg, k.state, day(k.createdAt), until].join('\t'));
      }
      return;
    }
    case 'add': {
      if (rest.length) throw new UsageError(USAGE);
      out(`added ${await keys.add(CLI_ACTOR)} (next: published now, signs after \`rotate\`)`);
      return;
    }
    case 'rotate': {
      if (rest.length) throw new UsageError(USAGE);
      const { current, previous } = await keys.rotate(CLI_ACTOR);
      out(`current ${current}${previous ? `; previous ${previous} verifies its tokens until they expire` : ''}`);
      return;
    }
    case 'revoke': {
      const [kid] = rest;
      if (!kid || rest.length !== 1) throw new UsageError(USAGE);
      const outcome = await keys.revoke(kid, CLI_ACTOR);
      out(outcome.changed ? `revoked ${kid}${outcome.current ? `; current now ${outcome.current}` : ''}` : `${kid} was revoked already (no change)`);
      return;
    }
    case 'reencrypt': {
      if (rest.length) throw new UsageError(USAGE);
      out(`re-encrypted ${await keys.reencrypt(CLI_ACTOR)} private key(s) under the first JWT_SECRET_KEY`);
      return;
    }
    default:
      throw new UsageError(USAGE);
  }
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.length === 0 || args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return args.length === 0 ? 2 : 0;
  }
  let db: Database | undefined;
  try {
    db = await openDatabase(loadDatabaseUrl(readEnvironment()));
    await migrateUp(db);
    await run(db, args, (line) => process.stdout.write(`${line}\n`));
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    // ConfigError, KeySetError, KeyDecryptionError and database errors alike: one line, no stack.
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await db?.close();
  }
}

main().then((code) => process.exit(code));
