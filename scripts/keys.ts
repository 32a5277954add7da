/**
 * The ES256/RS256 signing key set from the command line: `npm run keys -- <command>`.
 * Needs only DATABASE_URL and JWT_SECRET_KEY (environment or .env), and
 * JWT_ALGORITHM for add and rotate; never SESSION_SECRET.
 */
import { systemClock } from '../clock.js';
import { loadKeySetSettings, readEnvironment } from '../config.js';
import type { Database } from '../models/database.js';
import { AuditLog } from '../services/audit-log.js';
import { KeySetService, KeySetStore } from '../services/signing-keys.js';
import { TwoFactorService } from '../services/two-factor.js';
import { CliError, runCli } from './cli.js';

const USAGE = `usage: npm run keys -- <command>
  list          kid, algorithm, state, created
  add           a new key in state next (published at once, not signing yet)
  rotate        next (made now if none) becomes current; current becomes previous
  revoke <kid>  the key never verifies again (a leaked key)
  reencrypt     rewrites every private key and two-factor secret under the first JWT_SECRET_KEY`;

const CLI_ACTOR = { ip: null, userAgent: 'keys-cli' } as const;

async function run(db: Database, args: string[], out: (line: string) => void): Promise<void> {
  const [command, ...rest] = args;
  const env = readEnvironment();
  const store = new KeySetStore(db, loadKeySetSettings(env), systemClock);
  const keys = new KeySetService({ store, audit: new AuditLog(db, systemClock), changes: db.changes });
  const day = (d: Date | null) => d?.toISOString() ?? '-';
  switch (command) {
    case 'list': {
      if (rest.length) throw new CliError(USAGE, 2);
      out(['kid', 'alg', 'state', 'created', 'verifies until'].join('\t'));
      for (const k of await keys.list()) {
        const until = k.state === 'previous' ? day(k.verifyUntil) : k.state === 'revoked' ? `revoked ${day(k.revokedAt)}` : '-';
        out([k.kid, k.alg, k.state, day(k.createdAt), until].join('\t'));
      }
      return;
    }
    case 'add': {
      if (rest.length) throw new CliError(USAGE, 2);
      out(`added ${await keys.add(CLI_ACTOR)} (next: published now, signs after \`rotate\`)`);
      return;
    }
    case 'rotate': {
      if (rest.length) throw new CliError(USAGE, 2);
      const { current, previous } = await keys.rotate(CLI_ACTOR);
      out(`current ${current}${previous ? `; previous ${previous} verifies its tokens until they expire` : ''}`);
      return;
    }
    case 'revoke': {
      const [kid] = rest;
      if (!kid || rest.length !== 1) throw new CliError(USAGE, 2);
      const outcome = await keys.revoke(kid, CLI_ACTOR);
      out(outcome.changed ? `revoked ${kid}${outcome.current ? `; current now ${outcome.current}` : ''}` : `${kid} was revoked already (no change)`);
      return;
    }
    case 'reencrypt': {
      if (rest.length) throw new CliError(USAGE, 2);
      // The TOTP secrets are sealed under JWT_SECRET_KEY too: both follow a new first entry.
      const totp = new TwoFactorService({ database: db, secrets: store.secrets, issuer: '', clock: systemClock });
      const secrets = await totp.reencrypt();
      out(`re-encrypted ${await keys.reencrypt(CLI_ACTOR)} private key(s) and ${secrets} two-factor secret(s) under the first JWT_SECRET_KEY`);
      return;
    }
    default:
      throw new CliError(USAGE, 2);
  }
}

runCli(USAGE, run);
