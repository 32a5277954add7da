/**
 * Top frames of a V8 CPU profile (`node --cpu-prof`), e.g. the app's under
 * `npm run bench -- --cpu-prof bench/profiles --only me`:
 *
 *   node --import tsx bench/profile-summary.ts bench/profiles/CPU.*.cpuprofile [--top 25]
 *
 * Prints self time by function, inclusive time by function, and self time by
 * package (node_modules/<name>, node: internals, the app's own files).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const root = path.resolve(import.meta.dirname, '..');

function where(url: string): string {
  if (!url) return '';
  const file = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) return file.slice(nm + 'node_modules/'.length);
  return file.startsWith(root) ? path.relative(root, file) : file;
}

function frameKey(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  const loc = where(f.url);
  return loc ? `${name} ${loc}:${f.lineNumber + 1}` : name;
}

function packageOf(f: CallFrame): string {
  const url = f.url;
  if (!url) return f.functionName.startsWith('(') ? f.functionName : '(native)';
  if (url.startsWith('node:')) return 'node: internals';
  const file = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return file.startsWith(root) ? `app: ${path.relative(root, file).split('/')[0]}` : file;
}

function summarize(file: string, top: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const packages = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i += 1) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000; // ms
    const leaf = byId.get(profile.samples[i]!);
    if (!leaf) continue;
    total += dt;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const leafKey = frameKey(leaf.callFrame);
    self.set(leafKey, (self.get(leafKey) ?? 0) + dt);
    const pkg = packageOf(leaf.callFrame);
    packages.set(pkg, (packages.get(pkg) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const key = frameKey(byId.get(id)!.callFrame);
      if (key === '(root)' || seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const pct = (ms: number) => `${((ms / busy) * 100).toFixed(1).padStart(5)}%`;
  const list = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${pct(v)}  ${v.toFixed(0).padStart(7)} ms  ${k}`)
      .join('\n');
  return [
    `${file}: ${(total / 1000).toFixed(1)} s sampled, ${(busy / 1000).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%); percentages are of busy time`,
    '',
    `self time, top ${top} functions`,
    list(self),
    '',
    `self time by package`,
    list(packages),
    '',
    `inclusive time, top ${top} functions`,
    list(inclusive),
  ].join('\n');
}

const args = process.argv.slice(2);
let top = 25;
const files: string[] = [];
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === '--top') top = Number(args[++i] ?? 25);
  else files.push(args[i]!);
}
if (files.length === 0) {
  process.stderr.write('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile... [--top N]\n');
  process.exit(2);
}
process.stdout.write(`${files.map((f) => summarize(f, top)).join('\n\n')}\n`);
