import {
  DataTypes,
  type Model,
  type CreationOptional,
  type InferAttributes,
  type InferCreationAttributes,
  type ModelStatic,
  type Sequelize,
} from 'sequelize';

/** One express-session record; the extra columns are copied from the session data for queries. */
export interface SessionRow extends Model<InferAttributes<SessionRow>, InferCreationAttributes<SessionRow>> {
  /** The session id carried (signed) in the cookie: a secret, never shown or put in tokens. */
  sid: string;
  expires: Date;
  data: string;
  userId: CreationOptional<number | null>;
  /** Opaque public id of a signed-in session: what tokens carry as `sid`. */
  publicId: CreationOptional<string | null>;
  ip: CreationOptional<string | null>;
  userAgent: CreationOptional<string | null>;
  lastSeenAt: CreationOptional<Date | null>;
  createdAt: CreationOptional<Date>;
  updatedAt: CreationOptional<Date>;
}

export type SessionModel = ModelStatic<SessionRow>;

/** The sessions model's name. */
export const SESSION_MODEL_NAME = 'Session';

/** Defines the `sessions` table's model on one Sequelize instance. */
export function defineSession(sequelize: Sequelize): SessionModel {
  return sequelize.define<SessionRow>(
    SESSION_MODEL_NAME,
    {
      sid: { type: DataTypes.STRING(64), primaryKey: true },
      expires: { type: DataTypes.DATE, allowNull: false },
      data: { type: DataTypes.TEXT, allowNull: false },
      userId: { type: DataTypes.INTEGER, allowNull: true },
      publicId: { type: DataTypes.STRING(36), allowNull: true },
      ip: { type: DataTypes.STRING(64), allowNull: true },
      userAgent: { type: DataTypes.STRING(512), allowNull: true },
      lastSeenAt: { type: DataTypes.DATE, allowNull: true },
      createdAt: DataTypes.DATE,
      updatedAt: DataTypes.DATE,
    },
    { tableName: 'sessions', underscored: true },
  );
}
