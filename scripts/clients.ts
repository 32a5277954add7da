/**
 * API clients of `POST /auth/introspect` from the command line:
 * `npm run clients -- <command>`. Needs only DATABASE_URL (environment or .env).
 */
import { systemClock } from '../clock.js';
import type { Database } from '../models/database.js';
import { ApiClientService } from '../services/api-clients.js';
import { AuditLog } from '../services/audit-log.js';
import { CliError, runCli } from './cli.js';

const USAGE = `usage: npm run clients -- <command>
  create <name>  a new client: prints its client_id and client_secret (shown this once only)
  list           name, client_id, created
  delete <name>  its credentials stop working at once`;

const CLI_ACTOR = { ip: null, userAgent: 'clients-cli' } as const;

async function run(db: Database, args: string[], out: (line: string) => void): Promise<void> {
  const [command, ...rest] = args;
  const clients = new ApiClientService({ clients: db.apiClients, audit: new AuditLog(db, systemClock), clock: systemClock });
  switch (command) {
    case 'create': {
      const [name] = rest;
      if (!name || rest.length !== 1) throw new CliError(USAGE, 2);
      const created = await clients.create(name, CLI_ACTOR);
      out(`client_id: ${created.clientId}`);
      out(`client_secret: ${created.clientSecret}`);
      process.stderr.write('Store the secret now: it is shown only this once (the database keeps only its hash).\n');
      return;
    }
    case 'list': {
      if (rest.length) throw new CliError(USAGE, 2);
      out(['name', 'client_id', 'created'].join('\t'));
      for (const c of await clients.list()) out([c.name, c.clientId, c.createdAt.toISOString()].join('\t'));
      return;
    }
    case 'delete': {
      const [name] = rest;
      if (!name || rest.length !== 1) throw new CliError(USAGE, 2);
      await clients.delete(name, CLI_ACTOR);
      out(`deleted ${name}`);
      return;
    }
    default:
      throw new CliError(USAGE, 2);
  }
}

runCli(USAGE, run);
