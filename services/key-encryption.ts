import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** Format tag of the stored ciphertext: `v1.<salt>.<iv>.<tag>.<ciphertext>`, each base64url. */
const VERSION = 'v1';
const INFO = 'token-bridge signing key encryption v1';
const AUTH_TAG_BYTES = 16;

/** A stored private key that none of the JWT_SECRET_KEY entries decrypts. */
export class KeyDecryptionError extends Error {
  override name = 'KeyDecryptionError';
  constructor(readonly kid: string) {
    super(`signing key ${kid} cannot be decrypted with any JWT_SECRET_KEY entry (was the secret changed without \`npm run keys -- reencrypt\`?)`);
  }
}

/** AES-256 key from one secret by HKDF-SHA256, with a per-record salt and the purpose as HKDF info. */
function deriveKey(secret: string, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), salt, info, 32));
}

/** What a sealed value is for: the HKDF info (one derived key per purpose) and the authenticated data (which row it belongs to). */
export interface SealContext {
  info: string;
  aad: string;
}

/**
 * Encrypts `plaintext` under `secret` with AES-256-GCM: a fresh salt and IV
 * per value, the key derived by HKDF for `context.info`, and `context.aad`
 * authenticated, so a ciphertext moved to another row does not decrypt.
 * Stored as `v1.<salt>.<iv>.<tag>.<ciphertext>`, each base64url.
 */
export function seal(plaintext: Buffer, context: SealContext, secret: string): string {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(secret, salt, context.info), iv);
  cipher.setAAD(Buffer.from(context.aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return [VERSION, salt, iv, cipher.getAuthTag(), ciphertext].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.');
}

/** Tries every secret in order; null when none opens it (or the value is not one of ours). */
export function unseal(stored: string, context: SealContext, secrets: readonly string[]): Buffer | null {
  const parts = stored.split('.');
  if (parts.length !== 5 || parts[0] !== VERSION) return null;
  const [salt, iv, tag, ciphertext] = parts.slice(1).map((p) => Buffer.from(p, 'base64url')) as [Buffer, Buffer, Buffer, Buffer];
  // A shorter tag would be accepted by Node's GCM unless its length is fixed: a forged row could pass with a guessed 4-byte tag.
  if (tag.length !== AUTH_TAG_BYTES || iv.length !== 12) return null;
  for (const secret of secrets) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', deriveKey(secret, salt, context.info), iv, { authTagLength: AUTH_TAG_BYTES });
      decipher.setAAD(Buffer.from(context.aad, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch {
      // Not this secret (GCM tag mismatch): try the next one.
    }
  }
  return null;
}

const privateKeyContext = (kid: string): SealContext => ({ info: INFO, aad: kid });

/**
 * Encrypts a private key (PKCS#8 DER) under `secret`; the `kid` is the
 * authenticated data.
 *
 * @example
 * const stored = encryptPrivateKey(privateKey.export({ format: 'der', type: 'pkcs8' }), kid, config.jwt.secrets[0]);
 */
export function encryptPrivateKey(pkcs8: Buffer, kid: string, secret: string): string {
  return seal(pkcs8, privateKeyContext(kid), secret);
}

/** Tries every secret in order; throws {@link KeyDecryptionError} when none opens it. Returns the PKCS#8 DER. */
export function decryptPrivateKey(stored: string, kid: string, secrets: readonly string[]): Buffer {
  const der = unseal(stored, privateKeyContext(kid), secrets);
  if (!der) throw new KeyDecryptionError(kid);
  return der;
}
