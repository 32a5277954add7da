import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  // WebAuthn credentials (services/passkeys.ts): the public key only, never a secret.
  await qi.createTable('passkeys', {
    // The credential id, base64url (authenticators make them up to 1,023 bytes).
    id: { type: DataTypes.STRING(1400), primaryKey: true },
    user_id: { type: DataTypes.INTEGER, allowNull: false, references: { model: 'users', key: 'id' }, onDelete: 'CASCADE' },
    // The WebAuthn user handle (random, base64url): the same for all of one user's passkeys.
    user_handle: { type: DataTypes.STRING(64), allowNull: false },
    name: { type: DataTypes.STRING(64), allowNull: false },
    public_key: { type: DataTypes.TEXT, allowNull: false },
    counter: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0 },
    transports: { type: DataTypes.STRING(200), allowNull: false, defaultValue: '[]' },
    device_type: { type: DataTypes.STRING(16), allowNull: false },
    backed_up: { type: DataTypes.BOOLEAN, allowNull: false },
    created_at: { type: DataTypes.DATE, allowNull: false },
    last_used_at: { type: DataTypes.DATE, allowNull: true },
  }, { transaction });
  await qi.addIndex('passkeys', ['user_id'], { name: 'passkeys_user', transaction });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('passkeys', { transaction });
};
