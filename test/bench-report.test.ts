import { expect } from 'chai';
import { computeMedians, countErrors, evaluateGoals, type Round } from '../bench/report.js';
import type { RunStats } from '../bench/scenarios.js';

function run(rps: number, errors = 0): RunStats {
  return { requests: rps, seconds: 1, rps, latency: { p50: 1, p90: 2, p99: 3, max: 4, mean: 1 }, errors, timeouts: 0, non2xx: 0, mismatches: 0, statusCodes: { 200: rps } };
}

/** Three rounds where the app does /api/me at 2.5×, 3.2×, 4× Better Auth's rate and /auth/token at 6×, 9×, 10×. */
function rounds(): Round[] {
  return [
    [2.5, 6],
    [3.2, 9],
    [4, 10],
  ].map(([me, token], i) => ({
    round: i + 1,
    order: [],
    throughput: { floor: run(1000), me: run(1000), token: run(600), peerMe: run(1000 / me!), peerToken: run(600 / token!, i === 0 ? 2 : 0) },
  }));
}

describe('bench report: the --peer figures', () => {
  it('gives /api/me and /auth/token the median of their per-round ratios to the peer, and only those two', () => {
    const medians = computeMedians(rounds());
    expect(medians.ratios.me!.peer).to.be.closeTo(3.2, 1e-9);
    expect(medians.ratios.token!.peer).to.be.closeTo(9, 1e-9);
    expect(medians.ratios.me!.express).to.equal(1);
    expect(medians.ratios.mePg).to.equal(undefined);
    expect(Object.values(medians.ratios).filter((r) => r.peer !== undefined)).to.have.length(2);
  });

  it('judges them against 3× and 8×, and has no such goals in a run without the peer', () => {
    const withPeer = evaluateGoals({ rounds: rounds(), medians: computeMedians(rounds()) }, undefined, { errors: 0, non2xx: 0, mismatches: 0 });
    const peerGoals = withPeer.filter((g) => g.name.includes('Better Auth'));
    expect(peerGoals.map((g) => [g.name, g.target, g.value, g.pass])).to.deep.equal([
      ["/api/me vs Better Auth's, fresh processes", '≥ 3.00×', '3.200×', true],
      ["/auth/token vs Better Auth's, fresh processes", '≥ 8.00×', '9.000×', true],
    ]);
    const without = rounds().map((r) => ({ ...r, throughput: { floor: r.throughput.floor, me: r.throughput.me, token: r.throughput.token } }));
    const goals = evaluateGoals({ rounds: without, medians: computeMedians(without) }, undefined, { errors: 0, non2xx: 0, mismatches: 0 });
    expect(goals.filter((g) => g.name.includes('Better Auth'))).to.deep.equal([]);
  });

  it("counts the peer's failed requests with the baselines', never as the app's", () => {
    const errors = countErrors(rounds(), undefined);
    expect(errors.baselines.errors).to.equal(2);
    expect(errors.app.errors).to.equal(0);
  });
});
