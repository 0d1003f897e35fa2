#!/usr/bin/env node
/**
 * Serving speed of attention-free layers in llama.cpp, next to our own engine on the same
 * weights.
 *
 * Builds a random Llama of ~246M parameters (16 layers, hidden 1024, 16 query / 4 key-value
 * heads, intermediate 2816, vocab 32000, untied; F16 safetensors, the stories260k tokenizer),
 * exports it as GGUF F16 with 0, 4 and 8 attention-free layers (theta = 1; `llama` for 0,
 * `deci` otherwise), and measures, with 2 threads:
 *
 * - llama.cpp (node-llama-cpp, CPU): prefill of a 512-token prompt (tok/s), greedy decode of
 *   64 tokens after it with 1 sequence, and with 4 parallel sequences (each with its own
 *   512-token prompt; total generated tok/s).
 * - our engine (CPU, fp32 math on the same weights, skip list = the attention-free layers):
 *   model.logits on the 512-token prompt (prefill), model.generate of 64 tokens for 1 and 4
 *   prompts (decode = generate time minus the prefill measured for the same batch).
 *
 * Runs are interleaved (for each repetition: 0, 4, 8 skipped, llama.cpp then ours) and
 * medians reported, with the 1-minute load average before and after each run (the
 * machine may be shared). Writes a JSON file and an SVG chart.
 *
 *   npm run build:ts && node bench/gguf-serve.mjs [--reps 3] [--ours-reps 1] [--threads 2] [--new-tokens 64]
 *                                              [--out docs/benchmarks/gguf-serve] [--smoke]
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { writeRandomLlama } from './random-llama.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = await import(join(root, 'dist', 'index.js'));
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
const loadDuring = [];
const sampler = setInterval(() => loadDuring.push(os.loadavg()[0]), 10_000);

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const REPS = Number(arg('--reps', '3'));
const OURS_REPS = Number(arg('--ours-reps', '1'));
/** Our engine's 4-prompt decode is the slowest part of a run; `--no-ours-batch4` leaves it out. */
const OURS_BATCH4 = !argv.includes('--no-ours-batch4');
const OUT = arg('--out', join(root, 'docs', 'benchmarks', 'gguf-serve'));
const WORK = arg('--work', join(os.tmpdir(), 'hopscotch-gguf-bench'));
const THREADS = Number(arg('--threads', '2'));
const PROMPT_LEN = 512;
const NEW_TOKENS = Number(arg('--new-tokens', '64'));
const SKIPS = { 0: [], 4: [2, 6, 10, 14], 8: [1, 3, 5, 7, 9, 11, 13, 15] };
const log = (m) => process.stderr.write(`${m}\n`);
const now = () => performance.now() / 1000;
const load1 = () => os.loadavg()[0];
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ---------------------------------------------------------------------------------------
// The random model

const C = argv.includes('--smoke')
  ? { layers: 16, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, inter: 256, vocab: 1000 } // a quick check of the script itself
  : { layers: 16, hidden: 1024, heads: 16, kvHeads: 4, headDim: 64, inter: 2816, vocab: 32000 };

async function makeModel(dir) {
  rmSync(dir, { recursive: true, force: true });
  writeRandomLlama(dir, C, { dtype: 'F16' });
}

// ---------------------------------------------------------------------------------------
// Measurements

function prompts(n) {
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % (C.vocab - 600)) + 520;
  return Array.from({ length: n }, () => [1, ...Array.from({ length: PROMPT_LEN - 1 }, next)]);
}

async function llamaRun(llama, file, ps) {
  const model = await llama.loadModel({ modelPath: file });
  const gen = async (seq, token) => {
    let k = 0;
    for await (const _ of seq.evaluate([token], { temperature: 0 })) if (++k >= NEW_TOKENS) break;
    return k;
  };
  try {
    // Prefill (the prompt less its last token, without sampling), then decode from the last
    // token, one sequence. A 16-token warm-up first (thread pool, graph allocation).
    let ctx = await model.createContext({ contextSize: 1024, threads: THREADS, flashAttention: false });
    let seq = ctx.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(ps[0].slice(0, 16));
    await seq.clearHistory();
    let t0 = now();
    await seq.evaluateWithoutGeneratingNewTokens(ps[0].slice(0, -1));
    const prefill = now() - t0;
    t0 = now();
    const n1 = await gen(seq, ps[0][PROMPT_LEN - 1]);
    const decode1 = now() - t0;
    await ctx.dispose();
    // 4 parallel sequences: prefill each, then decode all concurrently (node-llama-cpp batches them).
    ctx = await model.createContext({ contextSize: 4 * 1024, sequences: 4, threads: THREADS, flashAttention: false });
    const seqs = [0, 1, 2, 3].map(() => ctx.getSequence());
    await Promise.all(seqs.map((s, i) => s.evaluateWithoutGeneratingNewTokens(ps[i].slice(0, -1))));
    t0 = now();
    const n4 = await Promise.all(seqs.map((s, i) => gen(s, ps[i][PROMPT_LEN - 1])));
    const decode4 = now() - t0;
    await ctx.dispose();
    return {
      prefillTokS: (PROMPT_LEN - 1) / prefill,
      decode1TokS: n1 / decode1,
      decode4TokS: n4.reduce((a, b) => a + b, 0) / decode4,
      generated: [n1, ...n4],
    };
  } finally {
    await model.dispose();
  }
}

