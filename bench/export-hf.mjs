#!/usr/bin/env node
/**
 * Peak memory and wall time of `hopscotch export --format hf` on a random Llama of about
 * 1.2 GB (BF16, 10 layers, hidden 2048, 16 query / 4 key-value heads, intermediate 5632,
 * vocab 32000, untied; written by random-llama.mjs), for two builds of the package: a
 * `--before` checkout (its dist/ and build/) and this one, run alternately.
 *
 * Each repetition runs, for each build, under /usr/bin/time -v:
 * - `cli`: the command as a user runs it (`export --format hf --device cpu`, which loads the
 *   model, writes the folded checkpoint and loads it back for the logits check);
 * - `write`: the same export from the library with the check left out (`checkTokens: []`),
 *   the stage this benchmark is about, with its own timer around `exportModel`;
 * - `baseline`: the same process writing the `scales` adapter instead (node, the library
 *   and the loaded model: the process baseline of `write`).
 * Reports medians of peak RSS, wall and CPU time, the largest tensor, the time a plain copy
 * of the checkpoint file plus fsync takes (the disk's share of any export), whether the two
 * builds wrote byte-identical folders, and the 1-minute load average around each run (the
 * machine may be shared). Writes a JSON file.
 *
 *   npm run build:ts && node bench/export-hf.mjs --before /work/main [--reps 3] [--work /tmp/hopscotch-export-bench]
 *                                                 [--out docs/benchmarks/export-hf.json]
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { llamaShapes, writeRandomLlama } from './random-llama.mjs';

const here = fileURLToPath(import.meta.url);
const root = join(dirname(here), '..');
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const C = { layers: 10, hidden: 2048, heads: 16, kvHeads: 4, headDim: 128, inter: 5632, vocab: 32000 };
const SKIPPED = [3, 7];

// ---------------------------------------------------------------------------------------
// Child: one export from the library of `pkg`, timed around exportModel.

if (argv[0] === '--child') {
  const [, pkg, mode, model, fitFile, out] = argv;
  const lib = await import(join(pkg, 'dist', 'index.js'));
  const fit = JSON.parse(readFileSync(fitFile, 'utf8'));
  const theta = lib.theta.fromJSON(fit.theta);
  const m = await lib.load(model, { device: 'cpu' });
  const t0 = performance.now();
  await lib.exportModel(m, { skipped: fit.skipped, theta }, { out, format: mode === 'write' ? 'hf' : 'scales', force: true, checkTokens: [] });
  const seconds = (performance.now() - t0) / 1000;
  m.dispose();
  process.stdout.write(JSON.stringify({ seconds }) + '\n');
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
// Parent

const before = arg('--before');
if (!before) throw new Error('pass --before <checkout> (a built copy of the package to compare with)');
const REPS = Number(arg('--reps', '3'));
const WORK = resolve(arg('--work', join(os.tmpdir(), 'hopscotch-export-bench')));
const OUT = arg('--out', join(root, 'docs', 'benchmarks', 'export-hf.json'));
const builds = { before: resolve(before), after: root };
const log = (m) => process.stderr.write(`${m}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const modelDir = join(WORK, 'model');
mkdirSync(WORK, { recursive: true });
if (!existsSync(join(modelDir, 'config.json'))) {
  log(`writing the random model to ${modelDir}`);
  writeRandomLlama(modelDir, C, { dtype: 'BF16' });
}
const tensorBytes = llamaShapes(C).map(([, shape]) => shape.reduce((a, b) => a * b, 2));
const sizes = { tensorBytes: tensorBytes.reduce((a, b) => a + b, 0), largestTensorBytes: Math.max(...tensorBytes) };
// A fit that scales every o_proj / down_proj (theta != 1) and skips two layers.
const ramp = (lo, hi) => Array.from({ length: C.layers }, (_, l) => lo + ((hi - lo) * l) / (C.layers - 1));
const fitFile = join(WORK, 'fit.json');
writeFileSync(fitFile, JSON.stringify({ skipped: SKIPPED, theta: { bAtt: ramp(0.8, 1.2), sAtt: ramp(1.1, 0.9), bMlp: ramp(1.2, 0.8), sMlp: ramp(0.9, 1.1) } }));

/** Runs a command under /usr/bin/time -v; returns its peak RSS, wall seconds, stdout and the load average around it. */
function run(cmd, args) {
  const errFile = join(WORK, 'time.txt');
  const loadBefore = os.loadavg()[0];
  const stdout = execFileSync('/bin/sh', ['-c', `/usr/bin/time -v -o ${JSON.stringify(errFile)} "$@"`, 'sh', cmd, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 26,
  });
  const t = readFileSync(errFile, 'utf8');
  const rssKb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(t)[1]);
  const [, h, mi, se] = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(t);
  const wall = Number(h ?? 0) * 3600 + Number(mi) * 60 + Number(se);
  const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(t)[1]) + Number(/System time \(seconds\): ([\d.]+)/.exec(t)[1]);
  return { rssBytes: rssKb * 1024, wall, cpu, stdout, load: [loadBefore, os.loadavg()[0]] };
}

