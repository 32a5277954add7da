import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../paths.js';

/** A fresh random secret of 48 bytes, as `npm start` would generate. */
export function randomSecret(): string {
  return randomBytes(48).toString('base64url');
}

/** A temporary folder for one spawned server's `.env` and database; removed by `cleanup`. */
export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tb-proc-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The environment a spawned server gets: only what Node needs to run plus the
 * given variables. Nothing is inherited from the test process (its `.env`,
 * NODE_ENV or secrets), and `ENV_FILE` must point into a temp folder so the
 * project's own `.env` is never read or written.
 */
function serverEnv(env: Record<string, string>): Record<string, string> {
  if (!env.ENV_FILE) throw new Error('spawned servers need ENV_FILE pointing at a temp file');
  return env;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A `node` child process of the tests or of the benchmark. */
export interface NodeProcess {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves when the process has exited and its output is read (at once if it already has). */
  exited: Promise<ExitInfo>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit. */
  stop(graceMs?: number): Promise<ExitInfo>;
}

/**
 * Spawns `node <args>` in the project folder with `env` and nothing of this
 * process's environment but PATH, HOME, TMPDIR and SYSTEMROOT.
 *
 * @example
 * const floor = spawnNode(['--import', 'tsx', 'bench/baselines/express-floor.ts'], { PORT: '0' });
 * const port = await whenReady(floor, () => listeningPort(floor.stdout()));
 */
export function spawnNode(args: string[], env: Record<string, string>): NodeProcess {
  const base: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  const child = spawn(process.execPath, args, { cwd: projectRoot, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<ExitInfo>((resolve) => {
    // 'close' (not 'exit'): every byte of stdout and stderr has been read by then.
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const stop = async (graceMs = 15_000): Promise<ExitInfo> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const info = await exited;
      clearTimeout(kill);
      return info;
    }
    return exited;
  };
  return { child, stdout: () => out, stderr: () => err, exited, stop };
}

/**
 * Polls `ready` every 50 ms until it gives a value. Rejects, with the
 * process's output, when the process exits first or `timeoutMs` passes (and
 * then kills it).
 */
export async function whenReady<T>(proc: NodeProcess, ready: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let exit: ExitInfo | undefined;
  void proc.exited.then((info) => (exit = info));
  for (;;) {
    const value = await ready();
    if (value !== undefined) return value;
    const why = exit ? `exited (${exit.code ?? exit.signal}) before it was ready` : Date.now() > deadline ? `was not ready in ${timeoutMs} ms` : '';
    if (why) {
      proc.child.kill('SIGKILL');
      throw new Error(`${proc.child.spawnargs.slice(1).join(' ')} ${why}\nstdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The `port` of the first JSON line of `stdout` that says "listening", as server.ts logs it. */
export function listeningPort(stdout: string): number | undefined {
  for (const line of stdout.split('\n')) {
    if (!line.includes('listening')) continue;
    const { port } = JSON.parse(line) as { port?: unknown };
    if (typeof port === 'number') return port;
  }
  return undefined;
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Each stdout line parsed as JSON (throws on a line that is not JSON). */
  logLines(): Array<Record<string, unknown>>;
  /** Resolves when the process has exited (at once if it already has). */
  exited: Promise<ExitInfo>;
  /** SIGTERM, then SIGKILL after a while; resolves with the exit. */
  stop(): Promise<ExitInfo>;
}

function spawnServer(env: Record<string, string>): NodeProcess {
  return spawnNode(['--import', 'tsx', 'server.ts'], serverEnv(env));
}

/** Runs the server until it exits by itself (e.g. a bad configuration). */
export async function runUntilExit(env: Record<string, string>, timeoutMs = 60_000): Promise<ExitInfo & { stdout: string; stderr: string }> {
  const server = spawnServer(env);
  const timer = setTimeout(() => server.child.kill('SIGKILL'), timeoutMs);
  const info = await server.exited;
  clearTimeout(timer);
  return { ...info, stdout: server.stdout(), stderr: server.stderr() };
}

/**
 * Spawns `node --import tsx server.ts` and resolves once it logs its
 * "listening" line, with the port it chose (start it with PORT=0).
 */
export async function startServer(env: Record<string, string>, timeoutMs = 60_000): Promise<ServerProcess> {
  const server = spawnServer({ PORT: '0', LOG_LEVEL: 'info', ...env });
  const logLines = () =>
    server
      .stdout()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const port = await whenReady(server, () => listeningPort(server.stdout()), timeoutMs);
  return { ...server, port, baseUrl: `http://127.0.0.1:${port}`, logLines, stop: () => server.stop() };
}
