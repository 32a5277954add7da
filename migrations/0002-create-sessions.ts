import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.createTable('sessions', {
    sid: { type: DataTypes.STRING(64), primaryKey: true },
    expires: { type: DataTypes.DATE, allowNull: false },
    data: { type: DataTypes.TEXT, allowNull: false },
    user_id: {
      type: DataTypes.INTEGER,
      allowNull: true,
      references: { model: 'users', key: 'id' },
      onDelete: 'CASCADE',
    },
    public_id: { type: DataTypes.STRING(36), allowNull: true, unique: true },
    ip: { type: DataTypes.STRING(64), allowNull: true },
    user_agent: { type: DataTypes.STRING(512), allowNull: true },
    last_seen_at: { type: DataTypes.DATE, allowNull: true },
    created_at: { type: DataTypes.DATE, allowNull: false },
    updated_at: { type: DataTypes.DATE, allowNull: false },
  }, { transaction });
  await qi.addIndex('sessions', ['user_id'], { name: 'sessions_user_id', transaction });
  await qi.addIndex('sessions', ['expires'], { name: 'sessions_expires', transaction });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('sessions', { transaction });
};
