#!/usr/bin/env node
/**
 * Prepares the GPU-side check of `hf` exports (bench/device-export.py): for every test
 * fixture and the demo model, exports a non-trivial fit (seeded theta, 1-2 skipped layers)
 * as an `hf` checkpoint and records this engine's logits of the scaled original model on
 * fixed tokens. The GPU box has torch + transformers but no Node, so it only needs OUTDIR.
 *
 *   npm run build:ts && node bench/export-for-device.mjs OUTDIR
 *
 * Writes OUTDIR/<name>/hf/ (the export), OUTDIR/<name>/logits.json
 * ({ tokens, vocab, logits: number[][] (T x vocab per sequence, row-major), skipped, theta,
 * dtype, tolerance }) and OUTDIR/manifest.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { exportModel, LOGIT_TOLERANCE } = await import(path.join(root, 'dist', 'export.js'));
const { load } = await import(path.join(root, 'dist', 'model.js'));

const outDir = path.resolve(process.argv[2] ?? 'export-device');
mkdirSync(outDir, { recursive: true });
const fixtures = path.join(outDir, 'sources');
execFileSync(process.execPath, [path.join(root, 'scripts', 'make-fixtures.mjs'), fixtures], { stdio: 'inherit' });

const MODELS = [
  ...['llama-gqa', 'llama-tied-bf16', 'llama-f16', 'llama3-rope', 'qwen2', 'qwen3', 'granite', 'mistral'].map((n) => ({
    name: n,
    dir: path.join(fixtures, n),
  })),
  { name: 'stories260k', dir: path.join(root, 'models', 'stories260k') },
];

const TOKENS = [
  [1, 45, 300, 7, 99, 12, 250, 3, 511, 64, 17, 200, 5, 81, 33, 140],
  [1, 403, 22, 19, 350, 8, 77, 460, 2, 130, 29, 301, 66, 480, 11, 250, 90, 45, 12, 7, 400, 33, 101, 5],
];

function seededTheta(L, seed) {
  let a = seed >>> 0;
  const u = () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296;
  };
  const vec = (lo, hi) => Float32Array.from({ length: L }, () => lo + (hi - lo) * u());
  return { bAtt: vec(0.5, 1.5), sAtt: vec(0.7, 1.3), bMlp: vec(0.5, 1.5), sMlp: vec(0.7, 1.3) };
}

const manifest = [];
for (const { name, dir } of MODELS) {
  const model = await load(dir, { device: 'cpu' });
  try {
    const L = model.config.numLayers;
    const theta = seededTheta(L, 100 + L);
    const skipped = L >= 4 ? [1, L - 1] : [L - 1];
    const hf = path.join(outDir, name, 'hf');
    const r = await exportModel(model, { skipped, theta }, { out: hf, format: 'hf', force: true, checkTokens: TOKENS });
    const logits = [];
    for (const seq of TOKENS) logits.push(Array.from(await model.logits(seq, { theta, skip: skipped })));
    const dtype = model.config.dtype;
    writeFileSync(
      path.join(outDir, name, 'logits.json'),
      JSON.stringify({
        model: name,
        tokens: TOKENS,
        vocab: model.config.vocabSize,
        skipped,
        theta: { bAtt: [...theta.bAtt], sAtt: [...theta.sAtt], bMlp: [...theta.bMlp], sMlp: [...theta.sMlp] },
        dtype,
        relTolerance: LOGIT_TOLERANCE[dtype] ?? LOGIT_TOLERANCE.BF16,
        engineMaxAbsLogitDiff: r.maxAbsLogitDiff,
        logits,
      }),
    );
    manifest.push({ name, hf: `${name}/hf`, logits: `${name}/logits.json` });
    process.stderr.write(`${name}: exported (${r.bytes} bytes), engine check max |diff| ${r.maxAbsLogitDiff}\n`);
  } finally {
    model.dispose();
  }
}
writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
process.stderr.write(`wrote ${manifest.length} exports to ${outDir}; run: python bench/device-export.py --manifest ${path.join(outDir, 'manifest.json')}\n`);
