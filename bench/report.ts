/**
 * Medians, goals and the stdout table of a benchmark run. Pure functions of
 * the results object that bench/run.ts also writes to bench/results.json.
 */
import type { LatencySummary, LoginStats, RunStats } from './scenarios.js';

export type TargetId =
  | 'floor'
  | 'ceiling'
  | 'me'
  | 'uncached'
  | 'token'
  | 'meEs256'
  | 'tokenEs256'
  | 'meRs256'
  | 'tokenRs256'
  | 'mePg'
  | 'tokenPg'
  | 'meMetrics'
  | 'tokenMetrics'
  | 'peerMe'
  | 'peerToken';

/** Every target, in the order of the table. */
export const TARGET_LABELS: Record<TargetId, string> = {
  floor: 'express floor: fixed JSON',
  ceiling: 'node:http + HS256 ceiling',
  me: 'app GET /api/me (bearer)',
  uncached: 'same, revocation cache off',
  token: 'app GET /auth/token (cookie)',
  meEs256: 'app ES256: GET /api/me',
  tokenEs256: 'app ES256: GET /auth/token',
  meRs256: 'app RS256: GET /api/me',
  tokenRs256: 'app RS256: GET /auth/token',
  mePg: 'app PostgreSQL: GET /api/me',
  tokenPg: 'app PostgreSQL: GET /auth/token',
  meMetrics: 'app, metrics on: GET /api/me',
  tokenMetrics: 'app, metrics on: GET /auth/token',
  peerMe: 'Better Auth: GET /api/me (jose)',
  peerToken: 'Better Auth: GET /api/auth/token',
};

/** The app's targets: each gets ratios to both baselines. */
export const APP_TARGETS = ['me', 'uncached', 'token', 'meEs256', 'tokenEs256', 'meRs256', 'tokenRs256', 'meMetrics', 'tokenMetrics', 'mePg', 'tokenPg'] as const;
export type AppTargetId = (typeof APP_TARGETS)[number];

/**
 * The targets on an app that differs from the default one in one setting (ES256 or RS256 signing, metrics
 * collected), each with the same route on the default HS256 app (its ratio `hs256`, column "× default").
 */
export const HS256_TWIN = { meEs256: 'me', tokenEs256: 'token', meRs256: 'me', tokenRs256: 'token', meMetrics: 'me', tokenMetrics: 'token' } as const satisfies Partial<Record<AppTargetId, AppTargetId>>;
export type AlgTargetId = keyof typeof HS256_TWIN;

export const isAlgTarget = (id: TargetId): id is AlgTargetId => id in HS256_TWIN;

/** The app's routes and the same job on the `--peer` (Better Auth): its ratio `peer` is app ÷ peer, same round. */
export const PEER_TWIN = { me: 'peerMe', token: 'peerToken' } as const satisfies Partial<Record<AppTargetId, TargetId>>;
export type PeeredTargetId = keyof typeof PEER_TWIN;
export const hasPeerTwin = (id: TargetId): id is PeeredTargetId => id in PEER_TWIN;
/** Targets that are not the app: errors there are the baselines'. */
export const BASELINE_TARGETS = ['floor', 'ceiling', 'peerMe', 'peerToken'] as const satisfies readonly TargetId[];
/** Issue 14: the app's routes against Better Auth's (JWT plugin, SQLite), least median ratios over fresh rounds. */
export const PEER_GOALS = { me: 3, token: 8 } as const satisfies Record<PeeredTargetId, number>;

/**
 * The throughput goals of the fresh-process rounds, each a least median ratio
 * (issue 14): the HS256 and PostgreSQL apps' routes to the Express floor, the
 * ES256 app's to the same route on the HS256 app. RS256 has none: it is
 * measured to show what RSA signing costs.
 */
export const FRESH_GOALS = { me: 1.3, token: 0.5, meEs256: 0.95, tokenEs256: 0.85, mePg: 1.3, tokenPg: 0.45 } as const satisfies Partial<Record<AppTargetId, number>>;
/** Issue 14: no fresh round of `/api/me` below this ratio to the floor (every process fast). */
export const ME_LOWEST_ROUND = 1.1;
/** The long-lived app's goals (issue 6): its routes to the Express floor under mixed traffic. */
export const MIXED_GOALS = { me: 0.8, token: 0.3 } as const satisfies Partial<Record<AppTargetId, number>>;
const GOAL_NAMES: Record<keyof typeof FRESH_GOALS, string> = {
  me: '/api/me vs express floor',
  token: '/auth/token vs express floor',
  meEs256: '/api/me ES256 vs HS256',
  tokenEs256: '/auth/token ES256 vs HS256',
  mePg: '/api/me PostgreSQL vs express floor',
  tokenPg: '/auth/token PostgreSQL vs express floor',
};

