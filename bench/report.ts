/**
 * Medians, goals and the stdout table of a benchmark run. Pure functions of
 * the results object that bench/run.ts also writes to bench/results.json.
 */
import type { LoginStats, RunStats } from './scenarios.js';

export type TargetId = 'floor' | 'ceiling' | 'me' | 'uncached' | 'token';

export const TARGET_LABELS: Record<TargetId, string> = {
  floor: 'express floor: fixed JSON',
  ceiling: 'node:http + HS256 ceiling',
  me: 'app GET /api/me (bearer)',
  uncached: 'same, revocation cache off',
  token: 'app GET /auth/token (cookie)',
};

/** The app's targets: each gets ratios to both baselines. */
export const APP_TARGETS = ['me', 'uncached', 'token'] as const;
export type AppTargetId = (typeof APP_TARGETS)[number];

export interface Round {
  round: number;
  /** The order the targets ran in this round (rotated every round). */
  order: TargetId[];
  throughput: Partial<Record<TargetId, RunStats>>;
  login?: LoginStats;
  healthz?: RunStats | null;
  /** /healthz at the same probe rate just before the storm, for comparison. */
  healthzIdle?: RunStats;
}

/** One RSS reading: bytes, at `ms` since the first measured request. */
export interface RssSample {
  ms: number;
  rss: number;
}

/** What bench/run.ts measured around the RSS run (bytes; `series` ms since its first request). */
export interface MemoryReadings {
  /** Requests completed in the measured run. */
  requests: number;
  /** Requests asked for; fewer were done when the time limit stopped the run. */
  planned: number;
  /** Requests of the same mix sent first, not measured. */
  warmup: number;
  mix: string;
  idleAfterSetup: number | null;
  /** Right before the first and right after the last measured request. */
  before: number | null;
  after: number | null;
  peak: number | null;
  series: RssSample[];
  run: RunStats;
}

export interface MemoryReport extends MemoryReadings {
  /** Lowest reading in the first and in the last fifth of the run (the GC troughs). */
  troughFirst: number | null;
  troughLast: number | null;
  /** troughLast - troughFirst: what the goal judges. */
  growth: number | null;
  /** after - before: two single readings, each anywhere in the young generation's swing. */
  rawGrowth: number | null;
}

/**
 * Growth of retained memory over the run. RSS swings by tens of MB between
 * young-generation scavenges, so two single readings mostly tell where in that
 * swing each fell; the lowest reading of the first and of the last fifth of the
 * run are both taken just after a collection, and their difference is memory
 * that stayed.
 */
export function memoryReport(m: MemoryReadings): MemoryReport {
  const end = m.series.at(-1)?.ms ?? 0;
  const troughFirst = lowestBetween(m.series, 0, end / 5);
  const troughLast = lowestBetween(m.series, end - end / 5, end);
  return {
    ...m,
    troughFirst,
    troughLast,
    growth: troughFirst !== null && troughLast !== null ? troughLast - troughFirst : null,
    rawGrowth: m.before !== null && m.after !== null ? m.after - m.before : null,
  };
}

export interface Medians {
  throughput: Partial<Record<TargetId, { rps: number; p50: number; p99: number }>>;
  /** Median over rounds of the per-round ratio app ÷ baseline. */
  ratios: Partial<Record<AppTargetId, { express: number; http: number }>>;
  login?: { loginsPerSecond: number; postP50: number; postP99: number };
  healthz?: { p50: number; p99: number; worstP99: number };
  healthzIdle?: { p50: number; p99: number };
}

export interface Goal {
  name: string;
  target: string;
  value: string;
  pass: boolean | null;
}

