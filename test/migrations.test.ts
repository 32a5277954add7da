import { expect } from 'chai';
import { DataTypes, QueryTypes, type QueryInterface } from 'sequelize';
import { migrations } from '../migrations/index.js';
import { createMigrator, migrateUp, type MigrationEntry, type Migrator } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { tempSqliteUrl } from './helpers/app.js';
import { createTestDatabase, testDatabaseUrl } from './helpers/postgres.js';

const ALL = migrations.map((m) => m.name);
const META_TABLE = 'migrations_meta';

interface IndexInfo {
  name: string;
  unique: boolean;
  fields: string[];
}

async function tables(qi: QueryInterface): Promise<string[]> {
  const names = (await qi.showAllTables()) as Array<string | { tableName: string }>;
  return names.map((t) => (typeof t === 'string' ? t : t.tableName)).filter((t) => !t.startsWith('sqlite_')).sort();
}

async function appTables(qi: QueryInterface): Promise<string[]> {
  return (await tables(qi)).filter((t) => t !== META_TABLE);
}

async function indexes(qi: QueryInterface, table: string): Promise<IndexInfo[]> {
  const raw = (await qi.showIndex(table)) as unknown as Array<{ name: string; unique: boolean; fields: Array<{ attribute: string }> }>;
  return raw.map((i) => ({ name: i.name, unique: Boolean(i.unique), fields: i.fields.map((f) => f.attribute) }));
}