/**
 * A throughput run, the CPU time per request of its server's process tree (µs,
 * from /proc; null where unreadable), the server's pid, and when the run began
 * and ended in µs of CLOCK_MONOTONIC (to cut the run out of a `--cpu-prof` profile).
 */
export type TargetRun = RunStats & { cpuUs?: number | null; pid?: number; window?: [number, number] };

export interface Round {
  round: number;
  /** The order the targets ran in this round (shuffled, or rotated in the long-lived scenario). */
  order: TargetId[];
  throughput: Partial<Record<TargetId, TargetRun>>;
  login?: LoginStats;
  healthz?: RunStats;
  /** /healthz at the same probe rate just before the storm, for comparison. */
  healthzIdle?: RunStats;
}

/** One RSS reading: bytes, at `ms` since the first measured request. */
export interface RssSample {
  ms: number;
  rss: number;
}

const rssOf = (p: RssSample) => p.rss;

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
  const troughFirst = lowestBetween(m.series, 0, end / 5, rssOf);
  const troughLast = lowestBetween(m.series, end - end / 5, end, rssOf);
  return {
    ...m,
    troughFirst,
    troughLast,
    growth: troughFirst !== null && troughLast !== null ? troughLast - troughFirst : null,
    rawGrowth: m.before !== null && m.after !== null ? m.after - m.before : null,
  };
}

