// PostgreSQL chores for .ci/run (uses the `pg` package that `npm install` put in node_modules):
//   node .ci/pg.mjs ping            exit 0 when the server answers
//   node .ci/pg.mjs create NAME     CREATE DATABASE NAME
//   node .ci/pg.mjs drop NAME       drops NAME and every per-test database NAME_t_* left behind
// The server is CI_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
import process from 'node:process';
import pg from 'pg';

const adminUrl = process.env.CI_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const [command, name] = process.argv.slice(2);

async function withClient(fn) {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function checkName(value) {
  if (!/^[a-z][a-z0-9_]{0,40}$/.test(value ?? '')) throw new Error(`bad database name: ${value}`);
  return value;
}

try {
  if (command === 'ping') {
    await withClient((c) => c.query('SELECT 1'));
  } else if (command === 'create') {
    await withClient((c) => c.query(`CREATE DATABASE "${checkName(name)}" TEMPLATE template0`));
  } else if (command === 'drop') {
    const base = checkName(name);
    await withClient(async (c) => {
      const { rows } = await c.query("SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2", [base, `${base}\\_t\\_%`]);
      for (const row of rows) await c.query(`DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`);
      process.stdout.write(`dropped ${rows.length} database(s)\n`);
    });
  } else {
    throw new Error('usage: node .ci/pg.mjs ping | create NAME | drop NAME');
  }
} catch (err) {
  process.stderr.write(`${command ?? ''}: ${err.message}\n`);
  process.exit(1);
}
