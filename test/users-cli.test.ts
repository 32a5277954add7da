import { expect } from 'chai';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { migrateUp } from '../migrations/runner.js';
import { openDatabase, type Database } from '../models/database.js';
import { verifyPassword } from '../services/passwords.js';
import { startTestApp, tempSqliteUrl, type TestApp } from './helpers/app.js';
import { browser, loginUser, uniqueName } from './helpers/browser.js';
import { runUsersCli, runUsersCliInTerminal, scriptCommand, type CliResult } from './helpers/cli.js';

const CLI_PASSWORD = 'piped in through stdin 9137';

/** Everything the CLI printed, and the argv it ran with. */
function everything(r: CliResult): string {
  return [r.stdout, r.stderr, ...r.argv].join('\n');
}

describe('users CLI (npm run users)', function () {
  // Every command is a fresh `node --import tsx` process.
  this.timeout(60_000);

  let file: ReturnType<typeof tempSqliteUrl>;
  let db: Database;
  const cli = (args: string[], stdin?: string) => runUsersCli(args, { databaseUrl: file.url, stdin });

  before(async () => {
    file = tempSqliteUrl();
    db = await openDatabase(file.url);
    await migrateUp(db);
  });
  after(async () => {
    await db.close();
    file.cleanup();
  });

  async function row(username: string) {
    return db.users.findOne({ where: { usernameKey: username.toLowerCase() } });
  }

  it('creates a user with the password from stdin and never shows the password', async () => {
    const name = uniqueName('cli');
    const r = await cli(['create', name], `${CLI_PASSWORD}\n`);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(new RegExp(`^created ${name} \\(id \\d+\\)\\n$`));
    expect(everything(r)).to.not.contain(CLI_PASSWORD);
    const created = await row(name);
    expect(created).to.not.equal(null);
    expect(created!.passwordHash).to.match(/^\$argon2id\$/);
    expect(created!.passwordHash).to.not.contain(CLI_PASSWORD);
    expect(created!.roles).to.deep.equal([]);
  });

  it('creates an admin with --role admin', async () => {
    const name = uniqueName('boss');
    const r = await cli(['create', name, '--role', 'admin'], CLI_PASSWORD);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('with role admin');
    expect(everything(r)).to.not.contain(CLI_PASSWORD);
    expect((await row(name))!.roles).to.deep.equal(['admin']);
  });

  it('refuses a password given on the command line (usage, exit 2) and creates nobody', async () => {
    const name = uniqueName('argv');
    const r = await cli(['create', name, CLI_PASSWORD]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/^usage: npm run users -- <command>/);
    expect(await row(name)).to.equal(null);
  });

  it('refuses a weak password with one line, exit 1, and creates nobody', async () => {
    const name = uniqueName('weak');
    const r = await cli(['create', name], 'password123\n');
    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal('');
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/common|characters/i);
    expect(await row(name)).to.equal(null);
  });

  it('refuses an empty stdin and a taken name', async () => {
    const name = uniqueName('dupe');
    expect((await cli(['create', name], '')).code).to.equal(1);
    expect(await row(name)).to.equal(null);
    expect((await cli(['create', name], CLI_PASSWORD)).code).to.equal(0);
    const again = await cli(['create', name.toUpperCase()], CLI_PASSWORD);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/taken/);
  });

  it('refuses an invalid --role before creating the user', async () => {
    const name = uniqueName('badrole');
    const r = await cli(['create', name, '--role', 'Not A Role'], CLI_PASSWORD);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/invalid role/);
    expect(await row(name), 'no half-created user').to.equal(null);
  });

  it('creates a user from an interactive prompt that does not echo the password', async function () {
    if (!scriptCommand) this.skip();
    const name = uniqueName('tty');
    const typed = 'typed at a terminal 4711';
    const r = await runUsersCliInTerminal(['create', name], { databaseUrl: file.url, answers: [typed, typed] });
    expect(r.code, r.output).to.equal(0);
    expect(r.output).to.contain('Password: ').and.contain('Repeat password: ');
    expect(r.output).to.contain(`created ${name}`);
    expect(r.output, 'the password was echoed').to.not.contain(typed);
    const created = await row(name);
    expect(created).to.not.equal(null);
    expect(await verifyPassword(created!.passwordHash, typed)).to.equal(true);
  });

  it('refuses two different passwords typed at the prompt and creates nobody', async function () {
    if (!scriptCommand) this.skip();
    const name = uniqueName('ttyx');
    const r = await runUsersCliInTerminal(['create', name], { databaseUrl: file.url, answers: ['typed at a terminal 4711', 'typed differently 0815'] });
    expect(r.code).to.equal(1);
    expect(r.output).to.contain('the two passwords do not match');
    expect(await row(name)).to.equal(null);
  });

  it('lists users with id, roles, disabled and creation time, and no password hash', async () => {
    const name = uniqueName('listed');
    expect((await cli(['create', name, '--role', 'admin'], CLI_PASSWORD)).code).to.equal(0);
    const r = await cli(['list']);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).to.equal('id\tusername\troles\tdisabled\tcreated');
    const line = lines.find((l) => l.split('\t')[1] === name);
    expect(line, r.stdout).to.be.a('string');
    const [id, , roles, disabled, created] = line!.split('\t');
    expect(Number(id)).to.equal((await row(name))!.id);
    expect(roles).to.equal('admin');
    expect(disabled).to.equal('no');
    expect(Date.now() - Date.parse(created!)).to.be.within(0, 120_000);
    expect(r.stdout).to.not.contain('$argon2');
  });

  it('disables and enables a user (round trip), saying when nothing changed', async () => {
    const name = uniqueName('toggle');
    expect((await cli(['create', name], CLI_PASSWORD)).code).to.equal(0);

    const off = await cli(['disable', name]);
    expect(off.code, off.stderr).to.equal(0);
    expect(off.stdout.trim()).to.equal(`${name} is disabled`);
    expect((await row(name))!.disabled).to.equal(true);
    expect((await row(name))!.tokensValidAfter).to.be.instanceOf(Date);
    expect((await cli(['disable', name])).stdout.trim()).to.equal(`${name} is disabled (no change)`);
    expect((await cli(['list'])).stdout).to.match(new RegExp(`\\t${name}\\t-\\tyes\\t`));

    const on = await cli(['enable', name]);
    expect(on.code, on.stderr).to.equal(0);
    expect(on.stdout.trim()).to.equal(`${name} is enabled`);
    expect((await row(name))!.disabled).to.equal(false);
  });

  it('grants and revokes a role (round trip)', async () => {
    const name = uniqueName('roles');
    expect((await cli(['create', name], CLI_PASSWORD)).code).to.equal(0);
    const grant = await cli(['grant', name, 'admin']);
    expect(grant.code, grant.stderr).to.equal(0);
    expect(grant.stdout.trim()).to.equal(`${name} roles: admin`);
    expect((await row(name))!.roles).to.deep.equal(['admin']);
    expect((await cli(['grant', name, 'admin'])).stdout.trim()).to.equal(`${name} roles: admin (no change)`);

    const revoke = await cli(['revoke', name, 'admin']);
    expect(revoke.code, revoke.stderr).to.equal(0);
    expect(revoke.stdout.trim()).to.equal(`${name} roles: (none)`);
    expect((await row(name))!.roles).to.deep.equal([]);
  });

  it('answers an unknown user with one clear line and exit 1', async () => {
    const all = [['disable', 'nobody-here'], ['enable', 'nobody-here'], ['grant', 'nobody-here', 'admin'], ['revoke', 'nobody-here', 'admin']];
    const results = await Promise.all(all.map((args) => cli(args)));
    for (const [i, r] of results.entries()) {
      expect(r.code, all[i]!.join(' ')).to.equal(1);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.equal('error: no user named "nobody-here"\n');
    }
  });

  it('answers an unknown command or missing arguments with usage and exit 2', async () => {
    const all = [['frobnicate'], ['disable'], ['grant', 'x'], ['list', 'extra'], []];
    const results = await Promise.all(all.map((args) => cli(args)));
    for (const [i, r] of results.entries()) {
      expect(r.code, all[i]!.join(' ')).to.equal(2);
      expect(r.stdout + r.stderr).to.contain('usage: npm run users -- <command>');
      expect(r.stdout + r.stderr).to.not.match(/\n\s+at /); // no stack trace
    }
  });

  it('runs without JWT_SECRET_KEY and SESSION_SECRET and never creates a .env', async () => {
    const r = await cli(['list']);
    expect(r.code, r.stderr).to.equal(0);
    expect(existsSync(path.join(path.dirname(file.url.slice('sqlite:'.length)), 'no-such.env'))).to.equal(false);
  });

  it('names DATABASE_URL in one line when it is invalid', async () => {
    const r = await runUsersCli(['list'], { databaseUrl: 'mysql://nope' });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: DATABASE_URL: .+\n$/);
  });

  describe('with the web app on the same database', () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp({ databaseUrl: file.url });
    });
    after(() => t.close());

    it('lets a user created by the CLI sign in through the web form', async () => {
      const name = uniqueName('webcli');
      expect((await cli(['create', name], `${CLI_PASSWORD}\n`)).code).to.equal(0);
      const agent = browser(t.server);
      const res = await loginUser(agent, name, CLI_PASSWORD);
      expect(res.status).to.equal(302);
      const token = await agent.get('/auth/token').expect(200);
      expect((token.body as { token: string }).token).to.be.a('string');
    });

    it('keeps a user disabled by the CLI from signing in, and lets them in again once enabled', async () => {
      const name = uniqueName('webdis');
      expect((await cli(['create', name], CLI_PASSWORD)).code).to.equal(0);
      const agent = browser(t.server);
      expect((await loginUser(agent, name, CLI_PASSWORD)).status).to.equal(302);

      expect((await cli(['disable', name])).code).to.equal(0);
      expect((await agent.get('/auth/token')).status, 'the open session ended').to.equal(401);
      expect((await loginUser(browser(t.server), name, CLI_PASSWORD)).status).to.equal(401);

      expect((await cli(['enable', name])).code).to.equal(0);
      expect((await loginUser(browser(t.server), name, CLI_PASSWORD)).status).to.equal(302);
    });
  });
});
