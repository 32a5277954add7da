import { expect } from 'chai';
import { renderRatioChart, renderSoakChart, type ChartInput } from '../bench/chart.js';
import type { RunStats } from '../bench/scenarios.js';
import type { SoakBucket } from '../bench/soak.js';

/** A throughput run with the given req/s (the chart reads nothing else). */
function run(rps: number): RunStats {
  return {
    requests: rps,
    seconds: 1,
    rps,
    latency: { p50: 1, p90: 2, p99: 3, max: 4, mean: 1 },
    errors: 0,
    timeouts: 0,
    non2xx: 0,
    mismatches: 0,
    statusCodes: { 200: rps },
  };
}

/**
 * Three fresh rounds (/api/me at 1.25, 1.32, 1.40 of the floor, /auth/token at
 * 0.45, 0.48, 0.52) and three long-lived ones (/api/me 0.80, 0.82, 0.85,
 * /auth/token 0.25, 0.28, 0.30).
 */
function results(): ChartInput {
  return {
    settings: { mode: 'quick' },
    startedAt: '2026-11-25T18:33:44.073Z',
    git: { commit: 'abc<&>"def', dirty: true },
    machine: { node: 'v20.20.2' },
    medians: { ratios: { me: { express: 1.32, http: 0.3 }, token: { express: 0.48, http: 0.1 } } },
    rounds: [
      { throughput: { floor: run(1000), me: run(1250), token: run(450), ceiling: run(4000) } },
      { throughput: { floor: run(1000), me: run(1320), token: run(480), ceiling: run(4100) } },
      { throughput: { floor: run(1000), me: run(1400), token: run(520), ceiling: run(3900) } },
    ],
    mixed: {
      medians: { ratios: { me: { express: 0.82, http: NaN }, token: { express: 0.28, http: NaN } } },
      rounds: [
        { throughput: { floor: run(1000), me: run(800), token: run(250) } },
        { throughput: { floor: run(1000), me: run(820), token: run(280) } },
        { throughput: { floor: run(1000), me: run(850), token: run(300) } },
      ],
    },
  };
}

