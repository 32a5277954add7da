import { DataTypes, type InferAttributes, type InferCreationAttributes, type Model, type ModelStatic, type Sequelize } from 'sequelize';

/** One WebAuthn credential of a user (services/passkeys.ts). */
export interface PasskeyRow extends Model<InferAttributes<PasskeyRow>, InferCreationAttributes<PasskeyRow>> {
  /** The credential id, base64url. */
  id: string;
  userId: number;
  /** The WebAuthn user handle, base64url: the same for every passkey of the user. */
  userHandle: string;
  name: string;
  /** The COSE public key, base64url. */
  publicKey: string;
  /** The authenticator's signature counter (0 for authenticators that keep none). BIGINT: a string on PostgreSQL. */
  counter: number | string;
  /** JSON array of transports (`internal`, `hybrid`, `usb` …). */
  transports: string;
  /** `singleDevice` (bound to one authenticator) or `multiDevice` (synced). */
  deviceType: string;
  backedUp: boolean;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export type PasskeyModel = ModelStatic<PasskeyRow>;

export function definePasskey(sequelize: Sequelize): PasskeyModel {
  return sequelize.define<PasskeyRow>(
    'Passkey',
    {
      id: { type: DataTypes.STRING(1400), primaryKey: true },
      userId: { type: DataTypes.INTEGER, allowNull: false },
      userHandle: { type: DataTypes.STRING(64), allowNull: false },
      name: { type: DataTypes.STRING(64), allowNull: false },
      publicKey: { type: DataTypes.TEXT, allowNull: false },
      counter: { type: DataTypes.BIGINT, allowNull: false },
      transports: { type: DataTypes.STRING(200), allowNull: false },
      deviceType: { type: DataTypes.STRING(16), allowNull: false },
      backedUp: { type: DataTypes.BOOLEAN, allowNull: false },
      createdAt: { type: DataTypes.DATE, allowNull: false },
      lastUsedAt: { type: DataTypes.DATE, allowNull: true },
    },
    { tableName: 'passkeys', underscored: true, timestamps: false },
  );
}
