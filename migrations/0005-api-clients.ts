import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  // Clients of POST /auth/introspect (services/api-clients.ts). Only a SHA-256 of each secret is kept.
  await qi.createTable('api_clients', {
    id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
    name: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    client_id: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    secret_hash: { type: DataTypes.STRING(64), allowNull: false },
    created_at: { type: DataTypes.DATE, allowNull: false },
  }, { transaction });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('api_clients', { transaction });
};
