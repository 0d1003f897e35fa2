#!/usr/bin/env node
/**
 * Greedy generation in llama.cpp (node-llama-cpp, CPU) on the same weights as the CPU
 * benchmark's other columns: the checkpoint is exported as GGUF by this library (theta = 1,
 * nothing skipped; F32 for an F32 checkpoint, BF16 for a BF16 one, F16 for F16), then
 * `--batch` sequences each get a `--prompt`-token prompt and `--new` greedy tokens, the
 * sequences decoded together (node-llama-cpp batches concurrent sequences into one llama.cpp
 * decode). The time covers prefill and decode, as in `cpu_bench generate` and
 * `torch_cpu_baseline.py generate`; tokens/s = batch x new tokens / median seconds.
 *
 *   npm run build:ts && node bench/llama_cpp_generate.mjs --model DIR [--name NAME] [--threads 2]
 *                          [--batch 1] [--reps 3] [--new 32] [--prompt 64] [--work /tmp/...]
 *
 * Prints one JSON line in the shape of the other generation rows (impl "llama.cpp").
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const int = (name, dflt) => {
  const v = Number(arg(name, String(dflt)));
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
};
const MODEL = arg('--model');
if (!MODEL) throw new Error('--model DIR is required');
const NAME = arg('--name', MODEL);
const SLUG = NAME.replace(/[^A-Za-z0-9_.-]/g, '_');
const THREADS = int('--threads', 2);
const BATCH = int('--batch', 1);
const REPS = int('--reps', 3);
const NEW = int('--new', 32);
const PROMPT = int('--prompt', 64);
const WORK = arg('--work', join(os.tmpdir(), 'hopscotch-llama-cpp-generate'));
mkdirSync(WORK, { recursive: true });

const lib = await import(join(root, 'dist', 'index.js'));
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
const nodeLlamaCppVersion = JSON.parse(
  readFileSync(join(root, 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8'),
).version;

// The same weights as GGUF, made once per checkpoint and type. The benchmark's random
// checkpoints (`cpu_bench make-model`) have no tokenizer: they borrow the bundled model's
// (the export fills the rows past its vocabulary with placeholder tokens), in a folder of
// links so the checkpoint's own folder is left as it is.
let source = MODEL;
if (!existsSync(join(MODEL, 'tokenizer.json'))) {
  source = join(WORK, `${SLUG}-with-tokenizer`);
  rmSync(source, { recursive: true, force: true });
  mkdirSync(source, { recursive: true });
  for (const f of readdirSync(MODEL)) symlinkSync(resolve(MODEL, f), join(source, f));
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(root, 'models', 'stories260k', f), join(source, f));
}
const model = await lib.load(source, { device: 'cpu', threads: THREADS });
const dtype = model.config.dtype ?? 'F32';
const ggufType = dtype === 'BF16' ? 'BF16' : dtype === 'F16' ? 'F16' : 'F32';
const file = join(WORK, `${SLUG}-${ggufType}.gguf`);
if (!existsSync(file) || statSync(file).mtimeMs < statSync(join(MODEL, 'config.json')).mtimeMs) {
  const theta = lib.theta.ones(model.config.numLayers);
  await lib.exportModel(model, { skipped: [], theta }, { out: file, format: 'gguf', force: true, ggufType });
}
const vocab = model.config.vocabSize;
model.dispose();

// Prompts from one LCG, away from the special tokens at the start of the vocabulary.
let s = 12345;
const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % Math.max(1, vocab - 8)) + 4;
const prompts = Array.from({ length: BATCH }, () => Array.from({ length: PROMPT }, next));

const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const gguf = await llama.loadModel({ modelPath: file });
const generateOnce = async () => {
  const ctx = await gguf.createContext({
    contextSize: BATCH * (PROMPT + NEW + 8),
    sequences: BATCH,
    threads: THREADS,
    flashAttention: false,
  });
  try {
    const seqs = prompts.map(() => ctx.getSequence());
    const t0 = performance.now();
    const counts = await Promise.all(
      seqs.map(async (seq, i) => {
        let k = 0;
        for await (const _ of seq.evaluate(prompts[i], { temperature: 0 })) if (++k >= NEW) break;
        return k;
      }),
    );
    return { seconds: (performance.now() - t0) / 1000, tokens: counts.reduce((a, b) => a + b, 0) };
  } finally {
    await ctx.dispose();
  }
};

await generateOnce(); // warm-up: thread pool, graph allocation
const runs = [];
for (let r = 0; r < REPS; r++) runs.push(await generateOnce());
runs.sort((a, b) => a.seconds - b.seconds);
const mid = runs[(runs.length - 1) >> 1];
await gguf.dispose();
await llama.dispose();
if (mid.tokens !== BATCH * NEW) throw new Error(`llama.cpp generated ${mid.tokens} tokens, expected ${BATCH * NEW}`);
console.log(
  JSON.stringify({
    impl: 'llama.cpp',
    mode: 'generate',
    model: NAME,
    threads: THREADS,
    batch: BATCH,
    prompt: PROMPT,
    new_tokens: mid.tokens,
    seconds: Number(mid.seconds.toFixed(4)),
    tokens_per_s: Number((mid.tokens / mid.seconds).toFixed(2)),
    peak_rss_mib: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    gguf_type: ggufType,
    node_llama_cpp: nodeLlamaCppVersion,
  }),
);
