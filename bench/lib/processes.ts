/**
 * Child processes of the benchmark: the app (built `dist/server.js`) and the
 * two baselines. Every child is registered so that it is killed when the
 * benchmark exits for any reason; every wait is bounded in time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { LOOPBACK, PROXY_HEADERS, request } from './http.js';

const OUTPUT_KEEP_BYTES = 64 * 1024;
const live = new Set<ChildProcess>();

let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  // Last resort: nothing we started outlives us, whatever way we leave.
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** The last 64 KiB of the child's stdout and stderr. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed by a signal). */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface StartOptions {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Fixed port to wait on (via `readyPath`), or undefined to read `{"listening": port}` from stdout. */
  port?: number;
  readyPath?: string;
  readyTimeoutMs?: number;
}

/** Starts `node <args>` and resolves once it answers (or announced its port). */
export async function startNode(options: StartOptions): Promise<Child> {
  installCleanup();
  const proc = spawn(process.execPath, options.args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let output = '';
  let announced: number | undefined;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      exited = { code, signal };
      resolve(exited);
    });
  });
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEEP_BYTES);
    if (announced === undefined && options.port === undefined) {
      const match = /\{"listening":(\d+)\}/.exec(output);
      if (match) announced = Number(match[1]);
    }
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let port: number | undefined;
  while (Date.now() < deadline) {
    if (exited) break;
    if (options.port === undefined) {
      if (announced !== undefined) {
        port = announced;
        break;
      }
    } else {
      const ok = await request(options.port, 'GET', options.readyPath ?? '/', { headers: PROXY_HEADERS, timeoutMs: 2_000 }).then(
        (res) => res.status === 200,
        () => false,
      );
      if (ok) {
        port = options.port;
        break;
      }
    }
    await sleep(100);
  }
  if (port === undefined || exited) {
    proc.kill('SIGKILL');
    const why = exited ? `exited with ${exited.code ?? exited.signal}` : `was not ready within ${options.readyTimeoutMs ?? 30_000} ms`;
    throw new Error(`${options.name} ${why}. Its output:\n${output.trim() || '(none)'}`);
  }

  return {
    name: options.name,
    pid: proc.pid!,
    port,
    output: () => output,
    async stop(graceMs = 12_000) {
      if (exited) return exited;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const result = await exitPromise;
      clearTimeout(timer);
      return result;
    },
  };
}

/** A port that was free a moment ago on 127.0.0.1 (the app is given it explicitly). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Memory {
  /** Resident set size, bytes. */
  rss: number;
  /** Peak resident set size so far, bytes. */
  hwm: number;
}

/** VmRSS and VmHWM of a process from /proc/<pid>/status (Linux), or null elsewhere. */
export function memoryOf(pid: number): Memory | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    const hwm = kb('VmHWM');
    return Number.isFinite(rss) ? { rss, hwm } : null;
  } catch {
    return null;
  }
}

/** Kills every child still running (used on SIGINT). */
export function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
