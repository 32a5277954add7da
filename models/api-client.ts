import {
  DataTypes,
  type CreationOptional,
  type InferAttributes,
  type InferCreationAttributes,
  type Model,
  type ModelStatic,
  type Sequelize,
} from 'sequelize';

/** A client allowed to call `POST /auth/introspect`. The secret itself is never stored. */
export interface ApiClientRow extends Model<InferAttributes<ApiClientRow>, InferCreationAttributes<ApiClientRow>> {
  id: CreationOptional<number>;
  /** The operator's name for it (`npm run clients -- create <name>`). */
  name: string;
  /** The public half of its credentials (the HTTP Basic user name). */
  clientId: string;
  /** SHA-256 of the secret, hex. */
  secretHash: string;
  createdAt: Date;
}

export type ApiClientModel = ModelStatic<ApiClientRow>;

export function defineApiClient(sequelize: Sequelize): ApiClientModel {
  return sequelize.define<ApiClientRow>(
    'ApiClient',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      name: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      clientId: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      secretHash: { type: DataTypes.STRING(64), allowNull: false },
      createdAt: { type: DataTypes.DATE, allowNull: false },
    },
    { tableName: 'api_clients', underscored: true, timestamps: false },
  );
}
