/**
 * The SVG charts that bench/run.ts writes next to the results file: of a run,
 * each throughput target's req/s as a share of the Express floor's (fresh
 * processes, then the long-lived process), and the ES256/RS256 apps' as a
 * share of the same route on the HS256 app; of a soak, memory, event-loop lag
 * and throughput over time. Pure functions of the results object; the SVG is
 * self-contained (no scripts, no external fonts or styles).
 */
import { APP_TARGETS, fmtRatio, FRESH_GOALS, hasPeerTwin, HS256_TWIN, isAlgTarget, PEER_GOALS, PEER_TWIN, median, MIXED_GOALS, plural, ratio, TARGET_LABELS, type AppTargetId, type Medians, type Round, type TargetId } from './report.js';
import type { Soak } from './soak.js';

/** Rounds and their medians (the ratios are all the chart reads of them). */
interface RoundsInput {
  medians: Pick<Medians, 'ratios'>;
  rounds: readonly Pick<Round, 'throughput'>[];
}

/** The parts of a results object (bench/results.json) that the chart reads: the fresh-process rounds, and the long-lived ones when they ran. */
export interface ChartInput extends RoundsInput {
  mixed?: RoundsInput;
  settings?: { mode: string };
  startedAt?: string;
  git?: { commit: string | null; dirty: boolean | null };
  machine?: { node: string };
}

interface Row {
  id: TargetId;
  /** Median ratio to the panel's reference. */
  value: number;
  /** Per-round ratios (target ÷ reference of the same round). */
  rounds: number[];
  goal: number | undefined;
}

/** The panels, each with its bars top to bottom (a target missing from the run has no bar), what they are divided by, their goals and rounds. */
const PANELS = [
  { ids: ['floor', 'me', 'uncached', 'token', 'mePg', 'tokenPg', 'ceiling'], vs: 'express', goals: FRESH_GOALS, mixed: false, caption: 'fresh processes: req/s ÷ Express floor req/s of the same round' },
  { ids: ['meEs256', 'tokenEs256', 'meRs256', 'tokenRs256', 'meMetrics', 'tokenMetrics'], vs: 'hs256', goals: FRESH_GOALS, mixed: false, caption: 'fresh processes: req/s ÷ req/s of the same route on the default app (HS256, metrics off), same round' },
  { ids: ['me', 'token'], vs: 'peer', goals: PEER_GOALS, mixed: false, caption: 'fresh processes: app req/s ÷ Better Auth req/s (JWT plugin, SQLite) for the same job, same round' },
  { ids: ['floor', 'me', 'token'], vs: 'express', goals: MIXED_GOALS, mixed: true, caption: 'long-lived process, mixed traffic (what production sees): req/s ÷ Express floor req/s' },
] as const satisfies readonly { ids: readonly TargetId[]; vs: 'express' | 'hs256' | 'peer'; goals: Partial<Record<TargetId, number>>; mixed: boolean; caption: string }[];
/** From the axis caption of one panel to the first bar of the next. */
const PANEL_GAP = 56;
/** The axis stops here; a longer bar (the node:http ceiling, often ~4×) is cut and says so. */
const AXIS_CAP = 2;
const STEP = 0.2;
const WIDTH = 780;
const LABEL_W = 210;
const PLOT_W = 420;
const TOP = 64;
const ROW_H = 46;
const BAR_H = 18;
const COLORS = { floor: '#b5b5b5', ceiling: '#8796ad', met: '#5a9e68', missed: '#dd8a3c', goal: '#b03a2e', grid: '#e6e6e6' };

