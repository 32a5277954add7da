import type { QueryInterface, Transaction } from 'sequelize';
import type { MigrationFn } from 'umzug';

/** What every migration is given (see migrations/runner.ts). */
export interface MigrationContext {
  queryInterface: QueryInterface;
  /**
   * On PostgreSQL the migration's own transaction: pass it to every query
   * (`{ transaction }`) so a failure halfway undoes the first half. Undefined
   * on SQLite, where the whole run is already one transaction.
   */
  transaction: Transaction | undefined;
}

export type Migration = MigrationFn<MigrationContext>;
