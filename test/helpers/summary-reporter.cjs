'use strict';
// The spec reporter, plus the ten slowest test files (to see where the suite's
// time goes) and one closing line CI reads: "N passed, N failed".
const path = require('node:path');
const { reporters, Runner } = require('mocha');

const { EVENT_RUN_END, EVENT_SUITE_BEGIN, EVENT_SUITE_END } = Runner.constants;

class SummaryReporter extends reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    /** Milliseconds per test file, summed over its top-level suites (hooks included). */
    const perFile = new Map();
    const started = new Map();
    runner.on(EVENT_SUITE_BEGIN, (suite) => {
      if (suite.file && suite.parent?.root) started.set(suite, Date.now());
    });
    runner.on(EVENT_SUITE_END, (suite) => {
      const at = started.get(suite);
      if (at === undefined) return;
      const file = path.relative(process.cwd(), suite.file);
      perFile.set(file, (perFile.get(file) ?? 0) + Date.now() - at);
    });
    runner.once(EVENT_RUN_END, () => {
      const slowest = [...perFile].sort((a, b) => b[1] - a[1]).slice(0, 10);
      if (slowest.length > 0) {
        process.stdout.write(`\nslowest files: ${slowest.map(([file, ms]) => `${file} ${(ms / 1000).toFixed(1)} s`).join(', ')}\n`);
      }
      const { passes, failures, pending } = runner.stats;
      process.stdout.write(`\n${passes} passed, ${failures} failed${pending ? `, ${pending} skipped` : ''}\n`);
    });
  }
}

module.exports = SummaryReporter;
