import { createHash, randomBytes } from 'node:crypto';
import { generateSecret, generateURI, verify } from 'otplib';
import QRCode from 'qrcode';
import { Op, UniqueConstraintError } from 'sequelize';
import type { Clock } from '../clock.js';
import { TwoFactorUnavailableError } from '../errors.js';
import type { Database } from '../models/database.js';
import type { AuditActor, AuditLog } from './audit-log.js';
import { seal, unseal, type SealContext } from './key-encryption.js';

/** RFC 6238 as every authenticator app reads it: SHA-1, 6 digits, 30 s (otplib's defaults, spelled out in the URI). */
export const TOTP_PERIOD_SECONDS = 30;
const CODE_SHAPE = /^\d{6}$/;
/** How many recovery codes a set has. */
export const RECOVERY_CODE_COUNT = 10;
/** 24 base32 characters: 120 random bits each (ASVS 6.5.2 asks for at least 112 when the code is stored with a fast hash). */
const RECOVERY_CODE_LENGTH = 24;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** What a set-up page shows: the base32 secret, its otpauth:// URI and that URI as an SVG QR code. */
export interface TotpEnrolment {
  secret: string;
  uri: string;
  qrSvg: string;
}

export interface TwoFactorStatus {
  enabled: boolean;
  recoveryCodesLeft: number;
}

const secretContext = (userId: number): SealContext => ({ info: 'token-bridge totp secret v1', aad: `totp:${userId}` });

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** A recovery code as typed: case, spaces and dashes do not matter. */
export function normalizeRecoveryCode(typed: string): string {
  return typed.toLowerCase().replace(/[\s-]/g, '');
}

/** A new code, shown as four groups of six (`k7m2qx-…`). */
function newRecoveryCode(): string {
  const bytes = randomBytes(RECOVERY_CODE_LENGTH);
  // 256 is a multiple of 32: every character is uniform.
  const chars = [...bytes].map((b) => BASE32[b % 32]).join('');
  return chars.match(/.{6}/g)!.join('-');
}

/**
 * TOTP credentials and recovery codes on the database (otplib for RFC 6238,
 * qrcode for the set-up picture). Secrets are encrypted at rest with the
 * signing keys' helper (AES-256-GCM, HKDF from JWT_SECRET_KEY, the user id
 * as authenticated data); recovery codes are stored as SHA-256 only. Every
 * "once" is one conditional UPDATE, so it holds across instances:
 *
 * - a TOTP code is accepted only for a time step after the last accepted one
 *   (`last_step`), one step of tolerance either way;
 * - a recovery code is spent by the UPDATE that sets its `used_at`.
 *
 * Throttling, passwords, sessions and audit are the callers' (SignInService).
 */
export class TwoFactorService {
  constructor(
    private readonly deps: {
      database: Pick<Database, 'totpCredentials' | 'recoveryCodes' | 'sequelize'>;
      /** JWT_SECRET_KEY's entries: the first encrypts, all may decrypt. */
      secrets: readonly string[];
      /** The issuer name authenticator apps show. */
      issuer: string;
      clock: Clock;
    },
  ) {}

  async status(userId: number): Promise<TwoFactorStatus> {
    const { totpCredentials, recoveryCodes } = this.deps.database;
    const [credential, left] = await Promise.all([
      totpCredentials.findByPk(userId),
      recoveryCodes.count({ where: { userId, usedAt: null } }),
    ]);
    const enabled = Boolean(credential?.enabledAt);
    return { enabled, recoveryCodesLeft: enabled ? left : 0 };
  }

  async isEnabled(userId: number): Promise<boolean> {
    return Boolean((await this.deps.database.totpCredentials.findByPk(userId))?.enabledAt);
  }

  /**
   * The secret set-up shows: a pending one made on the first visit and kept
   * until it is confirmed (so reloading the page shows the same QR code), or
   * null when two-factor authentication is on already.
   */
  async enrolment(user: { id: number; username: string }): Promise<TotpEnrolment | null> {
    const { totpCredentials } = this.deps.database;
    let row = await totpCredentials.findByPk(user.id);
    if (row?.enabledAt) return null;
    if (!row) {
      const secret = generateSecret();
      await totpCredentials
        .create({ userId: user.id, secret: this.seal(user.id, secret), createdAt: new Date(this.deps.clock()), enabledAt: null, lastStep: null })
        .catch((err: unknown) => {
          // Two tabs at once: the other one's row wins.
          if (!(err instanceof UniqueConstraintError)) throw err;
        });
      row = await totpCredentials.findByPk(user.id);
      if (!row) throw new Error('the pending TOTP credential vanished');
    }
    const secret = this.unseal(user.id, row.secret);
    const uri = generateURI({ issuer: this.deps.issuer, label: user.username, secret, period: TOTP_PERIOD_SECONDS });
    const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
    return { secret, uri, qrSvg };
  }

  /**
   * Confirms the pending set-up with a code from it: two-factor is on and a
   * first set of recovery codes is returned (shown once). Null when the code
   * is wrong or there is nothing pending.
   */
  async enable(userId: number, code: string): Promise<string[] | null> {
    const row = await this.deps.database.totpCredentials.findByPk(userId);
    if (!row || row.enabledAt) return null;
    if (!(await this.acceptCode(userId, row.secret, row.lastStep, code))) return null;
    await this.deps.database.totpCredentials.update({ enabledAt: new Date(this.deps.clock()) }, { where: { userId, enabledAt: null } });
    return this.newRecoveryCodes(userId);
  }