describe('migrations (umzug)', () => {
  let db: { url: string; cleanup(): void };
  let database: Database;
  let migrator: Migrator;
  let qi: QueryInterface;

  beforeEach(async () => {
    db = tempSqliteUrl();
    database = await openDatabase(db.url);
    migrator = createMigrator(database);
    qi = database.sequelize.getQueryInterface();
  });
  afterEach(async () => {
    await database.close();
    db.cleanup();
  });

  it('starts from a database with no tables and every migration pending', async () => {
    expect(await appTables(qi)).to.deep.equal([]);
    expect((await migrator.pending()).map((m) => m.name)).to.deep.equal(ALL);
  });

  it('up on a fresh database applies every migration in order and records them', async () => {
    const applied = await migrator.up();
    expect(applied.map((m) => m.name)).to.deep.equal(ALL);
    expect((await migrator.executed()).map((m) => m.name)).to.deep.equal(ALL);
    expect(await tables(qi)).to.include.members(['users', 'sessions', META_TABLE]);
  });

  it('creates the users table with its columns and a unique case-folded username key', async () => {
    await migrator.up();
    const columns = await qi.describeTable('users');
    expect(Object.keys(columns)).to.include.members([
      'id', 'username', 'username_key', 'password_hash', 'roles', 'disabled', 'tokens_valid_after', 'created_at', 'updated_at',
    ]);
    expect(columns.id!.primaryKey).to.equal(true);
    for (const name of ['username', 'username_key', 'password_hash', 'roles', 'disabled']) {
      expect(columns[name]!.allowNull, `${name} allows NULL`).to.equal(false);
    }
    const unique = (await indexes(qi, 'users')).filter((i) => i.unique);
    expect(unique.map((i) => i.fields)).to.deep.include(['username_key']);

    await database.users.create({ username: 'Alice', usernameKey: 'alice', passwordHash: 'h' });
    let duplicate: unknown = null;
    await database.users.create({ username: 'ALICE', usernameKey: 'alice', passwordHash: 'h' }).catch((err: unknown) => (duplicate = err));
    expect((duplicate as Error | null)?.name).to.equal('SequelizeUniqueConstraintError');
  });

  it('creates the sessions table with its columns and indexes on user_id, expires and a unique public_id', async () => {
    await migrator.up();
    const columns = await qi.describeTable('sessions');
    expect(Object.keys(columns)).to.include.members([
      'sid', 'expires', 'data', 'user_id', 'public_id', 'ip', 'user_agent', 'last_seen_at', 'created_at', 'updated_at',
    ]);
    expect(columns.sid!.primaryKey).to.equal(true);
    const found = await indexes(qi, 'sessions');
    expect(found.find((i) => i.name === 'sessions_user_id')?.fields).to.deep.equal(['user_id']);
    expect(found.find((i) => i.name === 'sessions_expires')?.fields).to.deep.equal(['expires']);
    expect(found.filter((i) => i.unique).map((i) => i.fields)).to.deep.include(['public_id']);
  });

  it('matches the models: a user and a session can be written and read back through them', async () => {
    await migrator.up();
    const user = await database.users.create({ username: 'Bob', usernameKey: 'bob', passwordHash: 'hash', roles: ['admin'] });
    await database.sessions.create({
      sid: 's1',
      expires: new Date(Date.now() + 60_000),
      data: '{}',
      userId: user.id,
      publicId: '00000000-0000-4000-8000-000000000001',
      ip: '127.0.0.1',
      userAgent: 'test',
      lastSeenAt: new Date(),
    });
    const again = await database.users.findByPk(user.id);
    expect(again?.roles).to.deep.equal(['admin']);
    expect(again?.disabled).to.equal(false);
    expect((await database.sessions.findByPk('s1'))?.userId).to.equal(user.id);
  });

  it("deletes a user's sessions with the user (foreign key with ON DELETE CASCADE)", async () => {
    await migrator.up();
    const user = await database.users.create({ username: 'Carol', usernameKey: 'carol', passwordHash: 'hash' });
    await database.sessions.create({ sid: 's2', expires: new Date(Date.now() + 60_000), data: '{}', userId: user.id });
    await user.destroy();
    expect(await database.sessions.count()).to.equal(0);
  });

  it('down all the way removes every app table and leaves nothing recorded as applied', async () => {
    await migrator.up();
    const reverted = await migrator.down({ to: 0 });
    expect(reverted.map((m) => m.name)).to.deep.equal([...ALL].reverse());
    expect(await appTables(qi)).to.deep.equal([]);
    expect(await migrator.executed()).to.deep.equal([]);
  });

  it('up again after down all the way rebuilds the same tables', async () => {
    await migrator.up();
    const first = await appTables(qi);
    await migrator.down({ to: 0 });
    const again = await migrator.up();
    expect(again.map((m) => m.name)).to.deep.equal(ALL);
    expect(await appTables(qi)).to.deep.equal(first);
    await database.users.create({ username: 'Dan', usernameKey: 'dan', passwordHash: 'hash' });
  });

  it('running up twice is a no-op the second time (migrateUp returns nothing, data kept)', async () => {
    expect(await migrateUp(database)).to.deep.equal(ALL);
    await database.users.create({ username: 'Erin', usernameKey: 'erin', passwordHash: 'hash' });
    expect(await migrateUp(database)).to.deep.equal([]);
    expect(await createMigrator(database).up()).to.deep.equal([]);
    expect(await database.users.count()).to.equal(1);
    expect((await migrator.executed()).map((m) => m.name)).to.deep.equal(ALL);
  });

  it('each migration reverts cleanly on its own (down one step drops only what it created)', async () => {
    for (let i = 0; i < ALL.length; i += 1) {
      await migrator.up({ to: ALL[i]! });
    }
    const byStep: string[][] = [];
    for (let i = ALL.length; i > 0; i -= 1) {
      byStep.push(await appTables(qi));
      await migrator.down();
      expect((await migrator.executed()).map((m) => m.name)).to.deep.equal(ALL.slice(0, i - 1));
    }
    expect(await appTables(qi)).to.deep.equal([]);
    // Each step removed exactly its own tables: something, and nothing of the earlier migrations.
    expect(byStep).to.deep.equal([
      ['api_clients', 'audit_events', 'passkeys', 'password_resets', 'rate_limits', 'recovery_codes', 'session_revocations', 'sessions', 'signing_keys', 'totp_credentials', 'users'],
      ['api_clients', 'audit_events', 'password_resets', 'rate_limits', 'recovery_codes', 'session_revocations', 'sessions', 'signing_keys', 'totp_credentials', 'users'],
      ['api_clients', 'audit_events', 'rate_limits', 'session_revocations', 'sessions', 'signing_keys', 'users'],
      ['audit_events', 'rate_limits', 'session_revocations', 'sessions', 'signing_keys', 'users'],
      ['audit_events', 'rate_limits', 'session_revocations', 'sessions', 'users'],
      ['sessions', 'users'],
      ['users'],
    ]);
  });
});

/**
 * A migration that creates a table and adds a column, then (with `fail`)
 * runs a query that fails: a bug halfway through a migration.
 */
function halfWay(fail: boolean): MigrationEntry {
  return {
    name: '9999-half-way',
    up: async ({ context: { queryInterface: qi, transaction } }) => {
      await qi.createTable('half_way', { id: { type: DataTypes.INTEGER, primaryKey: true } }, { transaction });
      await qi.addColumn('users', 'nickname', { type: DataTypes.STRING(64), allowNull: true }, { transaction });
      if (fail) await qi.sequelize.query('SELECT * FROM no_such_table', { transaction });
    },
    down: async ({ context: { queryInterface: qi, transaction } }) => {
      await qi.dropTable('half_way', { transaction });
      await qi.removeColumn('users', 'nickname', { transaction });
    },
  };
}

