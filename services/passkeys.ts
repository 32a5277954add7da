import { randomBytes } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Clock } from '../clock.js';
import type { PasskeyModel } from '../models/passkey.js';
import type { AuditActor, AuditLog } from './audit-log.js';
import type { AuthMethod } from './tokens.js';

/** A sign-in this recent confirms adding a passkey; an older one needs the current password. */
export const RECENT_SIGN_IN_MS = 5 * 60_000;

/** How long a ceremony's challenge may be answered. */
export const CEREMONY_MS = 5 * 60_000;
const NAME_MAX = 64;

/** The relying party: `PUBLIC_URL`'s host (the RP ID) and origin, never the request's Host header. */
export interface RelyingParty {
  id: string;
  origin: string;
  name: string;
}

/** What `/account` lists of a passkey. */
export interface PasskeyInfo {
  id: string;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

/** A ceremony waiting for the browser's answer: kept in the session, used once. */
export interface Ceremony {
  challenge: string;
  /** Epoch ms by the injected clock. */
  at: number;
  /** Registration: the user handle the options carried (`user.id`), stored with the credential. */
  userHandle?: string;
}

export type PasskeyCheck =
  | { ok: true; userId: number; credentialId: string; amr: AuthMethod[] }
  /** `counter`: the signature counter went back (a cloned authenticator?). */
  | { ok: false; reason: 'unknown' | 'invalid' | 'expired' | 'counter' | 'other_user' };

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');

/**
 * Passkeys with @simplewebauthn/server: registration (discoverable
 * credentials, user verification preferred, no attestation), sign-in and
 * second-factor checks, and the list on `/account`. Each check allows only
 * PUBLIC_URL's origin and RP ID, the challenge of its own ceremony (the
 * caller drops it from the session before calling, so it is used once) within
 * {@link CEREMONY_MS}, and a signature counter that moves forward.
 */
export class PasskeyService {
  constructor(private readonly deps: { passkeys: PasskeyModel; audit: AuditLog; rp: RelyingParty; clock: Clock }) {}

  async list(userId: number): Promise<PasskeyInfo[]> {
    const rows = await this.deps.passkeys.findAll({ where: { userId }, order: [['createdAt', 'ASC']] });
    return rows.map(({ id, name, createdAt, lastUsedAt }) => ({ id, name, createdAt, lastUsedAt }));
  }

  async registrationOptions(user: { id: number; username: string }): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.deps.passkeys.findAll({ where: { userId: user.id } });
    const handle = existing[0]?.userHandle ?? randomBytes(32).toString('base64url');
    return generateRegistrationOptions({
      rpName: this.deps.rp.name,
      rpID: this.deps.rp.id,
      userName: user.username,
      userID: Buffer.from(handle, 'base64url'),
      attestationType: 'none',
      excludeCredentials: existing.map((k) => ({ id: k.id, transports: JSON.parse(k.transports) as string[] })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
      timeout: CEREMONY_MS,
    });
  }

  /** Verifies a registration answer, stores the credential and audits it; null when it does not verify. */
  async register(user: { id: number; username: string }, response: RegistrationResponseJSON, ceremony: Ceremony, rawName: string, actor: AuditActor): Promise<PasskeyInfo | null> {
    if (this.deps.clock() - ceremony.at > CEREMONY_MS) return null;
    let verified;
    try {
      verified = await verifyRegistrationResponse({
        response,
        expectedChallenge: ceremony.challenge,
        expectedOrigin: this.deps.rp.origin,
        expectedRPID: this.deps.rp.id,
        requireUserVerification: false,
      });
    } catch {
      return null;
    }
    if (!verified.verified) return null;
    const { credential, credentialDeviceType, credentialBackedUp } = verified.registrationInfo;
    if (await this.deps.passkeys.findByPk(credential.id)) return null;
    const name = rawName.trim().slice(0, NAME_MAX) || 'Passkey';
    const createdAt = new Date(this.deps.clock());
    await this.deps.passkeys.create({
      id: credential.id,
      userId: user.id,
      userHandle: ceremony.userHandle ?? randomBytes(32).toString('base64url'),
      name,
      publicKey: b64url(credential.publicKey),
      counter: credential.counter,
      transports: JSON.stringify(credential.transports ?? []),
      deviceType: credentialDeviceType,
      backedUp: credentialBackedUp,
      createdAt,
      lastUsedAt: null,
    });
    await this.deps.audit.record('passkey_added', { ...actor, userId: user.id, username: user.username }, name);
    return { id: credential.id, name, createdAt, lastUsedAt: null };
  }

