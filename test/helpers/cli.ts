import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../paths.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The argv the child was started with, to show no password was in it. */
  argv: string[];
}

/**
 * Runs `node --import tsx <script> <args>` from the project folder with the
 * environment `env`, `stdin` piped in; resolves with the exit code and output
 * (the child is killed after `timeoutMs`).
 */
function runScript(script: string, args: string[], options: { env: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number }): Promise<CliResult> {
  const argv = ['--import', 'tsx', script, ...args];
  const child = spawn(process.execPath, argv, { cwd: projectRoot, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.on('error', () => {}); // the CLI may exit without reading stdin
  child.stdin.end(options.stdin ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, argv: [process.execPath, ...argv] });
    });
  });
}

/**
 * Runs `node --import tsx scripts/users.ts <args>` (what `npm run users --` runs)
 * against `databaseUrl`, with `stdin` piped in. The child gets only PATH, HOME,
 * DATABASE_URL, an ENV_FILE that does not exist and the given `env` (e.g.
 * PUBLIC_URL): no signing secrets, and the project's own `.env` is never read.
 */
export function runUsersCli(
  args: string[],
  options: { databaseUrl: string; stdin?: string; timeoutMs?: number; env?: Record<string, string> },
): Promise<CliResult> {
  const { env, ...rest } = options;
  return runScript('scripts/users.ts', args, { ...rest, env: { ...cliEnv(options.databaseUrl), ...env } });
}

/**
 * Runs `node --import tsx scripts/keys.ts <args>` (what `npm run keys --`
 * runs) with only DATABASE_URL, the given `env` (JWT_SECRET_KEY,
 * JWT_ALGORITHM …) and what Node needs; never the project's `.env`.
 */
export function runKeysCli(args: string[], options: { databaseUrl: string; env: Record<string, string>; timeoutMs?: number }): Promise<CliResult> {
  return runScript('scripts/keys.ts', args, { timeoutMs: options.timeoutMs, env: { ...cliEnv(options.databaseUrl), ...options.env } });
}

/** Runs `node --import tsx scripts/clients.ts <args>` (what `npm run clients --` runs) with only DATABASE_URL and what Node needs. */
export function runClientsCli(args: string[], options: { databaseUrl: string; timeoutMs?: number }): Promise<CliResult> {
  return runScript('scripts/clients.ts', args, { timeoutMs: options.timeoutMs, env: cliEnv(options.databaseUrl) });
}

function cliEnv(databaseUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    DATABASE_URL: databaseUrl,
    ENV_FILE: path.join(path.dirname(databaseUrl.replace(/^sqlite:/, '')), 'no-such.env'),
  };
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** util-linux `script`, which runs a command on a pseudo-terminal; null where it is missing. */
export const scriptCommand: string | null =
  process.platform === 'linux' ? (['/usr/bin/script', '/bin/script'].find((p) => existsSync(p)) ?? null) : null;

/**
 * Runs the users CLI on a pseudo-terminal (through `script`), typing each of
 * `answers` only once the next "…password: " prompt has appeared, as a person
 * would. `output` is everything the terminal showed.
 */
export function runUsersCliInTerminal(
  args: string[],
  options: { databaseUrl: string; answers: string[]; timeoutMs?: number },
): Promise<{ code: number | null; output: string }> {
  if (!scriptCommand) throw new Error('util-linux script is not available');
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, '--import', 'tsx', 'scripts/users.ts', ...args].map(quote).join(' ');
  const child = spawn(scriptCommand, ['-qec', command, '/dev/null'], {
    cwd: projectRoot,
    env: cliEnv(options.databaseUrl),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  let answered = 0;
  const onData = (chunk: string) => {
    output += chunk;
    const prompts = output.match(/assword: /g)?.length ?? 0;
    while (answered < prompts && answered < options.answers.length) {
      child.stdin.write(`${options.answers[answered]}\r`);
      answered += 1;
    }
  };
  child.stdout.setEncoding('utf8').on('data', onData);
  child.stderr.setEncoding('utf8').on('data', onData);
  child.stdin.on('error', () => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      child.stdin.destroy();
      resolve({ code, output });
    });
  });
}
