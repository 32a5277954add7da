/**
 * Migrations by hand: `npm run migrate -- [up|down|status]` (default: up).
 * `down` reverts the most recent migration. Needs only DATABASE_URL.
 * `npm start` already applies pending migrations; this is for operators.
 */
import { ConfigError, loadDatabaseUrl, readEnvironment } from '../config.js';
import { createMigrator, migrateUp, withMigrationLock } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';

async function main(command: string): Promise<number> {
  if (!['up', 'down', 'status'].includes(command)) {
    process.stderr.write('usage: npm run migrate -- [up|down|status]\n');
    return 2;
  }
  let db: Database | undefined;
  try {
    db = await openDatabase(loadDatabaseUrl(readEnvironment()));
    const database = db;
    if (command === 'up') {
      const applied = await migrateUp(database);
      process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'nothing to apply\n');
    } else if (command === 'down') {
      const reverted = await withMigrationLock(database, () => createMigrator(database).down());
      process.stdout.write(reverted.length ? `reverted: ${reverted.map((m) => m.name).join(', ')}\n` : 'nothing to revert\n');
    } else {
      const migrator = createMigrator(database);
      const [done, pending] = await Promise.all([migrator.executed(), migrator.pending()]);
      for (const m of done) process.stdout.write(`applied  ${m.name}\n`);
      for (const m of pending) process.stdout.write(`pending  ${m.name}\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? 'config error' : 'error'}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await db?.close();
  }
}

main(process.argv[2] ?? 'up').then((code) => process.exit(code));
