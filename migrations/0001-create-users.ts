import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.createTable('users', {
    id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
    username: { type: DataTypes.STRING(64), allowNull: false },
    username_key: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    password_hash: { type: DataTypes.STRING(255), allowNull: false },
    roles: { type: DataTypes.JSON, allowNull: false, defaultValue: [] },
    disabled: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
    tokens_valid_after: { type: DataTypes.DATE, allowNull: true },
    created_at: { type: DataTypes.DATE, allowNull: false },
    updated_at: { type: DataTypes.DATE, allowNull: false },
  }, { transaction });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('users', { transaction });
};
