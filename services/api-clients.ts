import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { UniqueConstraintError } from 'sequelize';
import type { Clock } from '../clock.js';
import type { ApiClientModel } from '../models/api-client.js';
import type { AuditActor, AuditLog } from './audit-log.js';

/** A client's name: what the operator calls it in `npm run clients`. */
const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Shape of the ids and secrets we issue (base64url); anything else cannot be one of ours. */
const CREDENTIAL = /^[A-Za-z0-9_-]{1,128}$/;

/** What `list` shows of a client: never its secret or hash. */
export interface ApiClientInfo {
  name: string;
  clientId: string;
  createdAt: Date;
}

/** Printed once by `create`; the secret is not kept anywhere. */
export interface NewApiClient extends ApiClientInfo {
  clientSecret: string;
}

/** An operator's mistake with the clients (bad or taken name, unknown client): one line, exit 1. */
export class ApiClientError extends Error {
  override name = 'ApiClientError';
}

function sha256(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Compared when the client id is unknown, so that case costs the same as a wrong secret. */
const NO_SUCH_CLIENT_HASH = sha256(randomBytes(32).toString('base64url'));

/**
 * API clients of the introspection endpoint, shared by `npm run clients` and
 * the route. Secrets are 256 bits from the CSPRNG, shown once and stored as
 * SHA-256: a slow password hash adds nothing to a secret nobody can guess,
 * and a database dump alone never yields one. Every change is audited.
 */
export class ApiClientService {
  constructor(private readonly deps: { clients: ApiClientModel; audit: AuditLog; clock: Clock }) {}

  async create(name: string, actor: AuditActor): Promise<NewApiClient> {
    if (!CLIENT_NAME.test(name)) throw new ApiClientError(`invalid client name ${JSON.stringify(name.slice(0, 80))}: 1 to 64 letters, digits, ., _ or -, starting with a letter or digit`);
    const clientId = randomBytes(16).toString('base64url');
    const clientSecret = randomBytes(32).toString('base64url');
    const createdAt = new Date(this.deps.clock());
    try {
      await this.deps.clients.create({ name, clientId, secretHash: sha256(clientSecret).toString('hex'), createdAt });
    } catch (err) {
      if (err instanceof UniqueConstraintError) throw new ApiClientError(`a client named ${JSON.stringify(name)} exists already`);
      throw err;
    }
    await this.deps.audit.record('client_created', actor, `${name} (${clientId})`);
    return { name, clientId, clientSecret, createdAt };
  }

  async list(): Promise<ApiClientInfo[]> {
    const rows = await this.deps.clients.findAll({ order: [['name', 'ASC']] });
    return rows.map(({ name, clientId, createdAt }) => ({ name, clientId, createdAt }));
  }

  /** Removes the client: its credentials stop working at once on every instance (nothing is cached). */
  async delete(name: string, actor: AuditActor): Promise<void> {
    const row = await this.deps.clients.findOne({ where: { name } });
    if (!row) throw new ApiClientError(`no client named ${JSON.stringify(name.slice(0, 80))}`);
    await row.destroy();
    await this.deps.audit.record('client_deleted', actor, `${row.name} (${row.clientId})`);
  }

  /**
   * The client these credentials belong to, or null. The secret's hash is
   * compared in constant time, and an unknown id costs the same comparison.
   */
  async authenticate(clientId: string, clientSecret: string): Promise<ApiClientInfo | null> {
    const presented = sha256(clientSecret);
    const row = CREDENTIAL.test(clientId) ? await this.deps.clients.findOne({ where: { clientId } }) : null;
    const stored = row ? Buffer.from(row.secretHash, 'hex') : NO_SUCH_CLIENT_HASH;
    const matches = stored.length === presented.length && timingSafeEqual(stored, presented);
    return row && matches ? { name: row.name, clientId: row.clientId, createdAt: row.createdAt } : null;
  }
}
