/**
 * Preloaded into the app by the soak (`node --import bench/soak-probe.mjs
 * dist/server.js`): measures the server from inside without changing its code.
 * Every 100 ms it reads process.memoryUsage(); a 10 ms timer, re-armed when it
 * fires, records how late it fired (the event loop's lag: how long a callback
 * waited behind other work). Once a second it writes one line to stderr:
 *   bench-soak {"t":<epoch ms>,"rss":<lowest RSS>,"heap":<lowest heapUsed>,"rssMax":…,"heapTotal":…,"external":<lowest>,"lag":{"<ms>":<count>,…}}
 * (external: memory of Buffers and other objects outside the JS heap that V8 is told about)
 * (bytes; lag in 1 ms bins, so that the benchmark can merge any window exactly).
 * Every timer is unref()ed: the app still exits as soon as it has shut down.
 */
import process from 'node:process';
import { performance } from 'node:perf_hooks';
import { setInterval, setTimeout } from 'node:timers';

const TICK_MS = 10;
let lag = {};
let memory = null;

function sampleMemory() {
  const { rss, heapUsed, heapTotal, external } = process.memoryUsage();
  memory = memory
    ? { rss: Math.min(memory.rss, rss), heap: Math.min(memory.heap, heapUsed), rssMax: Math.max(memory.rssMax, rss), heapTotal, external: Math.min(memory.external, external) }
    : { rss, heap: heapUsed, rssMax: rss, heapTotal, external };
}

function arm() {
  const due = performance.now() + TICK_MS;
  setTimeout(() => {
    const late = Math.max(0, Math.floor(performance.now() - due));
    lag[late] = (lag[late] ?? 0) + 1;
    arm();
  }, TICK_MS).unref();
}

setInterval(sampleMemory, 100).unref();
setInterval(() => {
  sampleMemory();
  process.stderr.write(`bench-soak ${JSON.stringify({ t: Date.now(), ...memory, lag })}\n`);
  memory = null;
  lag = {};
}, 1000).unref();
arm();
