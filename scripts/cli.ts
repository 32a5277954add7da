/**
 * What the command-line tools share: argument handling, the database (its
 * settings from the environment or .env, migrated), and one-line failures.
 */
import { loadDatabaseUrl, readEnvironment } from '../config.js';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';

/** A failure to report in one line with a non-zero exit code (2: wrong usage). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/**
 * Runs one command with `process.argv`, then exits: usage on no arguments
 * (exit 2) or `--help` (exit 0); a {@link CliError} prints its message; any
 * other failure (configuration, unknown user or key, the database) prints
 * `error: <message>` and exits 1, never a stack trace.
 */
export function runCli(usage: string, run: (db: Database, args: string[], out: (line: string) => void) => Promise<void>): void {
  const main = async (): Promise<number> => {
    const args = process.argv.slice(2);
    if (args.length === 0 || args[0] === '--help' || args[0] === '-h') {
      process.stdout.write(`${usage}\n`);
      return args.length === 0 ? 2 : 0;
    }
    let db: Database | undefined;
    try {
      db = await openDatabase(loadDatabaseUrl(readEnvironment()));
      await migrateUp(db);
      await run(db, args, (line) => process.stdout.write(`${line}\n`));
      return 0;
    } catch (err) {
      if (err instanceof CliError) {
        process.stderr.write(`${err.message}\n`);
        return err.exitCode;
      }
      process.stderr.write(`error: ${(err as Error).message}\n`);
      return 1;
    } finally {
      await db?.close();
    }
  };
  void main().then((code) => process.exit(code));
}