export interface Medians {
  throughput: Partial<Record<TargetId, { rps: number; p50: number; p99: number; cpuUs: number }>>;
  /** Median over rounds of the per-round ratio app ÷ baseline (`hs256`: ÷ the same route on the HS256 app). */
  ratios: Partial<Record<AppTargetId, { express: number; http: number; hs256?: number; peer?: number }>>;
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

/** a.rps ÷ b.rps of one round; NaN when either run is missing. */
export function ratio(a: Pick<RunStats, 'rps'> | undefined, b: Pick<RunStats, 'rps'> | undefined): number {
  return a && b && b.rps > 0 ? a.rps / b.rps : NaN;
}

/** The items that are there (a round may lack a scenario). */
function present<T>(items: readonly (T | null | undefined)[]): T[] {
  return items.filter((x): x is T => x !== null && x !== undefined);
}

const p50p99 = (latencies: readonly LatencySummary[]) => ({ p50: median(latencies.map((l) => l.p50)), p99: median(latencies.map((l) => l.p99)) });

export function computeMedians(rounds: readonly Round[]): Medians {
  const out: Medians = { throughput: {}, ratios: {} };
  for (const id of Object.keys(TARGET_LABELS) as TargetId[]) {
    const runs = present(rounds.map((r) => r.throughput[id]));
    if (runs.length) out.throughput[id] = { rps: median(runs.map((r) => r.rps)), ...p50p99(runs.map((r) => r.latency)), cpuUs: median(runs.map((r) => r.cpuUs ?? NaN)) };
  }
  for (const id of APP_TARGETS) {
    const express = rounds.map((r) => ratio(r.throughput[id], r.throughput.floor));
    const http = rounds.map((r) => ratio(r.throughput[id], r.throughput.ceiling));
    const hs256 = isAlgTarget(id) ? rounds.map((r) => ratio(r.throughput[id], r.throughput[HS256_TWIN[id]])) : [];
    const peer = hasPeerTwin(id) ? rounds.map((r) => ratio(r.throughput[id], r.throughput[PEER_TWIN[id]])) : [];
    if ([...express, ...http, ...hs256, ...peer].some(Number.isFinite)) {
      out.ratios[id] = {
        express: median(express),
        http: median(http),
        ...(isAlgTarget(id) && { hs256: median(hs256) }),
        ...(peer.some(Number.isFinite) && { peer: median(peer) }),
      };
    }
  }
  const logins = present(rounds.map((r) => r.login));
  if (logins.length) {
    const post = p50p99(logins.map((l) => l.postLatency));
    out.login = { loginsPerSecond: median(logins.map((l) => l.loginsPerSecond)), postP50: post.p50, postP99: post.p99 };
  }
  const idle = present(rounds.map((r) => r.healthzIdle));
  if (idle.length) out.healthzIdle = p50p99(idle.map((p) => p.latency));
  const probes = present(rounds.map((r) => r.healthz));
  if (probes.length) out.healthz = { ...p50p99(probes.map((p) => p.latency)), worstP99: Math.max(...probes.map((p) => p.latency.p99)) };
  return out;
}

/** Errors, unexpected statuses and wrong bodies of some runs together. */
function sumErrors(runs: readonly (RunStats | null | undefined)[]): Errors {
  const total: Errors = { errors: 0, non2xx: 0, mismatches: 0 };
  for (const run of present(runs)) {
    total.errors += run.errors;
    total.non2xx += run.non2xx;
    total.mismatches += run.mismatches;
  }
  return total;
}

/** `errors/non2xx/mismatches` of some runs together. */
function fmtErrors(runs: readonly (RunStats | null | undefined)[]): string {
  const e = sumErrors(runs);
  return `${e.errors}/${e.non2xx}/${e.mismatches}`;
}

/** Errors of the app's scenarios and of the baselines, separately. */
export function countErrors(rounds: readonly Round[], memory: MemoryReport | undefined): { app: Errors; baselines: Errors } {
  return {
    app: sumErrors([...rounds.flatMap((r) => [...APP_TARGETS.map((id) => r.throughput[id]), r.login, r.healthz, r.healthzIdle]), memory?.run]),
    baselines: sumErrors(rounds.flatMap((r) => BASELINE_TARGETS.map((id) => r.throughput[id]))),
  };
}

/** A ratio goal's row: three decimals, so a value just under a goal never reads as the goal itself (0.298, not 0.30). */
function ratioGoal(name: string, value: number, min: number): Goal {
  const finite = Number.isFinite(value);
  return { name, target: `≥ ${min.toFixed(2)}×`, value: `${finite ? value.toFixed(3) : '?'}×`, pass: finite ? value >= min : null };
}

/** The lowest finite per-round ratio of `id` to the floor, NaN when no round has one. */
function lowestRound(rounds: readonly Round[], id: AppTargetId): number {
  const values = rounds.map((r) => ratio(r.throughput[id], r.throughput.floor)).filter(Number.isFinite);
  return values.length ? Math.min(...values) : NaN;
}

/** The goals of the fresh-process rounds (issue 14), of the long-lived scenario (issue 6) when it ran, and no errors. */
export function evaluateGoals(
  fresh: { rounds: readonly Round[]; medians: Medians },
  mixed: { medians: Medians; memory?: MemoryReport } | undefined,
  errors: Errors,
): Goal[] {
  const goals: Goal[] = [];
  for (const [id, min] of Object.entries(FRESH_GOALS) as [keyof typeof FRESH_GOALS, number][]) {
    const value = isAlgTarget(id) ? fresh.medians.ratios[id]?.hs256 : fresh.medians.ratios[id]?.express;
    if (value === undefined) continue;
    goals.push(ratioGoal(`${GOAL_NAMES[id]}, fresh processes`, value, min));
    if (id === 'me') goals.push(ratioGoal('/api/me vs express floor, lowest fresh round', lowestRound(fresh.rounds, 'me'), ME_LOWEST_ROUND));
  }
  for (const [id, min] of Object.entries(PEER_GOALS) as [PeeredTargetId, number][]) {
    const value = fresh.medians.ratios[id]?.peer;
    if (value !== undefined) goals.push(ratioGoal(`${id === 'me' ? '/api/me' : '/auth/token'} vs Better Auth's, fresh processes`, value, min));
  }
  for (const [id, min] of Object.entries(MIXED_GOALS) as [keyof typeof MIXED_GOALS, number][]) {
    const value = mixed?.medians.ratios[id]?.express;
    if (value !== undefined) goals.push(ratioGoal(`${GOAL_NAMES[id]}, long-lived process`, value, min));
  }
  const healthz = mixed?.medians.healthz;
  if (healthz) goals.push({ name: '/healthz p99 during sign-in storm', target: '≤ 100 ms', value: `${fmtMs(healthz.p99)} ms (worst round ${fmtMs(healthz.worstP99)})`, pass: healthz.p99 <= 100 });
  const memory = mixed?.memory;
  if (memory && memory.growth !== null) {
    goals.push({ name: `RSS growth over ${fmtInt(memory.requests)} requests (troughs)`, target: '< 50 MB', value: `${fmtMb(memory.growth)} MB`, pass: memory.growth < 50 * 1024 * 1024 });
  }
  const bad = errors.errors + errors.non2xx + errors.mismatches;
  goals.push({ name: 'errors, unexpected statuses, wrong bodies (app)', target: '0', value: `${errors.errors} / ${errors.non2xx} / ${errors.mismatches}`, pass: bad === 0 });
  return goals;
}

// ---------------------------------------------------------------- formatting

/** `1 round`, `3 rounds`. */
export function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

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
  /** The fresh-process rounds. */
  rounds?: readonly Round[];
  medians?: Medians;
  /** The long-lived scenario. */
  mixed?: { rounds: readonly Round[]; medians: Medians; memory?: MemoryReport };
  /** Text sections printed before the goals (the soak's). */
  sections?: string[];
  goals: Goal[];
  connections: number;
  stormConcurrency: number;
  probeRate: number;
}

