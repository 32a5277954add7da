import { DataTypes } from 'sequelize';
import type { Migration } from './types.js';

export const up: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.createTable('audit_events', {
    id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
    at: { type: DataTypes.DATE, allowNull: false },
    event: { type: DataTypes.STRING(40), allowNull: false },
    user_id: {
      type: DataTypes.INTEGER,
      allowNull: true,
      references: { model: 'users', key: 'id' },
      onDelete: 'SET NULL',
    },
    username: { type: DataTypes.STRING(64), allowNull: true },
    ip: { type: DataTypes.STRING(64), allowNull: true },
    user_agent: { type: DataTypes.STRING(512), allowNull: true },
    detail: { type: DataTypes.STRING(512), allowNull: true },
  }, { transaction });
  await qi.addIndex('audit_events', ['user_id', 'at'], { name: 'audit_events_user_at', transaction });
  await qi.addIndex('audit_events', ['at'], { name: 'audit_events_at', transaction });

  // Throttle counters (see services/throttle-store.ts); expire is epoch milliseconds.
  await qi.createTable('rate_limits', {
    rl_key: { type: DataTypes.STRING(255), primaryKey: true },
    points: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
    expire: { type: DataTypes.BIGINT, allowNull: true },
  }, { transaction });
  await qi.addIndex('rate_limits', ['expire'], { name: 'rate_limits_expire', transaction });

  // Sessions ended on purpose (sign-out, revoke): tokens carrying their public id are refused
  // until the longest token minted from them has expired.
  await qi.createTable('session_revocations', {
    public_id: { type: DataTypes.STRING(36), primaryKey: true },
    user_id: { type: DataTypes.INTEGER, allowNull: true },
    revoked_at: { type: DataTypes.DATE, allowNull: false },
    expires_at: { type: DataTypes.DATE, allowNull: false },
  }, { transaction });
  await qi.addIndex('session_revocations', ['expires_at'], { name: 'session_revocations_expires_at', transaction });
};

export const down: Migration = async ({ context: { queryInterface: qi, transaction } }) => {
  await qi.dropTable('session_revocations', { transaction });
  await qi.dropTable('rate_limits', { transaction });
  await qi.dropTable('audit_events', { transaction });
};
