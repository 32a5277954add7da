import {
  DataTypes,
  type CreationOptional,
  type InferAttributes,
  type InferCreationAttributes,
  type Model,
  type ModelStatic,
  type Sequelize,
} from 'sequelize';

/** A user's TOTP credential. `secret` is ciphertext (services/two-factor.ts), never the base32 text. */
export interface TotpCredentialRow extends Model<InferAttributes<TotpCredentialRow>, InferCreationAttributes<TotpCredentialRow>> {
  userId: number;
  secret: string;
  createdAt: Date;
  /** Null while set-up waits for the first code: two-factor is on once this is set. */
  enabledAt: Date | null;
  /** The last accepted RFC 6238 time step (replay guard). BIGINT: PostgreSQL returns it as a string. */
  lastStep: number | string | null;
}

/** One recovery code (its SHA-256 only). */
export interface RecoveryCodeRow extends Model<InferAttributes<RecoveryCodeRow>, InferCreationAttributes<RecoveryCodeRow>> {
  id: CreationOptional<number>;
  userId: number;
  codeHash: string;
  createdAt: Date;
  usedAt: Date | null;
}

/** A one-time password-reset link (the SHA-256 of its token only). */
export interface PasswordResetRow extends Model<InferAttributes<PasswordResetRow>, InferCreationAttributes<PasswordResetRow>> {
  tokenHash: string;
  userId: number;
  createdAt: Date;
  expiresAt: Date;
  usedAt: Date | null;
}

export type TotpCredentialModel = ModelStatic<TotpCredentialRow>;
export type RecoveryCodeModel = ModelStatic<RecoveryCodeRow>;
export type PasswordResetModel = ModelStatic<PasswordResetRow>;

const options = { underscored: true, timestamps: false } as const;

export function defineTotpCredential(sequelize: Sequelize): TotpCredentialModel {
  return sequelize.define<TotpCredentialRow>(
    'TotpCredential',
    {
      userId: { type: DataTypes.INTEGER, primaryKey: true },
      secret: { type: DataTypes.TEXT, allowNull: false },
      createdAt: { type: DataTypes.DATE, allowNull: false },
      enabledAt: { type: DataTypes.DATE, allowNull: true },
      lastStep: { type: DataTypes.BIGINT, allowNull: true },
    },
    { ...options, tableName: 'totp_credentials' },
  );
}

export function defineRecoveryCode(sequelize: Sequelize): RecoveryCodeModel {
  return sequelize.define<RecoveryCodeRow>(
    'RecoveryCode',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      userId: { type: DataTypes.INTEGER, allowNull: false },
      codeHash: { type: DataTypes.STRING(64), allowNull: false },
      createdAt: { type: DataTypes.DATE, allowNull: false },
      usedAt: { type: DataTypes.DATE, allowNull: true },
    },
    { ...options, tableName: 'recovery_codes' },
  );
}

export function definePasswordReset(sequelize: Sequelize): PasswordResetModel {
  return sequelize.define<PasswordResetRow>(
    'PasswordReset',
    {
      tokenHash: { type: DataTypes.STRING(64), primaryKey: true },
      userId: { type: DataTypes.INTEGER, allowNull: false },
      createdAt: { type: DataTypes.DATE, allowNull: false },
      expiresAt: { type: DataTypes.DATE, allowNull: false },
      usedAt: { type: DataTypes.DATE, allowNull: true },
    },
    { ...options, tableName: 'password_resets' },
  );
}
