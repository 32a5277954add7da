import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { UniqueConstraintError, type Transaction } from 'sequelize';
import type { Clock } from '../clock.js';
import type { JwtAlgorithm, KeySetSettings } from '../config.js';
import type { ChangeFeed } from '../models/change-feed.js';
import type { Database } from '../models/database.js';
import type { KeyState, SigningKeyRow } from '../models/signing-key.js';
import type { AuditActor, AuditLog } from './audit-log.js';
import { decryptPrivateKey, encryptPrivateKey } from './key-encryption.js';

export type AsymmetricAlgorithm = Exclude<JwtAlgorithm, 'HS256'>;

/** How often every instance reloads the key set (a change reaches each one within this, well under 5 s). */
export const KEY_RELOAD_MS = 2_000;
/** Least time between two reloads caused by a token with an unknown `kid` (a flood of forged kids costs one query a second). */
export const UNKNOWN_KID_RELOAD_MS = 1_000;

/** The public members a JWKS entry may carry; everything else (d, p, q, dp, dq, qi, k …) is dropped. */
const PUBLIC_MEMBERS = ['kty', 'crv', 'x', 'y', 'n', 'e'] as const;

/** A public JWK as published in the JWKS. */
export interface PublicJwk {
  kty: string;
  kid: string;
  alg: string;
  use: 'sig';
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
}

/** One line of `npm run keys -- list`. */
export interface KeyInfo {
  kid: string;
  alg: string;
  state: KeyState;
  createdAt: Date;
  activatedAt: Date | null;
  retiredAt: Date | null;
  verifyUntil: Date | null;
  revokedAt: Date | null;
}

/** An operator's mistake with the key set (unknown kid, wrong algorithm): one line, exit 1. */
export class KeySetError extends Error {
  override name = 'KeySetError';
}

function isAsymmetric(alg: string): alg is AsymmetricAlgorithm {
  return alg === 'ES256' || alg === 'RS256';
}

/** A fresh key pair: P-256 for ES256, RSA 2048 for RS256. */
function generate(alg: AsymmetricAlgorithm): { publicKey: KeyObject; privateKey: KeyObject } {
  return alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
}

/** Only the public members of a key, with kid, alg and use. */
export function publicJwk(key: KeyObject | JsonWebKey, kid: string, alg: string): PublicJwk {
  const jwk = 'export' in key && typeof key.export === 'function' ? (key as KeyObject).export({ format: 'jwk' }) : (key as JsonWebKey);
  const out: Record<string, unknown> = { kty: jwk.kty, kid, alg, use: 'sig' };
  for (const member of PUBLIC_MEMBERS) if (typeof jwk[member] === 'string') out[member] = jwk[member];
  return out as unknown as PublicJwk;
}

/** How long after its retirement a previous key still verifies: the last token it signed, plus clock leeway. */
function verifyWindowMs(settings: Pick<KeySetSettings, 'expiresInSeconds' | 'clockToleranceSeconds'>): number {
  return (settings.expiresInSeconds + settings.clockToleranceSeconds) * 1000;
}

/**
 * The key-set sequences on the `signing_keys` table, shared by the app
 * (create on first start, reload) and `npm run keys`. Each change is one
 * transaction; "one current key" is enforced by a unique partial index.
 */
export class KeySetStore {
  constructor(
    private readonly database: Pick<Database, 'signingKeys' | 'sequelize'>,
    private readonly settings: KeySetSettings,
    private readonly now: Clock,
  ) {}

  get algorithm(): JwtAlgorithm {
    return this.settings.algorithm;
  }

  get secrets(): readonly string[] {
    return this.settings.secrets;
  }

  rows(): Promise<SigningKeyRow[]> {
    return this.database.signingKeys.findAll({ order: [['createdAt', 'ASC'], ['kid', 'ASC']] });
  }

  async list(): Promise<KeyInfo[]> {
    return (await this.rows()).map(({ kid, alg, state, createdAt, activatedAt, retiredAt, verifyUntil, revokedAt }) => ({
      kid, alg, state, createdAt, activatedAt, retiredAt, verifyUntil, revokedAt,
    }));
  }

