import {
  DataTypes,
  type Model,
  type CreationOptional,
  type InferAttributes,
  type InferCreationAttributes,
  type ModelStatic,
  type Sequelize,
} from 'sequelize';

/** Kinds of security events recorded in the audit log. */
export const AUDIT_EVENTS = [
  'registered',
  'signed_in',
  'sign_in_failed',
  'throttled',
  'signed_out',
  'token_minted',
  'password_changed',
  'session_revoked',
  'signed_out_everywhere',
  'disabled',
  'enabled',
  'role_granted',
  'role_revoked',
  'user_created',
  'key_added',
  'key_rotated',
  'key_revoked',
  'keys_reencrypted',
  'client_created',
  'client_deleted',
  'second_factor_pending',
  'second_factor_failed',
  'recovery_code_used',
  'two_factor_enabled',
  'two_factor_disabled',
  'two_factor_reset',
  'recovery_codes_regenerated',
  'password_reset_link_created',
  'password_reset',
  'passkey_added',
  'passkey_removed',
  'passkey_failed',
  'passkey_counter_regression',
] as const;

export type AuditEventName = (typeof AUDIT_EVENTS)[number];

export interface AuditEventRow extends Model<InferAttributes<AuditEventRow>, InferCreationAttributes<AuditEventRow>> {
  id: CreationOptional<number>;
  at: Date;
  event: AuditEventName;
  userId: number | null;
  /** The name as typed or as stored at the time (kept when the user is later renamed or deleted). */
  username: string | null;
  ip: string | null;
  userAgent: string | null;
  /** Non-secret detail: a token's jti, a session's public id, a role. Never a password, token or cookie. */
  detail: string | null;
}

export type AuditEventModel = ModelStatic<AuditEventRow>;

export function defineAuditEvent(sequelize: Sequelize): AuditEventModel {
  return sequelize.define<AuditEventRow>(
    'AuditEvent',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      at: { type: DataTypes.DATE, allowNull: false },
      event: { type: DataTypes.STRING(40), allowNull: false },
      userId: { type: DataTypes.INTEGER, allowNull: true },
      username: { type: DataTypes.STRING(64), allowNull: true },
      ip: { type: DataTypes.STRING(64), allowNull: true },
      userAgent: { type: DataTypes.STRING(512), allowNull: true },
      detail: { type: DataTypes.STRING(512), allowNull: true },
    },
    { tableName: 'audit_events', underscored: true, timestamps: false },
  );
}