export interface Errors {
  /** Socket errors and timeouts. */
  errors: number;
  /** Unexpected statuses (non-2xx; for the sign-in flow anything but 200/302). */
  non2xx: number;
  /** Right status, wrong body. */
  mismatches: number;
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function computeMedians(rounds: readonly Round[]): Medians {
  const out: Medians = { throughput: {}, ratios: {} };
  for (const id of Object.keys(TARGET_LABELS) as TargetId[]) {
    const runs = rounds.map((r) => r.throughput[id]).filter((x): x is RunStats => x !== undefined);
    if (runs.length === 0) continue;
    out.throughput[id] = { rps: median(runs.map((r) => r.rps)), p50: median(runs.map((r) => r.latency.p50)), p99: median(runs.map((r) => r.latency.p99)) };
  }
  for (const id of APP_TARGETS) {
    const express = rounds.map((r) => ratio(r.throughput[id], r.throughput.floor));
    const http = rounds.map((r) => ratio(r.throughput[id], r.throughput.ceiling));
    if (express.some(Number.isFinite) || http.some(Number.isFinite)) out.ratios[id] = { express: median(express), http: median(http) };
  }
  const logins = rounds.map((r) => r.login).filter((x): x is LoginStats => x !== undefined);
  if (logins.length) {
    out.login = {
      loginsPerSecond: median(logins.map((l) => l.loginsPerSecond)),
      postP50: median(logins.map((l) => l.postLatency.p50)),
      postP99: median(logins.map((l) => l.postLatency.p99)),
    };
  }
  const idle = rounds.map((r) => r.healthzIdle).filter((x): x is RunStats => !!x);
  if (idle.length) out.healthzIdle = { p50: median(idle.map((p) => p.latency.p50)), p99: median(idle.map((p) => p.latency.p99)) };
  const probes = rounds.map((r) => r.healthz).filter((x): x is RunStats => !!x);
  if (probes.length) {
    out.healthz = {
      p50: median(probes.map((p) => p.latency.p50)),
      p99: median(probes.map((p) => p.latency.p99)),
      worstP99: Math.max(...probes.map((p) => p.latency.p99)),
    };
  }
  return out;
}

/** a.rps ÷ b.rps of one round; NaN when either run is missing. */
export function ratio(a: Pick<RunStats, 'rps'> | undefined, b: Pick<RunStats, 'rps'> | undefined): number {
  return a && b && b.rps > 0 ? a.rps / b.rps : NaN;
}

function addErrors(total: Errors, run: RunStats | null | undefined): void {
  if (!run) return;
  total.errors += run.errors;
  total.non2xx += run.non2xx;
  total.mismatches += run.mismatches;
}

/** Errors of the app's scenarios and of the baselines, separately. */
export function countErrors(rounds: readonly Round[], memory: MemoryReport | undefined): { app: Errors; baselines: Errors } {
  const app: Errors = { errors: 0, non2xx: 0, mismatches: 0 };
  const baselines: Errors = { errors: 0, non2xx: 0, mismatches: 0 };
  for (const r of rounds) {
    addErrors(baselines, r.throughput.floor);
    addErrors(baselines, r.throughput.ceiling);
    addErrors(app, r.throughput.me);
    addErrors(app, r.throughput.uncached);
    addErrors(app, r.throughput.token);
    addErrors(app, r.login);
    addErrors(app, r.healthz);
    addErrors(app, r.healthzIdle);
  }
  addErrors(app, memory?.run);
  return { app, baselines };
}

export function evaluateGoals(m: Medians, memory: MemoryReport | undefined, errors: Errors): Goal[] {
  const goals: Goal[] = [];
  const me = m.ratios.me?.express;
  // Three decimals here, so a value just under a goal never reads as the goal itself (0.298, not 0.30).
  if (me !== undefined) goals.push({ name: '/api/me vs express floor', target: '≥ 0.80×', value: `${fmtGoalRatio(me)}×`, pass: Number.isFinite(me) ? me >= 0.8 : null });
  const token = m.ratios.token?.express;
  if (token !== undefined) goals.push({ name: '/auth/token vs express floor', target: '≥ 0.30×', value: `${fmtGoalRatio(token)}×`, pass: Number.isFinite(token) ? token >= 0.3 : null });
  if (m.healthz) goals.push({ name: '/healthz p99 during sign-in storm', target: '≤ 100 ms', value: `${fmtMs(m.healthz.p99)} ms (worst round ${fmtMs(m.healthz.worstP99)})`, pass: m.healthz.p99 <= 100 });
  if (memory && memory.growth !== null) {
    goals.push({
      name: `RSS growth over ${memory.requests.toLocaleString('en-US')} requests (troughs)`,
      target: '< 50 MB',
      value: `${fmtMb(memory.growth)} MB`,
      pass: memory.growth < 50 * 1024 * 1024,
    });
  }
  const bad = errors.errors + errors.non2xx + errors.mismatches;
  goals.push({ name: 'errors, unexpected statuses, wrong bodies (app)', target: '0', value: `${errors.errors} / ${errors.non2xx} / ${errors.mismatches}`, pass: bad === 0 });
  return goals;
}

// ---------------------------------------------------------------- formatting

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

export function fmtRatio(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : '—';
}

export function fmtMs(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return n < 10 ? n.toFixed(1) : Math.round(n).toString();
}

export function fmtMb(bytes: number | null): string {
  return bytes === null || !Number.isFinite(bytes) ? '—' : (bytes / (1024 * 1024)).toFixed(1);
}

function fmtK(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(n < 10 ? 1 : 0);
}

/** A plain-text table with right-aligned numeric columns (all but the first). */
export function table(header: string[], rows: string[][], indent = '  '): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    indent + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}