/** One round's ratio of a target: to the floor, or for ES256/RS256 to the same route on the HS256 app; none for the floor. */
function roundRatio(round: Round, id: TargetId): number {
  if (id === 'floor') return NaN;
  return ratio(round.throughput[id], round.throughput[isAlgTarget(id) ? HS256_TWIN[id] : 'floor']);
}

/** The throughput table of some rounds (medians, ratios, CPU per request) and a table of every round's values. */
function throughputSection(heading: string, rounds: readonly Round[], medians: Medians): string[] {
  const ids = (Object.keys(TARGET_LABELS) as TargetId[]).filter((id) => medians.throughput[id]);
  if (ids.length === 0) return [];
  // The baselines' ratios to each other are not in the medians: computed here.
  const baselineRatio = (a: TargetId, b: TargetId) => median(rounds.map((x) => ratio(x.throughput[a], x.throughput[b])));
  const withPeer = Object.values(medians.ratios).some((x) => x.peer !== undefined);
  const rows = ids.map((id) => {
    const m = medians.throughput[id]!;
    const runs = present(rounds.map((x) => x.throughput[id]));
    const ratios = medians.ratios[id as AppTargetId];
    const vsExpress = id === 'floor' ? 1 : id === 'ceiling' ? baselineRatio('ceiling', 'floor') : (ratios?.express ?? NaN);
    const vsHttp = id === 'ceiling' ? 1 : id === 'floor' ? baselineRatio('floor', 'ceiling') : (ratios?.http ?? NaN);
    const vsHs256 = isAlgTarget(id) ? fmtRatio(ratios?.hs256 ?? NaN) : '';
    const vsPeer = ratios?.peer === undefined ? '' : fmtRatio(ratios.peer);
    return [TARGET_LABELS[id], fmtInt(m.rps), fmtMs(m.p50), fmtMs(m.p99), fmtInt(m.cpuUs), fmtRatio(vsExpress), fmtRatio(vsHttp), vsHs256, ...(withPeer ? [vsPeer] : []), fmtErrors(runs)];
  });
  const perRound = ids.map((id) => {
    const cells = (f: (r: Round) => string) => rounds.map(f).join(' ');
    return [
      TARGET_LABELS[id],
      id === 'floor' ? '' : cells((r) => fmtRatio(roundRatio(r, id))),
      cells((r) => fmtInt(r.throughput[id]?.cpuUs ?? NaN)),
      cells((r) => fmtK(r.throughput[id]?.rps ?? NaN)),
    ];
  });
  return [
    heading,
    table(['target', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', '× express', '× node:http', '× default', ...(withPeer ? ['× Better Auth'] : []), 'err/non2xx/bad'], rows),
    '  × default: ÷ the same route on the default app (HS256, metrics off), same round. Per round (ratio: × express; × default for ES256, RS256, metrics on):',
    table(['target', 'ratio per round', 'CPU µs/req per round', 'req/s per round'], perRound, '    '),
    ...(withPeer
      ? [
          `  per round, app ÷ Better Auth: ${(Object.keys(PEER_TWIN) as PeeredTargetId[])
            .map((id) => `${id === 'me' ? '/api/me' : '/auth/token'} ${rounds.map((r) => fmtRatio(ratio(r.throughput[id], r.throughput[PEER_TWIN[id]]))).join(' ')}`)
            .join(' · ')}`,
        ]
      : []),
    '',
  ];
}

export function renderReport(r: ReportInput): string {
  const out: string[] = [r.title, ...r.subtitle, ''];
  if (r.rounds && r.medians) {
    out.push(
      ...throughputSection(
        `Fresh processes: every round a new server per target, set up through the forms and warmed up, then all measured in a shuffled order; ` +
          `${r.connections} keep-alive connections, medians of ${plural(r.rounds.length, 'round')}; ratios are medians of per-round ratios; CPU: the server's process tree`,
        r.rounds,
        r.medians,
      ),
    );
  }
  const mixed = r.mixed;
  if (mixed) {
    out.push(
      ...throughputSection(
        `Long-lived process, mixed traffic (what production sees): one app process serves every route, the sign-in storms and the RSS run; ` +
          `the floor long-lived too; order rotated every round; medians of ${plural(mixed.rounds.length, 'round')}`,
        mixed.rounds,
        mixed.medians,
      ),
    );
  }
  if (mixed?.medians.login) {
    const l = mixed.medians.login;
    const runs = present(mixed.rounds.map((x) => x.login));
    const probes = present(mixed.rounds.map((x) => x.healthz));
    const idle = present(mixed.rounds.map((x) => x.healthzIdle));
    const probeRow = (label: string, m: { p50: number; p99: number }, p: RunStats[]) =>
      [label, `${fmtInt(median(p.map((x) => x.rps)))} req/s`, fmtMs(m.p50), fmtMs(m.p99), fmtErrors(p), p.map((x) => `${fmtMs(x.latency.p99)}ms`).join(' ')];
    const rows = [['POST /auth/login', `${l.loginsPerSecond.toFixed(1)} logins/s`, fmtMs(l.postP50), fmtMs(l.postP99), fmtErrors(runs), runs.map((x) => x.loginsPerSecond.toFixed(1)).join(' ')]];
    if (mixed.medians.healthz) {
      if (mixed.medians.healthzIdle) rows.push(probeRow('GET /healthz, app idle (reference)', mixed.medians.healthzIdle, idle));
      rows.push(probeRow('GET /healthz during the storm', mixed.medians.healthz, probes));
    }
    out.push(`Sign-in storm on the long-lived app: ${r.stormConcurrency} browsers each looping GET /auth/login → POST /auth/login (argon2id verify), /healthz probed at ${r.probeRate} req/s meanwhile`);
    out.push(table(['scenario', 'rate', 'p50 ms', 'p99 ms', 'err/non2xx/bad', 'per round (logins/s; healthz p99)'], rows));
    out.push(
      `  after each storm one more sign-in took ${runs.map((x) => (x.drainMs === null ? 'FAILED' : `${fmtMs(x.drainMs)} ms`)).join(', ')}` +
        ' (it queues behind the hashes of the sign-ins whose connections the load generator dropped)',
      '',
    );
  }
  if (mixed?.memory) {
    const m = mixed.memory;
    const cut = m.requests < m.planned ? ` (of ${fmtInt(m.planned)} planned: stopped at the time limit)` : '';
    const mb = (bytes: number | null) => `${fmtMb(bytes)} MB`;
    const signed = (bytes: number | null) => `${bytes !== null && bytes >= 0 ? '+' : ''}${mb(bytes)}`;
    out.push(`Memory: VmRSS of the long-lived app over ${fmtInt(m.requests)} requests${cut} after ${fmtInt(m.warmup)} unmeasured ones, ${m.mix}, ${fmtInt(m.run.rps)} req/s`);
    out.push(
      table(
        ['idle after setup', 'before', 'after', 'trough, first fifth', 'trough, last fifth', 'growth (troughs)', 'after − before', 'peak (VmHWM)', 'err/non2xx/bad'],
        [[mb(m.idleAfterSetup), mb(m.before), mb(m.after), mb(m.troughFirst), mb(m.troughLast), signed(m.growth), signed(m.rawGrowth), mb(m.peak), fmtErrors([m.run])]],
      ),
    );
    out.push(`  lowest RSS of each tenth of the run (MB): ${tenths(m.series).map(fmtMb).join(' ')}`, '');
  }
  out.push(...(r.sections ?? []));
  out.push('Goals');
  out.push(table(['goal', 'target', 'measured', ''], r.goals.map((g) => [g.name, g.target, g.value, g.pass === null ? '?' : g.pass ? 'met' : 'MISSED'])));
  return out.join('\n');
}

/** The lowest reading of each tenth of a series (its GC troughs): a leak shows as a steady climb. */
function tenths(series: readonly RssSample[]): number[] {
  const end = series.at(-1)?.ms ?? 0;
  return present(Array.from({ length: 10 }, (_, i) => lowestBetween(series, (end * i) / 10, (end * (i + 1)) / 10, rssOf)));
}

/** The lowest value `pick` reads in the readings from `from` to `to` ms (inclusive), or null when none was. */
export function lowestBetween<P extends { ms: number }>(series: readonly P[], from: number, to: number, pick: (p: P) => number): number | null {
  const window = series.filter((p) => p.ms >= from && p.ms <= to).map(pick);
  return window.length > 0 ? Math.min(...window) : null;
}