  /**
   * First start: a current key when there is none. Instances starting together
   * all try; the unique index lets one insert win and the others find it.
   * Returns the kid created, or null when a current key already existed.
   */
  async ensureCurrent(): Promise<string | null> {
    const alg = this.requireAsymmetric();
    const current = await this.database.signingKeys.findOne({ where: { state: 'current' } });
    if (current) {
      if (current.alg !== alg) {
        throw new KeySetError(`the current signing key ${current.kid} is ${current.alg} but JWT_ALGORITHM is ${alg}: run \`npm run keys -- rotate\` with JWT_ALGORITHM=${alg}`);
      }
      return null;
    }
    try {
      return (await this.insert(alg, 'current')).kid;
    } catch (err) {
      if (err instanceof UniqueConstraintError) return null;
      throw err;
    }
  }

  /** `keys add`: a new key in state `next` (published at once, not signing yet). */
  async add(): Promise<string> {
    return (await this.insert(this.requireAsymmetric(), 'next')).kid;
  }

  /**
   * `keys rotate`: the oldest `next` key of the configured algorithm (made now
   * if there is none) becomes current; the old current becomes previous and
   * verifies its tokens until they have expired.
   */
  async rotate(): Promise<{ current: string; previous: string | null }> {
    const alg = this.requireAsymmetric();
    return this.database.sequelize.transaction(async (transaction) => {
      const at = new Date(this.now());
      const next =
        (await this.database.signingKeys.findOne({ where: { state: 'next', alg }, order: [['createdAt', 'ASC']], transaction })) ??
        (await this.insert(alg, 'next', transaction));
      const previous = await this.retireCurrent(at, transaction);
      await next.update({ state: 'current', activatedAt: at }, { transaction });
      return { current: next.kid, previous };
    });
  }

  /**
   * `keys revoke <kid>`: the key never verifies again and its private key is
   * erased. Revoking the current key promotes a next one (made now if needed),
   * so signing goes on. False when it was revoked already.
   */
  async revoke(kid: string): Promise<{ changed: boolean; current: string | null }> {
    return this.database.sequelize.transaction(async (transaction) => {
      const row = await this.database.signingKeys.findByPk(kid, { transaction });
      if (!row) throw new KeySetError(`no signing key with kid ${JSON.stringify(kid.slice(0, 64))}`);
      if (row.state === 'revoked') return { changed: false, current: null };
      const wasCurrent = row.state === 'current';
      const at = new Date(this.now());
      await row.update({ state: 'revoked', revokedAt: at, privateKey: '' }, { transaction });
      if (!wasCurrent) return { changed: true, current: null };
      const alg = isAsymmetric(row.alg) ? row.alg : this.requireAsymmetric();
      const next =
        (await this.database.signingKeys.findOne({ where: { state: 'next', alg }, order: [['createdAt', 'ASC']], transaction })) ??
        (await this.insert(alg, 'next', transaction));
      await next.update({ state: 'current', activatedAt: at }, { transaction });
      return { changed: true, current: next.kid };
    });
  }

  /**
   * `keys reencrypt`: every stored private key decrypted with any secret of
   * the list and written again under the first. Returns how many were rewritten.
   */
  async reencrypt(): Promise<number> {
    const [first] = this.settings.secrets;
    return this.database.sequelize.transaction(async (transaction) => {
      const rows = await this.database.signingKeys.findAll({ transaction });
      let count = 0;
      for (const row of rows) {
        if (!row.privateKey) continue;
        const der = decryptPrivateKey(row.privateKey, row.kid, this.settings.secrets);
        await row.update({ privateKey: encryptPrivateKey(der, row.kid, first!) }, { transaction });
        count += 1;
      }
      return count;
    });
  }

  private async retireCurrent(at: Date, transaction: Transaction): Promise<string | null> {
    const current = await this.database.signingKeys.findOne({ where: { state: 'current' }, transaction });
    if (!current) return null;
    // Retired before the next key is promoted: the unique index allows one current at any moment.
    await current.update({ state: 'previous', retiredAt: at, verifyUntil: new Date(at.getTime() + verifyWindowMs(this.settings)) }, { transaction });
    return current.kid;
  }

  private async insert(alg: AsymmetricAlgorithm, state: 'next' | 'current', transaction?: Transaction): Promise<SigningKeyRow> {
    const kid = randomBytes(12).toString('base64url');
    const { publicKey, privateKey } = generate(alg);
    const at = new Date(this.now());
    return this.database.signingKeys.create(
      {
        kid,
        alg,
        state,
        publicJwk: JSON.stringify(publicJwk(publicKey, kid, alg)),
        privateKey: encryptPrivateKey(privateKey.export({ format: 'der', type: 'pkcs8' }), kid, this.settings.secrets[0]!),
        createdAt: at,
        activatedAt: state === 'current' ? at : null,
        retiredAt: null,
        verifyUntil: null,
        revokedAt: null,
      },
      transaction ? { transaction } : {},
    );
  }

