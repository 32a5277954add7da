import type { Migration } from './types.js';
import * as createUsers from './0001-create-users.js';
import * as createSessions from './0002-create-sessions.js';
import * as accountSecurity from './0003-account-security.js';
import * as signingKeys from './0004-signing-keys.js';
import * as apiClients from './0005-api-clients.js';
import * as twoFactor from './0006-two-factor-and-resets.js';
import * as passkeys from './0007-passkeys.js';

/**
 * Every migration in order. Listed here rather than globbed so the same list
 * runs from source (tsx) and from the `dist/` build.
 */
export const migrations: ReadonlyArray<{ name: string; up: Migration; down: Migration }> = [
  { name: '0001-create-users', ...createUsers },
  { name: '0002-create-sessions', ...createSessions },
  { name: '0003-account-security', ...accountSecurity },
  { name: '0004-signing-keys', ...signingKeys },
  { name: '0005-api-clients', ...apiClients },
  { name: '0006-two-factor-and-resets', ...twoFactor },
  { name: '0007-passkeys', ...passkeys },
];
