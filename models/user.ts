import {
  DataTypes,
  type Model,
  type CreationOptional,
  type InferAttributes,
  type InferCreationAttributes,
  type ModelStatic,
  type Sequelize,
} from 'sequelize';

export interface UserRow extends Model<InferAttributes<UserRow>, InferCreationAttributes<UserRow>> {
  id: CreationOptional<number>;
  /** As typed at registration (NFKC-normalised, trimmed); shown to people. */
  username: string;
  /** Lower-cased username: the unique key that makes names case-insensitive. */
  usernameKey: string;
  passwordHash: string;
  roles: CreationOptional<string[]>;
  disabled: CreationOptional<boolean>;
  /** Tokens issued before this instant are rejected (password change, sign-out everywhere, disable). */
  tokensValidAfter: CreationOptional<Date | null>;
  createdAt: CreationOptional<Date>;
  updatedAt: CreationOptional<Date>;
}

export type UserModel = ModelStatic<UserRow>;

/** Defines the `users` table's model on one Sequelize instance. */
export function defineUser(sequelize: Sequelize): UserModel {
  return sequelize.define<UserRow>(
    'User',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      username: { type: DataTypes.STRING(64), allowNull: false },
      usernameKey: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      passwordHash: { type: DataTypes.STRING(255), allowNull: false },
      roles: { type: DataTypes.JSON, allowNull: false, defaultValue: [] },
      disabled: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      tokensValidAfter: { type: DataTypes.DATE, allowNull: true },
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { tableName: 'users', underscored: true },
  );
}
