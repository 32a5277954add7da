/**
 * The benchmark's child processes: the built app and the two baselines, each
 * started on 127.0.0.1 and killed on any way out of the run; setup through the
 * app's real forms; CPU time and memory of a server read from /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { projectRoot as root } from '../paths.js';
import { listeningPort, spawnNode, whenReady, type NodeProcess } from '../test/helpers/process.js';
import { callApi, RemoteBrowser } from '../test/helpers/remote-browser.js';
import { browserHeaders, LOOPBACK, type LoginUser } from './scenarios.js';

const started = Date.now();

/** One progress line per phase on stderr. */
export function status(phase: string): void {
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] ${phase}\n`);
}

/** A running server: its process and the port it listens on. */
export interface Server {
  name: string;
  proc: NodeProcess;
  port: number;
}

/** Every child still running: killed on any way out, including the hard time limit and Ctrl-C. */
const children = new Set<NodeProcess>();
process.on('exit', () => {
  for (const proc of children) proc.child.kill('SIGKILL');
});

function track(proc: NodeProcess): NodeProcess {
  children.add(proc);
  void proc.exited.then(() => children.delete(proc));
  return proc;
}

/** SIGTERM, then SIGKILL after 12 s; `'0'` when the server exited cleanly, else its code or signal. */
export async function stopServer(server: Server): Promise<string> {
  const { code, signal } = await server.proc.stop(12_000);
  return signal ?? String(code);
}

/** A port that was free a moment ago on 127.0.0.1 (the app is given it: at LOG_LEVEL=warn it does not log the one it chose). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().on('error', reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * The Node.js flags `npm start` runs the app with (package.json's start script,
 * `exec node <flags> dist/server.js`), so that the benchmark measures the same process.
 */
export const APP_NODE_FLAGS: readonly string[] = (() => {
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const flags = /\bexec node (.*?) ?dist\/server\.js/.exec(manifest.scripts.start);
  if (!flags) throw new Error(`package.json's start script does not run "exec node … dist/server.js": ${manifest.scripts.start}`);
  return flags[1]!.split(' ').filter(Boolean);
})();

/** Starts the built app (`node <APP_NODE_FLAGS> [nodeArgs] dist/server.js`) on a free port; resolves once /readyz answers 200. */
export async function startApp(name: string, nodeArgs: string[], env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const proc = track(spawnNode([...APP_NODE_FLAGS, ...nodeArgs, path.join(root, 'dist', 'server.js')], { ...env, PORT: String(port) }));
  await whenReady(
    proc,
    async () => {
      const res = await fetch(`http://${LOOPBACK}:${port}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      await res?.arrayBuffer();
      return res?.ok || undefined;
    },
    60_000,
  );
  return { name, proc, port };
}

/**
 * Starts a baseline of bench/baselines, or a peer's server when `file` leads
 * out of it (it listens on a port of its choosing and logs it); TypeScript
 * through tsx, plain `.mjs` as it is.
 */
export async function startBaseline(name: string, file: string, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Server> {
  const loader = file.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const proc = track(spawnNode([...nodeArgs, ...loader, path.join(root, 'bench', 'baselines', file)], { NODE_ENV: 'production', PORT: '0', ...env }));
  return { name, proc, port: await whenReady(proc, () => listeningPort(proc.stdout()), 30_000) };
}

/** What a set-up app gives the load: its first user's session cookie, token and /api/me answer, and a pool of users. */
export interface Fixture {
  cookie: string;
  token: string;
  meBody: string;
  pool: LoginUser[];
}

/**
 * Registers users through the real form (a fresh browser each: GET the form
 * for `_csrf`, POST it), mints a token as the first one and checks /api/me.
 */
export async function setUpApp(port: number, poolSize: number): Promise<Fixture> {
  const base = `http://${LOOPBACK}:${port}`;
  const tag = randomBytes(3).toString('hex');
  const user = (i: number): LoginUser => ({ username: `bench_${tag}_${i}`, password: `bench ${randomBytes(12).toString('base64url')} pw` });
  const register = async (u: LoginUser) => {
    const browser = new RemoteBrowser(browserHeaders(port));
    const res = await browser.register(base, u.username, u.password);
    if (res.status !== 302) throw new Error(`POST /auth/register for ${u.username} answered ${res.status} (is the app behind TRUST_PROXY?): ${res.text.slice(0, 300)}`);
    return browser;
  };
  const first = user(0);
  const browser = await register(first);
  const pool = Array.from({ length: poolSize }, (_, i) => user(i + 1));
  // A few registrations at a time: each one hashes a password.
  for (let i = 0; i < pool.length; i += 4) await Promise.all(pool.slice(i, i + 4).map(register));
  const token = await browser.token(base);
  const me = await callApi(base, token);
  if (me.status !== 200 || !me.text.includes(`"username":"${first.username}"`)) throw new Error(`GET /api/me answered ${me.status}: ${me.text.slice(0, 300)}`);
  return { cookie: browser.cookieHeader(), token, meBody: me.text, pool };
}

/** VmRSS and VmHWM (bytes) of a process from /proc/<pid>/status (Linux), or null elsewhere. */
export function memoryOf(pid: number | undefined): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return Number.isFinite(kb('VmRSS')) ? { rss: kb('VmRSS'), hwm: kb('VmHWM') } : null;
  } catch {
    return null;
  }
}

/** The parent pid and the CPU ticks (own user + system, and those of reaped children) of a process, from /proc/<pid>/stat. */
function statOf(pid: string): { ppid: string; ticks: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (in parentheses, may hold spaces): ppid is the 2nd; utime, stime,
    // cutime and cstime the 12th to 15th, in clock ticks of USER_HZ (100 on the Linux platforms Node runs on).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: f[1]!, ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

/**
 * CPU seconds (user + system, all threads) used by a process and every
 * process below it (a cluster's workers, anything they started, and the
 * children already reaped), from /proc (Linux); null elsewhere.
 */
export function cpuSecondsOfTree(pid: number | undefined): number | null {
  const rootStat = pid === undefined ? null : statOf(String(pid));
  if (!rootStat) return null;
  const byParent = new Map<string, { pid: string; ticks: number }[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = statOf(entry);
    if (s) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), { pid: entry, ticks: s.ticks }]);
  }
  let ticks = rootStat.ticks;
  const queue = [String(pid)];
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    for (const child of byParent.get(next) ?? []) {
      ticks += child.ticks;
      queue.push(child.pid);
    }
  }
  return ticks / 100;
}