export interface ReportInput {
  title: string;
  subtitle: string[];
  rounds: readonly Round[];
  medians: Medians;
  memory?: MemoryReport;
  goals: Goal[];
  connections: number;
  stormConcurrency: number;
  probeRate: number;
}

export function renderReport(r: ReportInput): string {
  const out: string[] = [r.title, ...r.subtitle, ''];
  const ids = (Object.keys(TARGET_LABELS) as TargetId[]).filter((id) => r.medians.throughput[id]);
  if (ids.length) {
    out.push(`Throughput: ${r.connections} keep-alive connections, medians of ${r.rounds.length} alternating rounds; ratios are medians of per-round ratios`);
    out.push(
      table(
        ['target', 'req/s', 'p50 ms', 'p99 ms', '× express', '× node:http', 'err/non2xx/bad', 'req/s per round'],
        ids.map((id) => {
          const m = r.medians.throughput[id]!;
          const runs = r.rounds.map((x) => x.throughput[id]).filter((x): x is RunStats => !!x);
          const ratios = (APP_TARGETS as readonly TargetId[]).includes(id) ? r.medians.ratios[id as AppTargetId] : undefined;
          const vsExpress = id === 'floor' ? 1 : id === 'ceiling' ? median(r.rounds.map((x) => ratio(x.throughput.ceiling, x.throughput.floor))) : ratios?.express ?? NaN;
          const vsHttp = id === 'ceiling' ? 1 : id === 'floor' ? median(r.rounds.map((x) => ratio(x.throughput.floor, x.throughput.ceiling))) : ratios?.http ?? NaN;
          const e = runs.reduce((a, x) => [a[0]! + x.errors, a[1]! + x.non2xx, a[2]! + x.mismatches], [0, 0, 0]);
          return [TARGET_LABELS[id], fmtInt(m.rps), fmtMs(m.p50), fmtMs(m.p99), fmtRatio(vsExpress), fmtRatio(vsHttp), e.join('/'), runs.map((x) => fmtK(x.rps)).join(' ')];
        }),
      ),
    );
    out.push('');
  }
  if (r.medians.login) {
    const l = r.medians.login;
    const runs = r.rounds.map((x) => x.login).filter((x): x is LoginStats => !!x);
    const e = runs.reduce((a, x) => [a[0]! + x.errors, a[1]! + x.non2xx, a[2]! + x.mismatches], [0, 0, 0]);
    const probes = r.rounds.map((x) => x.healthz).filter((x): x is RunStats => !!x);
    const pe = probes.reduce((a, x) => [a[0]! + x.errors, a[1]! + x.non2xx, a[2]! + x.mismatches], [0, 0, 0]);
    out.push(`Sign-in storm: ${r.stormConcurrency} browsers each looping GET /auth/login → POST /auth/login (argon2id verify)${r.probeRate ? `, /healthz probed at ${r.probeRate} req/s meanwhile` : ''}`);
    const idle = r.rounds.map((x) => x.healthzIdle).filter((x): x is RunStats => !!x);
    const ie = idle.reduce((a, x) => [a[0]! + x.errors, a[1]! + x.non2xx, a[2]! + x.mismatches], [0, 0, 0]);
    const rows = [
      ['POST /auth/login', `${l.loginsPerSecond.toFixed(1)} logins/s`, fmtMs(l.postP50), fmtMs(l.postP99), e.join('/'), runs.map((x) => x.loginsPerSecond.toFixed(1)).join(' ')],
    ];
    if (r.medians.healthz) {
      const h = r.medians.healthz;
      if (r.medians.healthzIdle) {
        const i = r.medians.healthzIdle;
        rows.push(['GET /healthz, app idle (reference)', `${fmtInt(median(idle.map((p) => p.rps)))} req/s`, fmtMs(i.p50), fmtMs(i.p99), ie.join('/'), idle.map((p) => `${fmtMs(p.latency.p99)}ms`).join(' ')]);
      }
      rows.push(['GET /healthz during the storm', `${fmtInt(median(probes.map((p) => p.rps)))} req/s`, fmtMs(h.p50), fmtMs(h.p99), pe.join('/'), probes.map((p) => `${fmtMs(p.latency.p99)}ms`).join(' ')]);
    }
    out.push(table(['scenario', 'rate', 'p50 ms', 'p99 ms', 'err/non2xx/bad', 'per round (logins/s; healthz p99)'], rows));
    const drains = runs.map((x) => x.drainMs);
    out.push(
      `  after each storm one more sign-in took ${drains.map((d) => (d === null ? 'FAILED' : `${fmtMs(d)} ms`)).join(', ')}` +
        ' (it queues behind the hashes of the sign-ins whose connections the load generator dropped)',
    );
    out.push('');
  }
  if (r.memory) {
    const m = r.memory;
    const cut = m.requests < m.planned ? ` (of ${fmtInt(m.planned)} planned: stopped at the time limit)` : '';
    out.push(`Memory: VmRSS of the app process over ${fmtInt(m.requests)} requests${cut} after ${fmtInt(m.warmup)} unmeasured ones, ${m.mix}, ${fmtInt(m.run.rps)} req/s`);
    const signed = (bytes: number | null) => `${bytes !== null && bytes >= 0 ? '+' : ''}${fmtMb(bytes)} MB`;
    out.push(
      table(
        ['idle after setup', 'before', 'after', 'trough, first fifth', 'trough, last fifth', 'growth (troughs)', 'after − before', 'peak (VmHWM)', 'err/non2xx/bad'],
        [[`${fmtMb(m.idleAfterSetup)} MB`, `${fmtMb(m.before)} MB`, `${fmtMb(m.after)} MB`, `${fmtMb(m.troughFirst)} MB`, `${fmtMb(m.troughLast)} MB`, signed(m.growth), signed(m.rawGrowth), `${fmtMb(m.peak)} MB`, `${m.run.errors}/${m.run.non2xx}/${m.run.mismatches}`]],
      ),
    );
    out.push(`  lowest RSS of each tenth of the run (MB): ${tenths(m.series).map((b) => fmtMb(b)).join(' ')}`);
    out.push('');
  }
  out.push('Goals (issue 6)');
  out.push(table(['goal', 'target', 'measured', ''], r.goals.map((g) => [g.name, g.target, g.value, g.pass === null ? '?' : g.pass ? 'met' : 'MISSED'])));
  return out.join('\n');
}

/** The lowest reading of each tenth of a series (its GC troughs): a leak shows as a steady climb. */
function tenths(series: readonly RssSample[]): number[] {
  const end = series.at(-1)?.ms ?? 0;
  const out: number[] = [];
  for (let i = 0; i < 10; i += 1) {
    const low = lowestBetween(series, (end * i) / 10, (end * (i + 1)) / 10);
    if (low !== null) out.push(low);
  }
  return out;
}

/** The lowest RSS read from `from` to `to` ms (inclusive), or null when none was. */
function lowestBetween(series: readonly RssSample[], from: number, to: number): number | null {
  const window = series.filter((p) => p.ms >= from && p.ms <= to).map((p) => p.rss);
  return window.length > 0 ? Math.min(...window) : null;
}

function fmtGoalRatio(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : '?';
}