/** Escapes text for XML element content and attribute values. */
function escapeXml(text: string): string {
  const entities: Record<string, string> = { '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' };
  return text.replace(/[<>&"']/g, (c) => entities[c]!);
}

/** A `<text>` element; `attrs` are trusted, `content` is escaped. */
function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs ? ` ${attrs}` : ''}>${escapeXml(content)}</text>`;
}

/** A panel's rows: every target of it with at least one round next to a run of its reference (floor or HS256 twin). */
function rowsOf(results: ChartInput, panel: (typeof PANELS)[number]): Row[] {
  const r = panel.mixed ? results.mixed : results;
  if (!r) return [];
  const goals: Partial<Record<TargetId, number>> = panel.goals;
  const rows = panel.ids.flatMap((id: TargetId) => {
    const reference = panel.vs === 'peer' ? (hasPeerTwin(id) ? PEER_TWIN[id] : id) : isAlgTarget(id) ? HS256_TWIN[id] : 'floor';
    const rounds = r.rounds.map((x) => ratio(x.throughput[id], x.throughput[reference])).filter((v) => Number.isFinite(v));
    if (rounds.length === 0) return [];
    // results.json stores NaN as null: fall back to the median of the rounds.
    const stored: unknown = (APP_TARGETS as readonly TargetId[]).includes(id) ? r.medians.ratios[id as AppTargetId]?.[panel.vs] : undefined;
    const value = typeof stored === 'number' && Number.isFinite(stored) ? stored : median(rounds);
    return [{ id, value, rounds, goal: goals[id] }];
  });
  return rows.some((row) => row.id !== 'floor') ? rows : [];
}

/** The axis of the Better Auth panel: its ratios are around 3× and 8×, its own scale in whole steps up to PEER_AXIS_CAP. */
const PEER_AXIS_CAP = 16;

/** Grid step of an axis that ends at `max`. */
const stepOf = (max: number) => (max > 4 ? 1 : STEP);

/** 0 to the first step past every value, at least 1.2, at most `cap` (larger values are cut). */
function axisMaxOf(rows: Row[], cap = AXIS_CAP): number {
  const values = rows.flatMap((row) => [row.value, ...row.rounds, row.goal ?? 0]).filter((v) => v <= cap);
  const top = Math.max(1, ...values) * 1.04;
  const step = stepOf(Math.min(cap, top));
  return Math.min(cap, Math.max(1.2, Math.ceil(top / step - 1e-9) * step));
}

/** What the charts' subtitle says about the run, when the results have it. */
type RunMeta = Pick<ChartInput, 'settings' | 'startedAt' | 'git' | 'machine'>;

/** Title and a subtitle with whatever the results say about the run, then `extra`. */
function header(title: string, r: RunMeta, extra: string): string[] {
  const commit = r.git?.commit ? `commit ${r.git.commit.slice(0, 10)}${r.git.dirty ? ' (uncommitted changes)' : ''}` : '';
  const date = r.startedAt ? `${r.startedAt.slice(0, 16).replace('T', ' ')} UTC` : '';
  const mode = r.settings?.mode ? `${r.settings.mode} run` : '';
  const node = r.machine?.node ? `node ${r.machine.node}` : '';
  return [text(16, 26, title, 'font-size="15" font-weight="bold"'), text(16, 45, [mode, date, commit, node, extra].filter(Boolean).join(' · '), 'font-size="11" fill="#555"')];
}

/** The SVG document around a chart's elements. */
function svgDocument(height: number, body: readonly string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** A panel's grid lines and tick labels every STEP, the 1.0 line darker, and its caption. */
function axis(max: number, x: (v: number) => number, top: number, bottom: number, caption: string): string[] {
  const out: string[] = [];
  const step = stepOf(max);
  for (let i = 0; i * step <= max + 1e-9; i += 1) {
    const v = i * step;
    const one = Math.abs(v - 1) < 1e-9;
    out.push(`<line x1="${x(v).toFixed(1)}" y1="${top - 4}" x2="${x(v).toFixed(1)}" y2="${bottom}" stroke="${one ? '#888' : COLORS.grid}"/>`);
    out.push(text(x(v), bottom + 14, i === 0 ? '0' : `${v.toFixed(1)}×`, 'font-size="10" fill="#666" text-anchor="middle"'));
  }
  out.push(text(LABEL_W + PLOT_W / 2, bottom + 32, caption, 'font-size="11" fill="#444" text-anchor="middle"'));
  return out;
}

/** One target: label, median bar, value, per-round dots and its goal marker. */
function row(r: Row, top: number, max: number, x: (v: number) => number): string[] {
  const barY = top + 18;
  const mid = barY + BAR_H / 2;
  const fill = r.goal === undefined ? COLORS[r.id === 'floor' ? 'floor' : 'ceiling'] : r.value >= r.goal ? COLORS.met : COLORS.missed;
  const cut = r.value > max;
  const label = `${fmtRatio(r.value)}×${cut ? ' (off scale)' : ''}`;
  const out = [
    text(LABEL_W - 10, mid + 4, TARGET_LABELS[r.id], 'text-anchor="end" fill="#222"'),
    `<rect x="${LABEL_W}" y="${barY}" width="${(x(r.value) - LABEL_W).toFixed(1)}" height="${BAR_H}" fill="${fill}"/>`,
  ];
  if (cut) out.push(`<path d="M${(x(max) - 9).toFixed(1)} ${barY - 2}l6 ${BAR_H + 4}m4 ${-BAR_H - 4}l6 ${BAR_H + 4}" stroke="#fff" stroke-width="2.5"/>`);
  if (r.goal !== undefined) {
    const gx = x(r.goal).toFixed(1);
    out.push(`<line x1="${gx}" y1="${top + 4}" x2="${gx}" y2="${top + ROW_H - 4}" stroke="${COLORS.goal}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    out.push(text(x(r.goal) + 4, top + 13, `goal ≥ ${fmtRatio(r.goal)}×`, `font-size="10" fill="${COLORS.goal}"`));
  }
  if (r.id !== 'floor') {
    for (const v of r.rounds.filter((d) => d <= max)) out.push(`<circle cx="${x(v).toFixed(1)}" cy="${mid}" r="3" fill="#fff" fill-opacity="0.85" stroke="#222" stroke-width="1.2"/>`);
  }
  // After the bar and its dots, so that the value never hides a round.
  const end = Math.max(x(r.value), ...(r.id === 'floor' ? [] : r.rounds.filter((d) => d <= max).map(x)));
  out.push(text(end + 7, mid + 4, label, 'font-weight="bold" fill="#222" stroke="#fff" stroke-width="3" paint-order="stroke"'));
  return out;
}