describe('bench chart (renderRatioChart)', () => {
  it('is one <svg> document with the median ratios printed', () => {
    const svg = renderRatioChart(results());
    expect(svg.startsWith('<svg ')).to.equal(true);
    expect(svg.trimEnd().endsWith('</svg>')).to.equal(true);
    expect(svg.match(/<svg[\s>]/g)).to.have.length(1);
    expect(svg.match(/<\/svg>/g)).to.have.length(1);
    expect(svg).to.include('xmlns="http://www.w3.org/2000/svg"');
    for (const label of ['1.32×', '0.48×', '0.82×', '0.28×', '1.00×']) expect(svg).to.include(label);
    expect(svg).not.to.match(/<script|@import|url\(|href=/i);
  });

  it('draws the fresh rounds against their goals (1.30×, 0.50×) and the long-lived process in a panel of its own against its goals (0.80×, 0.30×)', () => {
    const svg = renderRatioChart(results());
    expect(svg).to.include('fresh processes: req/s ÷ Express floor req/s of the same round');
    expect(svg).to.include('long-lived process, mixed traffic (what production sees)');
    for (const goal of ['goal ≥ 1.30×', 'goal ≥ 0.50×', 'goal ≥ 0.80×', 'goal ≥ 0.30×']) expect(svg).to.include(goal);
    expect(svg.match(/stroke-dasharray/g)).to.have.length(4);
    // Three dots each for both routes in both panels; the ceiling (~4×) is off the axis.
    expect(svg.match(/<circle /g)).to.have.length(12);
    expect(svg).to.include('4.00× (off scale)');
    // Met: fresh /api/me (1.32) and long-lived /api/me (0.82); missed: fresh /auth/token (0.48) and long-lived /auth/token (0.28).
    expect(svg.match(/<rect [^>]*fill="#5a9e68"/g)).to.have.length(2);
    expect(svg.match(/<rect [^>]*fill="#dd8a3c"/g)).to.have.length(2);
  });

  it('draws the ES256 and RS256 apps in a panel of their own, against the same route on the HS256 app', () => {
    const input = results();
    delete input.mixed;
    input.rounds = input.rounds.map(({ throughput: t }) => ({
      throughput: { ...t, meEs256: run(t.me!.rps * 0.97), tokenEs256: run(t.token!.rps * 0.83), meRs256: run(t.me!.rps * 0.99), tokenRs256: run(t.token!.rps * 0.41) },
    }));
    const svg = renderRatioChart(input);
    expect(svg).to.include('fresh processes: req/s ÷ req/s of the same route on the default app (HS256, metrics off), same round');
    for (const label of ['0.97×', '0.83×', '0.99×', '0.41×', 'goal ≥ 0.95×', 'goal ≥ 0.85×', 'app RS256: GET /auth/token']) expect(svg).to.include(label);
    // Goals for the HS256 routes and for ES256, none for RS256: it is there to show what RSA signing costs.
    expect(svg.match(/stroke-dasharray/g)).to.have.length(4);
    expect(svg.match(/<circle /g)).to.have.length(6 + 4 * 3);
  });

  it('draws the PostgreSQL routes against the floor with their goals (1.30×, 0.45×)', () => {
    const input = results();
    delete input.mixed;
    input.rounds = input.rounds.map(({ throughput: t }) => ({ throughput: { ...t, mePg: run(t.floor!.rps * 1.35), tokenPg: run(t.floor!.rps * 0.4) } }));
    const svg = renderRatioChart(input);
    for (const label of ['app PostgreSQL: GET /api/me', 'app PostgreSQL: GET /auth/token', '1.35×', '0.40×', 'goal ≥ 0.45×']) expect(svg).to.include(label);
    expect(svg.match(/stroke-dasharray/g)).to.have.length(4);
  });

  it('draws the app with metrics on next to the ES256 app, against the same route on the default app, without a goal', () => {
    const input = results();
    delete input.mixed;
    input.rounds = input.rounds.map(({ throughput: t }) => ({ throughput: { ...t, meMetrics: run(t.me!.rps * 0.96), tokenMetrics: run(t.token!.rps * 0.98) } }));
    const svg = renderRatioChart(input);
    for (const label of ['app, metrics on: GET /api/me', 'app, metrics on: GET /auth/token', '0.96×', '0.98×']) expect(svg).to.include(label);
    expect(svg.match(/stroke-dasharray/g)).to.have.length(2);
  });

  it('draws the app against Better Auth on a scale of its own, with the goals 3× (/api/me) and 8× (/auth/token)', () => {
    const input = results();
    delete input.mixed;
    input.rounds = input.rounds.map(({ throughput: t }) => ({ throughput: { ...t, peerMe: run(t.me!.rps / 3.5), peerToken: run(t.token!.rps / 7) } }));
    const svg = renderRatioChart(input);
    expect(svg).to.include('fresh processes: app req/s ÷ Better Auth req/s (JWT plugin, SQLite) for the same job, same round');
    for (const label of ['3.50×', '7.00×', 'goal ≥ 3.00×', 'goal ≥ 8.00×', '8.0×']) expect(svg).to.include(label);
    // Not cut: the panel's axis goes past 8×, while the first panel's stops at 2× (the ceiling is off its scale).
    expect(svg).not.to.include('7.00× (off scale)');
    expect(svg).to.include('4.00× (off scale)');
    // /api/me meets its goal there, /auth/token misses it (7 < 8).
    expect(svg.match(/stroke-dasharray/g)).to.have.length(4);
    expect(svg.match(/<circle /g)).to.have.length(6 + 6);
  });

  it('escapes the text it inserts', () => {
    const svg = renderRatioChart(results());
    expect(svg).to.include('commit abc&lt;&amp;&gt;&quot;def (uncommitted changes)');
    expect(svg).not.to.include('abc<&>');
  });

  it('leaves out a target that did not run, and says so when there is no floor', () => {
    const input = results();
    delete input.mixed;
    input.rounds = input.rounds.map((r) => ({ throughput: { floor: r.throughput.floor, me: r.throughput.me } }));
    input.medians = { ratios: { me: { express: 1.32, http: NaN } } };
    const svg = renderRatioChart(input);
    expect(svg).to.include('app GET /api/me');
    expect(svg).not.to.include('/auth/token');
    expect(svg).not.to.include('ceiling');
    expect(svg).not.to.include('long-lived');
    expect(svg).not.to.include('goal ≥ 0.50×');

    const noFloor = renderRatioChart({ medians: { ratios: {} }, rounds: [{ throughput: { token: run(300) } }] });
    expect(noFloor.startsWith('<svg ')).to.equal(true);
    expect(noFloor).to.include('No ratios');
  });
});

describe('bench soak chart (renderSoakChart)', () => {
  /** Six 10-second buckets; the third has no reading from inside the server and one 5xx. */
  function buckets(): SoakBucket[] {
    return Array.from({ length: 6 }, (_, i) => ({
      from: i * 10,
      to: i * 10 + 10,
      requests: 3000,
      errors: 0,
      serverErrors: i === 2 ? 1 : 0,
      unexpected: i === 2 ? 1 : 0,
      mismatches: 0,
      signIns: 110,
      mints: 220,
      apiCalls: 2200,
      signOuts: 110,
      refused: 110,
      rssTrough: i === 2 ? null : (180 + i) * 1024 * 1024,
      heapTrough: i === 2 ? null : (60 + i) * 1024 * 1024,
      lagP99: i === 2 ? null : 8 + i,
      lagMax: i === 2 ? null : 30,
      healthzP99: 12,
    }));
  }

  it('draws memory, lag against the 50 ms goal, and throughput with the failures, as one self-contained <svg>', () => {
    const svg = renderSoakChart({ minutes: 1, rate: 300, bucketSeconds: 10, buckets: buckets() }, { git: { commit: '<x>', dirty: false } });
    expect(svg.startsWith('<svg ')).to.equal(true);
    expect(svg.match(/<\/svg>/g)).to.have.length(1);
    expect(svg).not.to.match(/<script|@import|url\(|href=/i);
    for (const label of ['memory inside the server, lowest reading', 'RSS', 'heap used', 'event-loop lag', 'GET /healthz (outside)', 'goal &lt; 50 ms', 'answers per second']) {
      expect(svg).to.include(label);
    }
    expect(svg).to.include('1 errors, unexpected statuses and wrong answers in all, 1 of them 5xx');
    expect(svg).to.include('commit &lt;x&gt;');
    // One bar per bucket; the bucket without readings from inside breaks the memory and lag lines in two.
    expect(svg.match(/<rect x=/g)).to.have.length(6);
    const memory = /<path d="(M[^"]+)" fill="none" stroke="#3f6fb5"/.exec(svg)![1]!;
    expect(memory.match(/M/g)).to.have.length(2);
    expect(memory.match(/L/g)).to.have.length(3);
  });
});