async function oursRun(model, skip, ps) {
  // Prefill: logits of the prompt. Decode: generate time minus the time of the same
  // generate with 1 new token (its prefill), over the tokens generated after the first.
  await model.logits(ps[0].slice(0, 16), { skip });
  let t0 = now();
  await model.logits(ps[0], { skip });
  const prefill1 = now() - t0;
  const timed = async (prompts, n) => {
    const t = now();
    const out = await model.generate(prompts, { maxNewTokens: n, skip, stop: [] });
    return { s: now() - t, tokens: out.reduce((a, o) => a + o.length, 0) };
  };
  const p1 = await timed([ps[0]], 1);
  const g1 = await timed([ps[0]], NEW_TOKENS);
  const p4 = OURS_BATCH4 ? await timed(ps.slice(0, 4), 1) : null;
  const g4 = OURS_BATCH4 ? await timed(ps.slice(0, 4), NEW_TOKENS) : null;
  return {
    prefillTokS: PROMPT_LEN / prefill1,
    decode1TokS: (g1.tokens - p1.tokens) / Math.max(1e-9, g1.s - p1.s),
    decode4TokS: p4 && g4 ? (g4.tokens - p4.tokens) / Math.max(1e-9, g4.s - p4.s) : null,
    generated: [g1.tokens, g4?.tokens ?? 0],
  };
}

// ---------------------------------------------------------------------------------------

const started = new Date();
const modelDir = join(WORK, 'random-246m');
log(`gguf-serve: writing the random model to ${modelDir}`);
await makeModel(modelDir);
const base = await lib.load(modelDir, { device: 'cpu', threads: THREADS });
log(`gguf-serve: ${base.config.parameters} parameters`);
const theta = lib.theta.ones(C.layers);
const files = {};
for (const k of Object.keys(SKIPS)) {
  files[k] = join(WORK, `skip${k}.gguf`);
  const r = await lib.exportModel(base, { skipped: SKIPS[k], theta }, { out: files[k], format: 'gguf', force: true, ggufType: 'F16' });
  log(`gguf-serve: ${files[k]} (${r.gguf.architecture}, ${r.bytes} bytes, ${r.parameters} parameters)`);
}
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const ps = prompts(4);
const runs = [];
for (let rep = 0; rep < REPS; rep++) {
  for (const k of Object.keys(SKIPS)) {
    const before = load1();
    const r = await llamaRun(llama, files[k], ps);
    runs.push({ engine: 'llama.cpp', skipped: Number(k), rep, ...r, load1: [before, load1()] });
    log(`rep ${rep} llama.cpp skip ${k}: ${JSON.stringify(r)} load ${before.toFixed(1)}`);
    if (rep < OURS_REPS) {
      const b = load1();
      const o = await oursRun(base, SKIPS[k], ps);
      runs.push({ engine: 'hopscotch', skipped: Number(k), rep, ...o, load1: [b, load1()] });
      log(`rep ${rep} ours skip ${k}: ${JSON.stringify(o)} load ${b.toFixed(1)}`);
    }
  }
}
base.dispose();
await llama.dispose();

const summary = [];
for (const engine of ['llama.cpp', 'hopscotch'])
  for (const k of Object.keys(SKIPS)) {
    const rs = runs.filter((r) => r.engine === engine && r.skipped === Number(k));
    if (!rs.length) continue;
    summary.push({
      engine,
      skipped: Number(k),
      runs: rs.length,
      prefillTokS: median(rs.map((r) => r.prefillTokS)),
      decode1TokS: median(rs.map((r) => r.decode1TokS)),
      decode4TokS: rs.some((r) => r.decode4TokS === null) ? null : median(rs.map((r) => r.decode4TokS)),
    });
  }
const result = {
  date: started.toISOString(),
  machine: `${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}`,
  command: `node bench/gguf-serve.mjs ${argv.join(' ')}`.trim(),
  nodeLlamaCpp: JSON.parse((await import('node:fs')).readFileSync(join(root, 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8')).version,
  model: { ...C, parameters: base.config.parameters, dtype: 'F16' },
  threads: THREADS,
  promptTokens: PROMPT_LEN,
  newTokens: NEW_TOKENS,
  skips: SKIPS,
  load1Range: [Math.min(...runs.flatMap((r) => r.load1)), Math.max(...runs.flatMap((r) => r.load1))],
  load1Median: median(loadDuring.length ? loadDuring : [load1()]),
  summary,
  runs,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(`${OUT}.json`, JSON.stringify(result, null, 2) + '\n');
const cats = Object.keys(SKIPS).map((k) => `${k} attention-free`);
const series = [];
for (const engine of ['llama.cpp', 'hopscotch'])
  for (const [key, label] of [['decode1TokS', 'decode, 1 seq'], ['decode4TokS', 'decode, 4 seqs'], ['prefillTokS', 'prefill / 100']]) {
    const vals = Object.keys(SKIPS).map((k) => summary.find((s) => s.engine === engine && s.skipped === Number(k))?.[key] ?? null);
    series.push({ name: `${engine} ${label}`, values: vals.map((v) => (v === null ? null : key === 'prefillTokS' ? v / 100 : v)) });
  }
writeFileSync(
  `${OUT}.svg`,
  lib.plot.barChart({
    title: `Random ${(base.config.parameters / 1e6).toFixed(0)}M Llama, F16, ${THREADS} threads: tok/s (medians)`,
    xLabel: 'layers without attention (of 16)',
    yLabel: 'tokens / s',
    categories: cats,
    series,
  }),
);
clearInterval(sampler);
console.log(JSON.stringify({ date: result.date, machine: result.machine, load1Range: result.load1Range, load1Median: result.load1Median, summary }, null, 2));