/**
 * The ratio chart of a benchmark run as a self-contained SVG document: one
 * horizontal bar per throughput target present (length = median ratio to the
 * Express floor, which is the 1.00× reference bar; for the ES256/RS256 apps, in
 * a second panel, to the same route on the HS256 app), per-round ratios as
 * dots, and the goals as dashed lines. A run without either reference gets a note instead.
 */
export function renderRatioChart(results: ChartInput): string {
  const panels = PANELS.map((panel) => ({ ...panel, rows: rowsOf(results, panel) })).filter((panel) => panel.rows.length > 0);
  const rounds = [plural(results.rounds.length, 'round'), results.mixed ? `${results.mixed.rounds.length} long-lived` : ''].filter(Boolean).join(', ');
  const body = header('Token Bridge benchmark: throughput as a share of a reference run in the same round', results, rounds);
  let bottom = TOP + ROW_H;
  if (panels.length === 0) {
    body.push(text(16, TOP + 24, 'No ratios: this run has no Express floor or HS256 rounds next to other targets (see --only).', 'fill="#444"'));
  } else {
    // One scale for the panels of ratios around 1×, its own for the Better Auth panel.
    const shared = axisMaxOf(panels.filter((panel) => panel.vs !== 'peer').flatMap((panel) => panel.rows));
    let top = TOP;
    for (const panel of panels) {
      const max = panel.vs === 'peer' ? axisMaxOf(panel.rows, PEER_AXIS_CAP) : shared;
      const x = (v: number) => LABEL_W + (Math.min(Math.max(v, 0), max) / max) * PLOT_W;
      bottom = top + panel.rows.length * ROW_H;
      body.push(...axis(max, x, top, bottom, panel.caption), ...panel.rows.flatMap((r, i) => row(r, top + i * ROW_H, max, x)));
      top = bottom + PANEL_GAP;
    }
    body.push(text(16, bottom + 52, 'Bars: median of the per-round ratios · dots: one round each · dashed: goal (green met, orange missed)', 'font-size="10" fill="#666"'));
  }
  return svgDocument(bottom + (panels.length ? 64 : 20), body);
}

