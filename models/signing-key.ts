import { DataTypes, type InferAttributes, type InferCreationAttributes, type Model, type ModelStatic, type Sequelize } from 'sequelize';

/** `next` is published but does not sign yet; `current` signs; `previous` verifies its tokens until `verifyUntil`; `revoked` never verifies. */
export const KEY_STATES = ['next', 'current', 'previous', 'revoked'] as const;
export type KeyState = (typeof KEY_STATES)[number];

/** One key pair of the ES256/RS256 key set. `privateKey` is ciphertext (services/signing-keys.ts), never PEM or a JWK. */
export interface SigningKeyRow extends Model<InferAttributes<SigningKeyRow>, InferCreationAttributes<SigningKeyRow>> {
  kid: string;
  alg: string;
  state: KeyState;
  /** The public JWK as JSON (kty, crv/x/y or n/e, kid, alg, use). */
  publicJwk: string;
  privateKey: string;
  createdAt: Date;
  activatedAt: Date | null;
  retiredAt: Date | null;
  verifyUntil: Date | null;
  revokedAt: Date | null;
}

export type SigningKeyModel = ModelStatic<SigningKeyRow>;

export function defineSigningKey(sequelize: Sequelize): SigningKeyModel {
  return sequelize.define<SigningKeyRow>(
    'SigningKey',
    {
      kid: { type: DataTypes.STRING(64), primaryKey: true },
      alg: { type: DataTypes.STRING(8), allowNull: false },
      state: { type: DataTypes.STRING(10), allowNull: false },
      publicJwk: { type: DataTypes.TEXT, allowNull: false },
      privateKey: { type: DataTypes.TEXT, allowNull: false },
      createdAt: { type: DataTypes.DATE, allowNull: false },
      activatedAt: { type: DataTypes.DATE, allowNull: true },
      retiredAt: { type: DataTypes.DATE, allowNull: true },
      verifyUntil: { type: DataTypes.DATE, allowNull: true },
      revokedAt: { type: DataTypes.DATE, allowNull: true },
    },
    { tableName: 'signing_keys', underscored: true, timestamps: false },
  );
}
