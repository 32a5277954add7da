import { hash, verify } from '@node-rs/argon2';
import { dictionary } from '@zxcvbn-ts/language-common';

/**
 * OWASP Password Storage Cheat Sheet: argon2id (the library's default
 * algorithm), 19 MiB, 2 iterations, 1 lane.
 */
export const ARGON2_PARAMS = Object.freeze({
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
});

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 128;

/** ~49,000 most common passwords (zxcvbn-ts list), lower-cased for lookup. */
const commonPasswords: ReadonlySet<string> = new Set(
  (dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()),
);

/** Number of entries in the common-password list (for documentation and tests). */
export const commonPasswordCount = commonPasswords.size;

/**
 * Checks a new password against the policy. Returns a problem to show the
 * user, or null when the password is acceptable. Lengths count characters
 * (code points), not bytes.
 */
export function passwordProblem(password: string, username: string): string | null {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH) return `Use at least ${PASSWORD_MIN_LENGTH} characters.`;
  if (length > PASSWORD_MAX_LENGTH) return `Use at most ${PASSWORD_MAX_LENGTH} characters.`;
  if (password.normalize('NFKC').toLowerCase() === username.normalize('NFKC').toLowerCase()) {
    return 'The password must not be your username.';
  }
  if (commonPasswords.has(password.toLowerCase())) {
    return 'This password is one of the most common ones; choose another.';
  }
  return null;
}

/** Hashes on libuv's thread pool (never on the event loop). */
export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_PARAMS);
}

/** Constant-time check of a password against a stored argon2 hash; false on any malformed hash. */
export async function verifyPassword(storedHash: string, password: string): Promise<boolean> {
  try {
    return await verify(storedHash, password);
  } catch {
    return false;
  }
}

/**
 * True when a stored hash is not argon2id at (at least) the current
 * parameters, so it should be replaced at the next successful sign-in.
 */
export function needsRehash(storedHash: string): boolean {
  const match = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(storedHash);
  if (!match) return true;
  const [, m, t, p] = match.map(Number);
  return m! < ARGON2_PARAMS.memoryCost || t! < ARGON2_PARAMS.timeCost || p! < ARGON2_PARAMS.parallelism;
}

let dummyHash: Promise<string> | undefined;

/**
 * Spends the same work as a real verification, so a login for an unknown
 * name takes as long as one for a known name with a wrong password.
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummyHash ??= hashPassword('dummy password that never matches anything');
  await verifyPassword(await dummyHash, password);
  return false;
}