  private requireAsymmetric(): AsymmetricAlgorithm {
    const alg = this.settings.algorithm;
    if (!isAsymmetric(alg)) throw new KeySetError(`JWT_ALGORITHM is ${alg}: the key set is for ES256 or RS256 (set JWT_ALGORITHM)`);
    return alg;
  }
}

/** A key the app may verify with; `privateKey` only for the current key (and next, decrypted ahead). */
interface LoadedKey {
  kid: string;
  state: KeyState;
  publicKey: KeyObject;
  privateKey: KeyObject | null;
  jwk: PublicJwk;
  /** Epoch ms after which it no longer verifies (previous keys), or Infinity. */
  verifyUntil: number;
}

/** The key that signs new tokens. */
export interface Signer {
  kid: string;
  alg: AsymmetricAlgorithm;
  privateKey: KeyObject;
}

/**
 * The app's in-memory copy of the key set, as `KeyObject`s: the current key
 * signs; current, next and unexpired previous keys verify and are published.
 * Reloaded every {@link KEY_RELOAD_MS} by an unref'd timer, and on demand when
 * the injected clock says the copy is older than that ({@link fresh}), so
 * every instance follows a change within 2 s. Only keys not seen before are
 * decrypted.
 */
export class SigningKeys {
  private keys = new Map<string, LoadedKey>();
  private signing: Signer | null = null;
  private loadedAt = -Infinity;
  private unknownKidReloadAt = -Infinity;
  private reloading: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly store: KeySetStore,
    private readonly settings: KeySetSettings,
    private readonly now: Clock,
    private readonly logger: Pick<Logger, 'error'> | undefined,
  ) {}

  /**
   * Creates the first key when there is none, loads the set (every current
   * and next private key must decrypt: a {@link KeyDecryptionError} stops the
   * start) and starts the reload timer. Call {@link stop} when the app closes.
   */
  static async open(options: { database: Database; settings: KeySetSettings; clock: Clock; logger?: Pick<Logger, 'error'>; reloadMs?: number }): Promise<SigningKeys> {
    const store = new KeySetStore(options.database, options.settings, options.clock);
    await store.ensureCurrent();
    const keys = new SigningKeys(store, options.settings, options.clock, options.logger);
    await keys.load(true);
    keys.timer = setInterval(() => void keys.reload(), options.reloadMs ?? KEY_RELOAD_MS);
    keys.timer.unref();
    return keys;
  }

  get algorithm(): AsymmetricAlgorithm {
    return this.settings.algorithm as AsymmetricAlgorithm;
  }

  /** The sequences of `npm run keys`, for the key-set service on this instance. */
  get keySet(): KeySetStore {
    return this.store;
  }

  /** The current key. */
  signer(): Signer {
    if (!this.signing) throw new Error('no current signing key is loaded');
    return this.signing;
  }

  /** The public key for a token's `kid`, when it is one of ours that may verify now; undefined otherwise. */
  verifier(kid: string): KeyObject | undefined {
    const key = this.keys.get(kid);
    if (!key || this.now() > key.verifyUntil) return undefined;
    return key.publicKey;
  }

  /** The JWKS entries: current, next and still-verifying previous keys, public members only. */
  jwks(): PublicJwk[] {
    const now = this.now();
    return [...this.keys.values()].filter((k) => now <= k.verifyUntil).map((k) => k.jwk);
  }

  /** A reload when the copy is older than {@link KEY_RELOAD_MS} by the injected clock; undefined (nothing to await) otherwise. */
  fresh(): Promise<void> | undefined {
    if (this.now() - this.loadedAt < KEY_RELOAD_MS) return undefined;
    return this.reload();
  }

  /** A token named a kid we do not know: maybe a key made on another instance a moment ago. At most one such reload a second. */
  reloadForUnknownKid(): Promise<void> | undefined {
    const now = this.now();
    if (now - this.unknownKidReloadAt < UNKNOWN_KID_RELOAD_MS) return undefined;
    this.unknownKidReloadAt = now;
    return this.reload();
  }

  /** Reloads now (joining one in flight); a failure is logged and the previous copy kept. */
  reload(): Promise<void> {
    this.reloading ??= this.load(false)
      .catch((err: unknown) => this.logger?.error({ err }, 'reloading the signing keys failed; keeping the loaded ones'))
      .finally(() => {
        this.reloading = null;
      });
    return this.reloading;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async load(strict: boolean): Promise<void> {
    const rows = await this.store.rows();
    const now = this.now();
    const window = verifyWindowMs(this.settings);
    const next = new Map<string, LoadedKey>();
    let signing: Signer | null = null;
    for (const row of rows) {
      // Only keys of the configured algorithm verify: a key never serves two algorithms.
      if (row.state === 'revoked' || row.alg !== this.settings.algorithm) continue;
      const verifyUntil =
        row.state === 'previous'
          ? Math.max(row.verifyUntil?.getTime() ?? 0, (row.retiredAt?.getTime() ?? 0) + window)
          : Infinity;
      if (verifyUntil < now) continue;
      const known = this.keys.get(row.kid);
      let privateKey = known?.privateKey ?? null;
      if (!privateKey && (row.state === 'current' || row.state === 'next')) {
        try {
          privateKey = createPrivateKey({ key: decryptPrivateKey(row.privateKey, row.kid, this.settings.secrets), format: 'der', type: 'pkcs8' });
        } catch (err) {
          if (strict) throw err;
          this.logger?.error({ err, kid: row.kid }, 'a signing key cannot be decrypted');
        }
      }
      const jwk = JSON.parse(row.publicJwk) as JsonWebKey;
      const publicKey = known?.publicKey ?? createPublicKey({ key: jwk, format: 'jwk' });
      next.set(row.kid, { kid: row.kid, state: row.state, publicKey, privateKey, jwk: publicJwk(jwk, row.kid, row.alg), verifyUntil });
      if (row.state === 'current' && privateKey) signing = { kid: row.kid, alg: this.algorithm, privateKey };
    }
    if (!signing) {
      if (strict) throw new KeySetError('no usable current signing key');
      // Keep signing with the old key while it still verifies: better than a 500 on every mint.
      const old = this.signing && next.get(this.signing.kid);
      signing = old ? this.signing : null;
      if (!signing) this.logger?.error('no usable current signing key: minting fails until one is loaded');
    }
    this.keys = next;
    this.signing = signing;
    this.loadedAt = now;
  }
}

