import {
  DataTypes,
  type Model,
  type InferAttributes,
  type InferCreationAttributes,
  type ModelStatic,
  type Sequelize,
} from 'sequelize';

/** A session ended on purpose; tokens minted from it are refused until `expiresAt`. */
export interface SessionRevocationRow extends Model<InferAttributes<SessionRevocationRow>, InferCreationAttributes<SessionRevocationRow>> {
  publicId: string;
  userId: number | null;
  revokedAt: Date;
  expiresAt: Date;
}

export type SessionRevocationModel = ModelStatic<SessionRevocationRow>;

export function defineSessionRevocation(sequelize: Sequelize): SessionRevocationModel {
  return sequelize.define<SessionRevocationRow>(
    'SessionRevocation',
    {
      publicId: { type: DataTypes.STRING(36), primaryKey: true },
      userId: { type: DataTypes.INTEGER, allowNull: true },
      revokedAt: { type: DataTypes.DATE, allowNull: false },
      expiresAt: { type: DataTypes.DATE, allowNull: false },
    },
    { tableName: 'session_revocations', underscored: true, timestamps: false },
  );
}