  /** A code from the user's enabled authenticator, accepted once. */
  async checkCode(userId: number, code: string): Promise<boolean> {
    const row = await this.deps.database.totpCredentials.findByPk(userId);
    if (!row?.enabledAt) return false;
    return this.acceptCode(userId, row.secret, row.lastStep, code);
  }

  /** Spends one unused recovery code of the user; false when it is not one (or was used). */
  async useRecoveryCode(userId: number, typed: string): Promise<boolean> {
    const normalized = normalizeRecoveryCode(typed);
    if (normalized.length !== RECOVERY_CODE_LENGTH || !(await this.isEnabled(userId))) return false;
    const [spent] = await this.deps.database.recoveryCodes.update(
      { usedAt: new Date(this.deps.clock()) },
      { where: { userId, codeHash: sha256(normalized), usedAt: null } },
    );
    return spent === 1;
  }

  /** A fresh set of recovery codes; every earlier code stops working. */
  async newRecoveryCodes(userId: number): Promise<string[]> {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
    const createdAt = new Date(this.deps.clock());
    await this.deps.database.sequelize.transaction(async (transaction) => {
      await this.deps.database.recoveryCodes.destroy({ where: { userId }, transaction });
      await this.deps.database.recoveryCodes.bulkCreate(
        codes.map((code) => ({ userId, codeHash: sha256(normalizeRecoveryCode(code)), createdAt, usedAt: null })),
        { transaction },
      );
    });
    return codes;
  }

  /** Turns two-factor authentication off: the secret and every recovery code are deleted. False when it was off. */
  async disable(userId: number): Promise<boolean> {
    const { totpCredentials, recoveryCodes, sequelize } = this.deps.database;
    return sequelize.transaction(async (transaction) => {
      const wasOn = Boolean((await totpCredentials.findByPk(userId, { transaction }))?.enabledAt);
      // A pending (never confirmed) set-up goes too.
      await totpCredentials.destroy({ where: { userId }, transaction });
      await recoveryCodes.destroy({ where: { userId }, transaction });
      return wasOn;
    });
  }

  /**
   * `npm run users -- reset-2fa` (a lost device, no recovery code left):
   * two-factor off, its secret and recovery codes deleted, audited. The
   * user signs in with the password alone and may set it up again. False
   * (nothing recorded) when it was off.
   */
  async resetForLostDevice(user: { id: number; username: string }, actor: AuditActor, audit: AuditLog): Promise<boolean> {
    const wasOn = await this.disable(user.id);
    if (wasOn) await audit.record('two_factor_reset', { ...actor, userId: user.id, username: user.username });
    return wasOn;
  }

  /**
   * `npm run keys -- reencrypt`: every stored TOTP secret written again under
   * the first JWT_SECRET_KEY, in one transaction. A secret no entry opens
   * stops it with a line naming the user id (nothing is half rewritten).
   */
  async reencrypt(): Promise<number> {
    const { totpCredentials, sequelize } = this.deps.database;
    return sequelize.transaction(async (transaction) => {
      const rows = await totpCredentials.findAll({ transaction });
      for (const row of rows) {
        const plain = unseal(row.secret, secretContext(row.userId), this.deps.secrets);
        if (!plain) throw new Error(`the two-factor secret of user ${row.userId} cannot be decrypted with any JWT_SECRET_KEY entry`);
        await row.update({ secret: this.seal(row.userId, plain.toString('utf8')) }, { transaction });
      }
      return rows.length;
    });
  }

  /**
   * Checks `code` against the secret within one time step either way, for a
   * step after `lastStep` only, then claims that step with a conditional
   * UPDATE: of two requests with the same code (any instance), one wins.
   */
  private async acceptCode(userId: number, sealed: string, lastStep: number | string | null, code: string): Promise<boolean> {
    if (!CODE_SHAPE.test(code)) return false;
    const secret = this.unseal(userId, sealed);
    const epoch = Math.floor(this.deps.clock() / 1000);
    const after = lastStep === null ? undefined : Number(lastStep);
    let result: Awaited<ReturnType<typeof verify>>;
    try {
      result = await verify({ secret, token: code, epoch, epochTolerance: TOTP_PERIOD_SECONDS, period: TOTP_PERIOD_SECONDS, ...(after === undefined ? {} : { afterTimeStep: after }) });
    } catch {
      // e.g. a last step ahead of this clock (it was set back): nothing is accepted until it catches up.
      return false;
    }
    // otplib's result type covers HOTP too; a TOTP match carries its time step.
    if (!result.valid || !('timeStep' in result)) return false;
    const step = result.timeStep;
    const [claimed] = await this.deps.database.totpCredentials.update(
      { lastStep: step },
      { where: { userId, [Op.or]: [{ lastStep: null }, { lastStep: { [Op.lt]: step } }] } },
    );
    return claimed === 1;
  }

  private seal(userId: number, secret: string): string {
    return seal(Buffer.from(secret, 'utf8'), secretContext(userId), this.deps.secrets[0]!);
  }

  private unseal(userId: number, stored: string): string {
    const plain = unseal(stored, secretContext(userId), this.deps.secrets);
    if (!plain) throw new TwoFactorUnavailableError();
    return plain.toString('utf8');
  }
}
