import { expect } from 'chai';
import type { Server } from 'node:http';
import request from 'supertest';

export type Agent = ReturnType<typeof request.agent>;

export const STRONG_PASSWORD = 'correct horse battery staple 42';

let counter = 0;
/** A fresh username for each call, so tests never collide. */
export function uniqueName(prefix = 'user'): string {
  counter += 1;
  return `${prefix}${process.pid}x${counter}`;
}

/** Reads the hidden `_csrf` value from a page. */
export function csrfFrom(html: string): string {
  const match = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!match) throw new Error('no _csrf field on the page');
  return match[1]!;
}

/** The session cookie's value (name=value) from a response, if it set one. */
export function sessionCookie(res: { headers: Record<string, unknown> }, name = 'tb.sid'): string | undefined {
  const cookies = (res.headers['set-cookie'] as string[] | undefined) ?? [];
  const found = cookies.find((c) => c.startsWith(`${name}=`));
  return found?.split(';')[0];
}

/** A cookie-keeping client, like a browser without JavaScript. */
export function browser(server: Server): Agent {
  return request.agent(server);
}

export async function formToken(agent: Agent, path: string): Promise<string> {
  const page = await agent.get(path).expect(200);
  return csrfFrom(page.text);
}

export async function registerUser(agent: Agent, username = uniqueName(), password = STRONG_PASSWORD): Promise<string> {
  const _csrf = await formToken(agent, '/auth/register');
  const res = await agent.post('/auth/register').type('form').send({ _csrf, username, password, confirmPassword: password });
  expect(res.status, res.text).to.equal(302);
  return username;
}

export async function loginUser(agent: Agent, username: string, password = STRONG_PASSWORD) {
  const _csrf = await formToken(agent, '/auth/login');
  return agent.post('/auth/login').type('form').send({ _csrf, username, password });
}

/** Registers a user in a new browser and returns a freshly minted token for it. */
export async function userWithToken(server: Server): Promise<{ agent: Agent; username: string; token: string }> {
  const agent = browser(server);
  const username = await registerUser(agent);
  const res = await agent.get('/auth/token').expect(200);
  return { agent, username, token: (res.body as { token: string }).token };
}