// ------------------------------------------------------------------ soak

const SOAK_LEFT = 64;
const SOAK_W = 660;
const SOAK_PANEL_H = 130;
const SOAK_GAP = 64;

interface Line {
  name: string;
  color: string;
  values: readonly (number | null)[];
}

/**
 * One soak panel over time: lines (one point per bucket, gaps where a bucket
 * has no value) or bars, a y axis from 0 in `unit`, an optional goal line,
 * and the x axis in minutes.
 */
function timePanel(p: { top: number; caption: string; unit: string; lines: Line[]; bars?: Line; goal?: number; minutes: number; buckets: number }): string[] {
  const all = [...p.lines, ...(p.bars ? [p.bars] : [])].flatMap((l) => l.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const max = niceMax(Math.max(p.goal ? p.goal * 1.2 : 0, ...all, 1e-9) * 1.08);
  const bottom = p.top + SOAK_PANEL_H;
  const x = (i: number) => SOAK_LEFT + ((i + 0.5) / p.buckets) * SOAK_W;
  const y = (v: number) => bottom - (Math.min(v, max) / max) * SOAK_PANEL_H;
  const out: string[] = [];
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    out.push(`<line x1="${SOAK_LEFT}" y1="${y(v).toFixed(1)}" x2="${SOAK_LEFT + SOAK_W}" y2="${y(v).toFixed(1)}" stroke="${i === 0 ? '#888' : COLORS.grid}"/>`);
    out.push(text(SOAK_LEFT - 6, y(v) + 4, `${Number(v.toPrecision(3))}`, 'font-size="10" fill="#666" text-anchor="end"'));
  }
  // At most ten labelled minutes.
  const step = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60].find((m) => p.minutes / m <= 10) ?? 120;
  for (let m = 0; m <= p.minutes + 1e-9; m += step) {
    const mx = SOAK_LEFT + (m / p.minutes) * SOAK_W;
    out.push(text(mx, bottom + 14, `${m} min`, 'font-size="10" fill="#666" text-anchor="middle"'));
  }
  if (p.bars) {
    const w = Math.max(1, SOAK_W / p.buckets - 2);
    p.bars.values.forEach((v, i) => {
      if (v !== null && v > 0) out.push(`<rect x="${(x(i) - w / 2).toFixed(1)}" y="${y(v).toFixed(1)}" width="${w.toFixed(1)}" height="${(bottom - y(v)).toFixed(1)}" fill="${p.bars!.color}"/>`);
    });
  }
  if (p.goal !== undefined) {
    out.push(`<line x1="${SOAK_LEFT}" y1="${y(p.goal).toFixed(1)}" x2="${SOAK_LEFT + SOAK_W}" y2="${y(p.goal).toFixed(1)}" stroke="${COLORS.goal}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    out.push(text(SOAK_LEFT + SOAK_W - 4, y(p.goal) - 4, `goal < ${p.goal} ${p.unit}`, `font-size="10" fill="${COLORS.goal}" text-anchor="end"`));
  }
  for (const line of p.lines) {
    // A new segment after every bucket without a value.
    const d = line.values.map((v, i) => (v === null || !Number.isFinite(v) ? '' : `${i === 0 || line.values[i - 1] === null ? 'M' : 'L'}${x(i).toFixed(1)} ${y(v).toFixed(1)}`)).join('');
    if (d) out.push(`<path d="${d}" fill="none" stroke="${line.color}" stroke-width="1.8"/>`);
  }
  const legend = [...p.lines, ...(p.bars ? [p.bars] : [])].map((l) => `<tspan fill="${l.color}">■</tspan> ${escapeXml(l.name)}`).join('   ');
  out.push(`<text x="${SOAK_LEFT}" y="${p.top - 8}" font-size="11" fill="#444">${escapeXml(p.caption)} (${escapeXml(p.unit)})   ${legend}</text>`);
  return out;
}

/** A round number at least `v`: 1, 1.5, 2, 3, 4, 5, 6 or 8 times a power of ten. */
function niceMax(v: number): number {
  const power = 10 ** Math.floor(Math.log10(v));
  return ([1, 1.5, 2, 3, 4, 5, 6, 8, 10].find((m) => m * power >= v) ?? 10) * power;
}

/**
 * The soak as a self-contained SVG document: memory troughs inside the server
 * (RSS and heap used), event-loop lag and /healthz p99 against the 50 ms goal,
 * and throughput with errors and 5xx, one point per time bucket.
 */
export function renderSoakChart(soak: Pick<Soak, 'minutes' | 'rate' | 'bucketSeconds' | 'buckets'>, meta: RunMeta = {}): string {
  const b = soak.buckets;
  const mb = (v: number | null) => (v === null ? null : v / (1024 * 1024));
  const perSecond = (n: number, i: number) => n / Math.max(1, b[i]!.to - b[i]!.from);
  const common = { minutes: soak.minutes, buckets: b.length };
  const top = TOP + 24;
  const body = [
    ...header('Token Bridge soak: one app process under mixed traffic', meta, `${soak.minutes} min at ${soak.rate} req/s, a point per ${soak.bucketSeconds} s`),
    ...timePanel({
      ...common,
      top,
      caption: 'memory inside the server, lowest reading',
      unit: 'MB',
      lines: [
        { name: 'RSS', color: '#3f6fb5', values: b.map((x) => mb(x.rssTrough)) },
        { name: 'heap used', color: '#5a9e68', values: b.map((x) => mb(x.heapTrough)) },
      ],
    }),
    ...timePanel({
      ...common,
      top: top + SOAK_PANEL_H + SOAK_GAP,
      caption: 'p99 latency',
      unit: 'ms',
      goal: 50,
      lines: [
        { name: 'event-loop lag (10 ms timer inside)', color: '#3f6fb5', values: b.map((x) => x.lagP99) },
        { name: 'GET /healthz (outside)', color: '#8796ad', values: b.map((x) => x.healthzP99) },
      ],
    }),
    ...timePanel({
      ...common,
      top: top + 2 * (SOAK_PANEL_H + SOAK_GAP),
      caption: 'answers per second',
      unit: 'req/s',
      bars: { name: 'answers', color: '#c9d3e0', values: b.map((x, i) => perSecond(x.requests, i)) },
      lines: [{ name: 'errors, unexpected statuses and 5xx', color: COLORS.goal, values: b.map((x, i) => perSecond(x.errors + x.unexpected + x.mismatches, i)) }],
    }),
  ];
  const failures = b.reduce((n, x) => n + x.errors + x.unexpected + x.mismatches, 0);
  const fiveXx = b.reduce((n, x) => n + x.serverErrors, 0);
  const bottom = top + 3 * SOAK_PANEL_H + 2 * SOAK_GAP;
  body.push(text(16, bottom + 40, `${failures} errors, unexpected statuses and wrong answers in all, ${fiveXx} of them 5xx`, 'font-size="11" fill="#444"'));
  return svgDocument(bottom + 56, body);
}