async function recorded(database: Database): Promise<string[]> {
  const rows = await database.sequelize.query<{ name: string }>(`SELECT name FROM ${META_TABLE} ORDER BY name`, { type: QueryTypes.SELECT });
  return rows.map((r) => r.name);
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`migrations that fail halfway (${dialect === 'sqlite' ? 'SQLite file' : 'PostgreSQL'})`, function () {
    this.timeout(30_000);

    let database: Database;
    let cleanup: () => Promise<void>;
    let qi: QueryInterface;

    beforeEach(async function () {
      if (dialect === 'postgres' && !testDatabaseUrl) return this.skip(); // needs PostgreSQL: run with TEST_DATABASE_URL
      if (dialect === 'postgres') {
        const pg = await createTestDatabase();
        database = await openDatabase(pg.url);
        cleanup = () => pg.drop();
      } else {
        const file = tempSqliteUrl();
        database = await openDatabase(file.url);
        cleanup = async () => file.cleanup();
      }
      qi = database.sequelize.getQueryInterface();
    });
    afterEach(async () => {
      await database?.close();
      await cleanup?.();
    });

    it('leave no table or column from their first half, are not recorded, and the next good run applies them', async () => {
      expect(await migrateUp(database)).to.deep.equal(ALL);
      let error: Error | undefined;
      await migrateUp(database, { migrations: [...migrations, halfWay(true)] }).catch((err: Error) => (error = err));
      expect(error?.message).to.match(/9999-half-way/);
      expect(await appTables(qi)).not.to.include('half_way');
      expect(Object.keys(await qi.describeTable('users'))).not.to.include('nickname');
      expect(await recorded(database)).to.deep.equal(ALL);

      expect(await migrateUp(database, { migrations: [...migrations, halfWay(false)] })).to.deep.equal(['9999-half-way']);
      expect(await appTables(qi)).to.include('half_way');
      expect(Object.keys(await qi.describeTable('users'))).to.include('nickname');
      expect(await recorded(database)).to.deep.equal([...ALL, '9999-half-way']);
    });

    if (dialect === 'postgres') {
      it('keep the migrations before them in the same run applied and recorded (one transaction per migration)', async () => {
        let error: Error | undefined;
        await migrateUp(database, { migrations: [...migrations, halfWay(true)] }).catch((err: Error) => (error = err));
        expect(error?.message).to.match(/9999-half-way/);
        expect(await recorded(database)).to.deep.equal(ALL);
        expect(await appTables(qi)).to.deep.equal(['api_clients', 'audit_events', 'passkeys', 'password_resets', 'rate_limits', 'recovery_codes', 'session_revocations', 'sessions', 'signing_keys', 'totp_credentials', 'users']);
      });

      it('undo a failed down step too: the table it dropped is back and the migration stays recorded', async () => {
        expect(await migrateUp(database)).to.deep.equal(ALL);
        const failingDown: MigrationEntry = {
          ...migrations[migrations.length - 1]!,
          down: async ({ context: { queryInterface: q, transaction } }) => {
            await q.dropTable('session_revocations', { transaction });
            await q.sequelize.query('SELECT * FROM no_such_table', { transaction });
          },
        };
        let error: Error | undefined;
        await createMigrator(database, [...migrations.slice(0, -1), failingDown]).down().catch((err: Error) => (error = err));
        expect(error?.message).to.include(migrations.at(-1)!.name);
        expect(await appTables(qi)).to.include('session_revocations');
        expect(await recorded(database)).to.deep.equal(ALL);
      });

      it('run without the per-request statement timeout (DDL on a large table may take longer)', async () => {
        const limited = await openDatabase(database.url, { statementTimeoutMs: 1_000 });
        try {
          let seen: string | undefined;
          const probe: MigrationEntry = {
            name: '9999-probe',
            up: async ({ context: { queryInterface: q, transaction } }) => {
              const [row] = await q.sequelize.query<{ statement_timeout: string }>('SHOW statement_timeout', { transaction, type: QueryTypes.SELECT });
              seen = row?.statement_timeout;
            },
            down: async () => undefined,
          };
          expect(await migrateUp(limited, { migrations: [...migrations, probe] })).to.deep.equal([...ALL, '9999-probe']);
          expect(seen).to.equal('0');
          // The app's own connections keep their limit.
          const [row] = await limited.sequelize.query<{ statement_timeout: string }>('SHOW statement_timeout', { type: QueryTypes.SELECT });
          expect(row?.statement_timeout).to.equal('1s');
        } finally {
          await limited.close();
        }
      });
    } else {
      it('roll back the whole run on SQLite, the migrations before them included', async () => {
        let error: Error | undefined;
        await migrateUp(database, { migrations: [...migrations, halfWay(true)] }).catch((err: Error) => (error = err));
        expect(error?.message).to.match(/9999-half-way/);
        expect(await appTables(qi)).to.deep.equal([]);
        expect(await migrateUp(database)).to.deep.equal(ALL);
      });
    }
  });
}
