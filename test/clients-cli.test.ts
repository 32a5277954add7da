import { expect } from 'chai';
import request from 'supertest';
import { freshDatabase, startTestApp, type TestApp } from './helpers/app.js';
import { userWithToken } from './helpers/browser.js';
import { runClientsCli, type CliResult } from './helpers/cli.js';

/** The client_id and client_secret lines `create` prints. */
function credentialsFrom(r: CliResult): { clientId: string; clientSecret: string } {
  const id = /^client_id: (\S+)$/m.exec(r.stdout);
  const secret = /^client_secret: (\S+)$/m.exec(r.stdout);
  expect(id && secret, r.stdout + r.stderr).to.not.equal(null);
  return { clientId: id![1]!, clientSecret: secret![1]! };
}

describe('clients CLI (npm run clients)', function () {
  // Every command is a fresh `node --import tsx` process.
  this.timeout(60_000);

  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let t: TestApp;
  let token: string;
  const cli = (...args: string[]) => runClientsCli(args, { databaseUrl: db.url });
  const introspect = (clientId: string, clientSecret: string) =>
    request(t.server)
      .post('/auth/introspect')
      .auth(clientId, clientSecret)
      .type('form')
      .send({ token });

  before(async () => {
    db = await freshDatabase();
    t = await startTestApp({ databaseUrl: db.url });
    ({ token } = await userWithToken(t.server));
  });
  after(async () => {
    await t.close();
    await db.cleanup();
  });

  it('creates a client whose printed credentials introspect, lists it without the secret, and deletes it', async () => {
    const created = await cli('create', 'billing');
    expect(created.code, created.stderr).to.equal(0);
    expect(created.stderr).to.match(/shown only this once/);
    const { clientId, clientSecret } = credentialsFrom(created);
    expect((await introspect(clientId, clientSecret).expect(200)).body).to.include({ active: true });

    const listed = await cli('list');
    expect(listed.code).to.equal(0);
    const line = listed.stdout.split('\n').find((l) => l.startsWith('billing\t'));
    expect(line?.split('\t').slice(0, 2)).to.deep.equal(['billing', clientId]);
    expect(listed.stdout).to.not.include(clientSecret);

    const deleted = await cli('delete', 'billing');
    expect([deleted.code, deleted.stdout.trim()]).to.deep.equal([0, 'deleted billing']);
    await introspect(clientId, clientSecret).expect(401);
    expect((await cli('list')).stdout).to.not.include('billing');
  });

  it('records the creation and deletion in the audit log', async () => {
    const { clientId } = credentialsFrom(await cli('create', 'audited-cli'));
    await cli('delete', 'audited-cli');
    const rows = await t.database.auditEvents.findAll({ where: { event: ['client_created', 'client_deleted'] }, order: [['id', 'ASC']] });
    expect(rows.filter((r) => r.detail === `audited-cli (${clientId})`).map((r) => [r.event, r.userAgent])).to.deep.equal([
      ['client_created', 'clients-cli'],
      ['client_deleted', 'clients-cli'],
    ]);
  });

  it('answers a taken name, a bad name and an unknown client with one line and exit 1', async () => {
    expect((await cli('create', 'twice')).code).to.equal(0);
    for (const [args, message] of [
      [['create', 'twice'], /exists already/],
      [['create', 'bad name'], /invalid client name/],
      [['delete', 'nobody'], /no client named "nobody"/],
    ] as const) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1);
      expect(r.stderr).to.match(message);
      expect(r.stdout).to.not.match(/client_secret/);
    }
  });

  it('answers an unknown command or missing arguments with usage and exit 2', async () => {
    for (const args of [[], ['frobnicate'], ['create'], ['delete'], ['create', 'a', 'b'], ['list', 'extra']]) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stdout + r.stderr).to.match(/usage: npm run clients/);
    }
  });
});
