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
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  if (!env.ENV_FILE) throw new Error('spawned servers need ENV_FILE pointing at a temp file');
  const base: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...env };
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
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

function spawnServer(env: Record<string, string>): {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<ExitInfo>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
    cwd: projectRoot,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<ExitInfo>((resolve) => {
    // 'close' (not 'exit'): every byte of stdout and stderr has been read by then.
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, out: () => out, err: () => err, exited };
}

/** Runs the server until it exits by itself (e.g. a bad configuration). */
export async function runUntilExit(env: Record<string, string>, timeoutMs = 60_000): Promise<ExitInfo & { stdout: string; stderr: string }> {
  const { child, out, err, exited } = spawnServer(env);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const info = await exited;
  clearTimeout(timer);
  return { ...info, stdout: out(), stderr: err() };
}

/**
 * Spawns `node --import tsx server.ts` and resolves once it logs its
 * "listening" line, with the port it chose (start it with PORT=0).
 */
export async function startServer(env: Record<string, string>, timeoutMs = 60_000): Promise<ServerProcess> {
  const { child, out, err, exited } = spawnServer({ PORT: '0', LOG_LEVEL: 'info', ...env });
  const logLines = () =>
    out()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start in ${timeoutMs} ms\nstdout:\n${out()}\nstderr:\n${err()}`));
    }, timeoutMs);
    const check = () => {
      for (const line of out().split('\n')) {
        if (!line.includes('listening')) continue;
        const parsed = JSON.parse(line) as { port?: unknown };
        if (typeof parsed.port === 'number') {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          resolve(parsed.port);
          return;
        }
      }
    };
    child.stdout!.on('data', check);
    void exited.then((info) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${info.code ?? info.signal}) before listening\nstdout:\n${out()}\nstderr:\n${err()}`));
    });
  });

  const stop = async (): Promise<ExitInfo> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const info = await exited;
      clearTimeout(kill);
      return info;
    }
    return exited;
  };

  return { child, port, baseUrl: `http://127.0.0.1:${port}`, stdout: out, stderr: err, logLines, exited, stop };
}