  /** Options for a sign-in (any discoverable credential) or a second step (only `userId`'s passkeys). */
  async authenticationOptions(userId?: number): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const allow = userId === undefined ? [] : await this.deps.passkeys.findAll({ where: { userId } });
    return generateAuthenticationOptions({
      rpID: this.deps.rp.id,
      userVerification: 'preferred',
      allowCredentials: allow.map((k) => ({ id: k.id, transports: JSON.parse(k.transports) as string[] })),
      timeout: CEREMONY_MS,
    });
  }

  /**
   * Checks a sign-in answer against the stored credential; on success moves
   * its counter and last-used time on. `amr`: `hwk` for a credential bound to
   * one authenticator, `swk` for a synced one, `user` and `mfa` when the
   * authenticator verified the user (something held plus something known or
   * been).
   */
  async authenticate(response: AuthenticationResponseJSON, ceremony: Ceremony, expectUserId?: number): Promise<PasskeyCheck> {
    if (this.deps.clock() - ceremony.at > CEREMONY_MS) return { ok: false, reason: 'expired' };
    const row = typeof response?.id === 'string' ? await this.deps.passkeys.findByPk(response.id) : null;
    if (!row) return { ok: false, reason: 'unknown' };
    if (expectUserId !== undefined && row.userId !== expectUserId) return { ok: false, reason: 'other_user' };
    let verified;
    try {
      verified = await verifyAuthenticationResponse({
        response,
        expectedChallenge: ceremony.challenge,
        expectedOrigin: this.deps.rp.origin,
        expectedRPID: this.deps.rp.id,
        credential: { id: row.id, publicKey: Buffer.from(row.publicKey, 'base64url'), counter: Number(row.counter), transports: JSON.parse(row.transports) as string[] },
        requireUserVerification: false,
      });
    } catch (err) {
      return { ok: false, reason: err instanceof Error && /counter value/i.test(err.message) ? 'counter' : 'invalid' };
    }
    if (!verified.verified) return { ok: false, reason: 'invalid' };
    const { newCounter, userVerified, credentialDeviceType } = verified.authenticationInfo;
    await row.update({ counter: newCounter, lastUsedAt: new Date(this.deps.clock()) });
    const key: AuthMethod = credentialDeviceType === 'multiDevice' ? 'swk' : 'hwk';
    return { ok: true, userId: row.userId, credentialId: row.id, amr: userVerified ? [key, 'user', 'mfa'] : [key] };
  }

  /** The user a credential id belongs to, for the audit log; null when unknown. */
  async ownerOf(id: unknown): Promise<number | null> {
    return typeof id === 'string' ? ((await this.deps.passkeys.findByPk(id))?.userId ?? null) : null;
  }

  /** Removes one of the user's passkeys and audits it; null when it has none with that id. */
  async remove(user: { id: number; username: string }, id: string, actor: AuditActor): Promise<PasskeyInfo | null> {
    const row = await this.deps.passkeys.findOne({ where: { userId: user.id, id } });
    if (!row) return null;
    await row.destroy();
    await this.deps.audit.record('passkey_removed', { ...actor, userId: user.id, username: user.username }, row.name);
    return { id: row.id, name: row.name, createdAt: row.createdAt, lastUsedAt: row.lastUsedAt };
  }
}
