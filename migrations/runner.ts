import type { QueryInterface } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import type { Database } from '../models/database.js';
import { migrations } from './index.js';

export type Migrator = Umzug<QueryInterface>;

/** An umzug migrator over the app's migrations, recording applied ones in `migrations_meta`. */
export function createMigrator(database: Database, logger: Console | undefined = undefined): Migrator {
  return new Umzug({
    migrations: migrations.map(({ name, up, down }) => ({ name, up, down })),
    context: database.sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize: database.sequelize, tableName: 'migrations_meta' }),
    logger,
  });
}

/** Applies every pending migration; returns the names applied. */
export async function migrateUp(database: Database): Promise<string[]> {
  const applied = await createMigrator(database).up();
  return applied.map((m) => m.name);
}
