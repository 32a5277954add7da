import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  // The ES256/RS256 key set (services/signing-keys.ts). private_key is AES-256-GCM ciphertext only.
  await qi.createTable('signing_keys', {
    kid: { type: DataTypes.STRING(64), primaryKey: true },
    alg: { type: DataTypes.STRING(8), allowNull: false },
    state: { type: DataTypes.STRING(10), allowNull: false },
    public_jwk: { type: DataTypes.TEXT, allowNull: false },
    private_key: { type: DataTypes.TEXT, allowNull: false },
    created_at: { type: DataTypes.DATE, allowNull: false },
    activated_at: { type: DataTypes.DATE, allowNull: true },
    retired_at: { type: DataTypes.DATE, allowNull: true },
    // retired_at + token lifetime + clock tolerance: the last moment a previous key verifies.
    verify_until: { type: DataTypes.DATE, allowNull: true },
    revoked_at: { type: DataTypes.DATE, allowNull: true },
  }, { transaction });
  // At most one current key: instances starting together race to insert one, the loser reloads.
  await qi.addIndex('signing_keys', ['state'], {
    name: 'signing_keys_one_current',
    unique: true,
    where: { state: 'current' },
    transaction,
  });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('signing_keys', { transaction });
};
