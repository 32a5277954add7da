import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  const user = { type: DataTypes.INTEGER, allowNull: false, references: { model: 'users', key: 'id' }, onDelete: 'CASCADE' };

  // One TOTP credential per user (services/two-factor.ts). `secret` is AES-256-GCM ciphertext only;
  // enabled_at is null while set-up waits for its first code; last_step is the last accepted RFC 6238
  // time step (a code is accepted once: a step at or below it is refused on every instance).
  await qi.createTable('totp_credentials', {
    user_id: { ...user, primaryKey: true },
    secret: { type: DataTypes.TEXT, allowNull: false },
    created_at: { type: DataTypes.DATE, allowNull: false },
    enabled_at: { type: DataTypes.DATE, allowNull: true },
    last_step: { type: DataTypes.BIGINT, allowNull: true },
  }, { transaction });

  // Recovery codes: SHA-256 of each (120 random bits), single use.
  await qi.createTable('recovery_codes', {
    id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
    user_id: user,
    code_hash: { type: DataTypes.STRING(64), allowNull: false },
    created_at: { type: DataTypes.DATE, allowNull: false },
    used_at: { type: DataTypes.DATE, allowNull: true },
  }, { transaction });
  await qi.addIndex('recovery_codes', ['user_id', 'code_hash'], { name: 'recovery_codes_user_code', unique: true, transaction });

  // One-time password-reset links (`npm run users -- reset-link`): SHA-256 of the 256-bit token.
  await qi.createTable('password_resets', {
    token_hash: { type: DataTypes.STRING(64), primaryKey: true },
    user_id: user,
    created_at: { type: DataTypes.DATE, allowNull: false },
    expires_at: { type: DataTypes.DATE, allowNull: false },
    used_at: { type: DataTypes.DATE, allowNull: true },
  }, { transaction });
  await qi.addIndex('password_resets', ['expires_at'], { name: 'password_resets_expires_at', transaction });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('password_resets', { transaction });
  await qi.dropTable('recovery_codes', { transaction });
  await qi.dropTable('totp_credentials', { transaction });
};