/** sha256 of every file of a folder, read in 64 MB pieces. */
function digests(dir) {
  const out = {};
  const buf = Buffer.alloc(1 << 26);
  for (const f of readdirSync(dir).sort()) {
    const h = createHash('sha256');
    const fd = openSync(join(dir, f), 'r');
    try {
      for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    out[f] = h.digest('hex');
  }
  return out;
}

/** The disk's share: seconds to copy the checkpoint file and fsync it (the bytes an export must write). */
function copySeconds() {
  const to = join(WORK, 'copy.bin');
  const t0 = performance.now();
  copyFileSync(join(modelDir, 'model.safetensors'), to);
  const fd = openSync(to, 'r+');
  fsyncSync(fd);
  closeSync(fd);
  const s = (performance.now() - t0) / 1000;
  rmSync(to);
  return s;
}

const runs = [];
const written = {};
const copies = [];
for (let rep = 1; rep <= REPS; rep++) {
  copies.push(copySeconds());
  log(`copy + fsync of the checkpoint: ${copies.at(-1).toFixed(2)} s`);
  for (const [build, pkg] of Object.entries(builds)) {
    const out = join(WORK, `out-${build}`);
    for (const stage of ['baseline', 'write', 'cli']) {
      rmSync(out, { recursive: true, force: true });
      const r =
        stage === 'cli'
          ? run(process.execPath, [join(pkg, 'dist', 'cli', 'main.js'), 'export', '--model', modelDir, '--fit', fitFile, '--format', 'hf', '--out', out, '--device', 'cpu', '--force'])
          : run(process.execPath, [here, '--child', pkg, stage, modelDir, fitFile, out]);
      const row = { rep, build, stage, rssMB: r.rssBytes / 2 ** 20, wallSeconds: r.wall, cpuSeconds: r.cpu, load: r.load };
      if (stage !== 'cli') row.exportSeconds = JSON.parse(r.stdout.trim().split('\n').pop()).seconds;
      runs.push(row);
      log(JSON.stringify(row));
      if (stage === 'cli' && !written[build]) written[build] = digests(out);
    }
  }
}
rmSync(join(WORK, 'out-before'), { recursive: true, force: true });
rmSync(join(WORK, 'out-after'), { recursive: true, force: true });

const summary = {};
for (const build of Object.keys(builds))
  for (const stage of ['baseline', 'write', 'cli']) {
    const rs = runs.filter((r) => r.build === build && r.stage === stage);
    summary[`${build}.${stage}`] = {
      rssMB: median(rs.map((r) => r.rssMB)),
      wallSeconds: median(rs.map((r) => r.wallSeconds)),
      cpuSeconds: median(rs.map((r) => r.cpuSeconds)),
      ...(stage === 'cli' ? {} : { exportSeconds: median(rs.map((r) => r.exportSeconds)) }),
    };
  }
const identical = written.before !== undefined && JSON.stringify(written.before) === JSON.stringify(written.after);
log(`outputs of the two builds are ${identical ? 'byte-identical' : 'DIFFERENT'}`);
const result = {
  date: new Date().toISOString(),
  identicalOutput: identical,
  outputDigests: written,
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
  model: { ...C, dtype: 'BF16', tensorMB: sizes.tensorBytes / 2 ** 20, largestTensorMB: sizes.largestTensorBytes / 2 ** 20 },
  fit: { skipped: SKIPPED },
  builds,
  reps: REPS,
  copyAndFsyncSeconds: { median: median(copies), runs: copies },
  summary,
  runs,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(summary, null, 2));