/** Who ran a key change, for the audit log (the CLI: no user, no address). */
export type KeyActor = Pick<AuditActor, 'ip' | 'userAgent'>;

/**
 * Every key-set change as one call: the change (one transaction), this
 * instance's reload (so a revoked key's tokens are refused here at once), and
 * the audit event. `npm run keys` and tests call these.
 */
export class KeySetService {
  constructor(private readonly deps: { store: KeySetStore; audit: AuditLog; keys?: SigningKeys; changes?: ChangeFeed }) {}

  list(): Promise<KeyInfo[]> {
    return this.deps.store.list();
  }

  async add(actor: KeyActor): Promise<string> {
    const kid = await this.deps.store.add();
    await this.changed();
    await this.deps.audit.record('key_added', actor, kid);
    return kid;
  }

  async rotate(actor: KeyActor): Promise<{ current: string; previous: string | null }> {
    const outcome = await this.deps.store.rotate();
    await this.changed();
    await this.deps.audit.record('key_rotated', actor, `${outcome.previous ?? '-'} -> ${outcome.current}`);
    return outcome;
  }

  async revoke(kid: string, actor: KeyActor): Promise<{ changed: boolean; current: string | null }> {
    const outcome = await this.deps.store.revoke(kid);
    await this.changed();
    if (outcome.changed) await this.deps.audit.record('key_revoked', actor, outcome.current ? `${kid} (current now ${outcome.current})` : kid);
    return outcome;
  }

  /** This instance reloads now; the others hear of it through the change feed (and reload every 2 s anyway). */
  private async changed(): Promise<void> {
    await this.deps.keys?.reload();
    await this.deps.changes?.publish({ kind: 'keys' });
  }

  async reencrypt(actor: KeyActor): Promise<number> {
    const count = await this.deps.store.reencrypt();
    await this.deps.audit.record('keys_reencrypted', actor, String(count));
    return count;
  }
}
