// The gguf export run in the real engine: each GGUF is loaded in llama.cpp through
// node-llama-cpp (the pinned devDependency, CPU build) and its greedy tokens are compared
// with our own scaled model (model.generate with theta and skip) on the same prompt.
//
// F32 files must give the same tokens for all 64 generated (llama.cpp with an F32 KV
// cache: its default F16 cache rounds K and V, a difference of the runtime, not of the
// file; the default cache is reported for the demo model). F16, BF16 and Q8_0 files
// report where they first diverge and the top-2 logit gap of the scaled model there.
// Where node-llama-cpp cannot load (no prebuilt binary for the platform), every test
// says why and is skipped.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { exportModel } from '../../src/export.js';
import type { GgufTensorTypeName } from '../../src/gguf.js';
import { load } from '../../src/model.js';
import type { Model, Theta } from '../../src/types.js';
import { demoModel, fixtureDir } from '../helpers.js';
import { LLAMA3_SPLIT, byteLevelModel } from './gguf-fixtures.js';

const TOKENS = 64;
/** "Once upon a time" in the stories260k vocabulary (every fixture shares it), after BOS. */
const PROMPT = [1, 403, 407, 261, 378];

type Llama = Awaited<ReturnType<(typeof import('node-llama-cpp'))['getLlama']>>;

async function openLlama(): Promise<{ llama?: Llama; why?: string }> {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    // build: 'never' = only the prebuilt binaries from npm, never a download or a compile.
    return { llama: await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }) };
  } catch (err) {
    return { why: (err as Error).message.split('\n')[0] };
  }
}

const runtime = await openLlama();
if (!runtime.llama) console.log(`gguf-llama-cpp: skipped, node-llama-cpp cannot load here: ${runtime.why}`);

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'hopscotch-gguf-llama-'));
});
afterAll(async () => {
  rmSync(work, { recursive: true, force: true });
  await runtime.llama?.dispose();
});

/** Deterministic non-trivial theta: s in [0.7, 1.3], b in [0.5, 1.5]. */
function randomTheta(numLayers: number, seed: number): Theta {
  let a = seed >>> 0;
  const u = () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296;
  };
  const vec = (lo: number, hi: number) => Float32Array.from({ length: numLayers }, () => lo + (hi - lo) * u());
  return { bAtt: vec(0.5, 1.5), sAtt: vec(0.7, 1.3), bMlp: vec(0.5, 1.5), sMlp: vec(0.7, 1.3) };
}

/** Greedy tokens of a GGUF in llama.cpp. */
async function llamaCppGreedy(file: string, prompt: number[], n: number, f32Cache: boolean): Promise<number[]> {
  const m = await runtime.llama!.loadModel({ modelPath: file });
  try {
    const ctx = await m.createContext({
      contextSize: 256,
      // One thread: ggml's worker threads spin at barriers, which a shared CPU punishes; the
      // comparison needs no more.
      threads: 1,
      flashAttention: false,
      ...(f32Cache ? { experimentalKvCacheKeyType: 'F32' as const, experimentalKvCacheValueType: 'F32' as const } : {}),
    });
    try {
      const seq = ctx.getSequence();
      const out: number[] = [];
      for await (const t of seq.evaluate(prompt as unknown as Parameters<typeof seq.evaluate>[0], { temperature: 0 })) {
        out.push(t as number);
        if (out.length >= n) break;
      }
      return out;
    } finally {
      await ctx.dispose();
    }
  } finally {
    await m.dispose();
  }
}

/** First index where the two sequences differ (length when equal) and the scaled model's top-2 gap there. */
async function divergence(model: Model, theta: Theta, skip: number[], ours: number[], theirs: number[]): Promise<{ at: number; gap?: number }> {
  let at = 0;
  while (at < ours.length && ours[at] === theirs[at]) at++;
  if (at === ours.length) return { at };
  const logits = await model.logits([...PROMPT, ...ours.slice(0, at)], { theta, skip });
  const row = logits.subarray(logits.length - model.config.vocabSize);
  let a = -Infinity;
  let b = -Infinity;
  for (const v of row) {
    if (v > a) [a, b] = [v, a];
    else if (v > b) b = v;
  }
  return { at, gap: a - b };
}

const CASES: Array<{ name: string; dir: string; skip: number[] }> = [
  { name: 'stories260k', dir: demoModel, skip: [2, 4] },
  { name: 'stories260k', dir: demoModel, skip: [1, 2, 3] },
  { name: 'stories260k', dir: demoModel, skip: [] },
  { name: 'llama-gqa', dir: fixtureDir('llama-gqa'), skip: [1] },
  { name: 'llama-gqa', dir: fixtureDir('llama-gqa'), skip: [] },
  { name: 'llama-tied-bf16', dir: fixtureDir('llama-tied-bf16'), skip: [1] },
  { name: 'llama3-rope', dir: fixtureDir('llama3-rope'), skip: [1] },
  { name: 'mistral', dir: fixtureDir('mistral'), skip: [1] },
  { name: 'llama-sharded', dir: fixtureDir('llama-sharded'), skip: [1, 2] },
  { name: 'llama-inert', dir: fixtureDir('llama-inert'), skip: [2] },
  { name: 'llama-f16', dir: fixtureDir('llama-f16'), skip: [1] },
  { name: 'qwen2', dir: fixtureDir('qwen2'), skip: [] },
  { name: 'qwen3', dir: fixtureDir('qwen3'), skip: [] },
];

const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(['gguf in llama.cpp vs the scaled model (greedy, 64 tokens):', ...report].join('\n'));
});

describe.skipIf(!runtime.llama)('gguf export in llama.cpp (node-llama-cpp)', () => {
  for (const c of CASES) {
    const types: GgufTensorTypeName[] = ['F32', 'F16', 'BF16', 'Q8_0'];
    it(`${c.name} skip [${c.skip.join(', ')}]: F32 gives the scaled model's ${TOKENS} greedy tokens; F16 / BF16 / Q8_0 report their first divergence`, async () => {
      const model = await load(c.dir, { device: 'cpu' });
      try {
        const theta = randomTheta(model.config.numLayers, 17 + c.skip.length);
        const [ours] = await model.generate([PROMPT], { maxNewTokens: TOKENS, theta, skip: c.skip });
        expect(ours).toHaveLength(TOKENS);
        for (const type of types) {
          const out = path.join(work, `${c.name}-${c.skip.join('_')}-${type}.gguf`);
          const r = await exportModel(model, { skipped: c.skip, theta }, { out, format: 'gguf', ggufType: type });
          expect(r.gguf?.architecture).toBe(c.skip.length ? 'deci' : c.name.startsWith('qwen') ? c.name : 'llama');
          const theirs = await llamaCppGreedy(out, PROMPT, TOKENS, true);
          const d = await divergence(model, theta, c.skip, ours!, theirs);
          report.push(
            `  ${`${c.name} [${c.skip.join(',')}]`.padEnd(28)} ${r.gguf!.architecture.padEnd(6)} ${type.padEnd(5)} ` +
              (d.at === TOKENS ? `${TOKENS}/${TOKENS} identical` : `first divergence at token ${d.at}, top-2 gap there ${d.gap!.toExponential(2)}`),
          );
          if (type === 'F32') expect(d.at, `F32 diverges at ${d.at} (top-2 gap ${d.gap})`).toBe(TOKENS);
          if (type === 'F32' && c.name === 'stories260k' && c.skip.length === 2) {
            const dflt = await divergence(model, theta, c.skip, ours!, await llamaCppGreedy(out, PROMPT, TOKENS, false));
            report.push(
              `  ${''.padEnd(28)} ${''.padEnd(6)} F32 with llama.cpp's default F16 KV cache: ` +
                (dflt.at === TOKENS ? `${TOKENS}/${TOKENS} identical` : `first divergence at ${dflt.at}, top-2 gap ${dflt.gap!.toExponential(2)}`),
            );
          }
        }
      } finally {
        model.dispose();
      }
    }, 300_000);
  }
});

describe.skipIf(!runtime.llama)('the embedded SentencePiece-style tokenizer in llama.cpp', () => {
  it('tokenizes text as our tokenizer does (BOS aside), byte fallback included', async () => {
    const model = await load(demoModel, { device: 'cpu' });
    const out = path.join(work, 'tokenizer.gguf');
    try {
      await exportModel(model, { skipped: [], theta: randomTheta(model.config.numLayers, 1) }, { out, format: 'gguf' });
      const m = await runtime.llama!.loadModel({ modelPath: out });
      try {
        const texts = [
          'Once upon a time, there was a little girl named Lily.',
          'She said, "Look at the big red ball!" and ran to get it.',
          'It was 3 o\'clock; the sun was hot.\nThe end.',
          'Tom and Sue played   with  spaces',
          'café naïve 🙂 日本',
        ];
        for (const text of texts) {
          const ours = model.tokenizer.encode(text);
          const noBos = ours[0] === 1 ? ours.slice(1) : ours;
          expect(Array.from(m.tokenize(text)), text).toEqual(noBos);
          expect(m.detokenize(m.tokenize(text)), text).toBe(model.tokenizer.decode(noBos));
        }
      } finally {
        await m.dispose();
      }
    } finally {
      model.dispose();
    }
  }, 120_000);
});

describe.skipIf(!runtime.llama)('an embedded byte-level BPE tokenizer in llama.cpp', () => {
  for (const [split, pre] of [[null, 'gpt-2'], [LLAMA3_SPLIT, 'llama-bpe']] as const) {
    it(`${pre}: tokenizes text as our tokenizer does (BOS aside)`, async () => {
      const model = await load(byteLevelModel(work, `bl-${pre}`, split), { device: 'cpu' });
      const out = path.join(work, `bl-${pre}.gguf`);
      try {
        await exportModel(model, { skipped: [1], theta: randomTheta(model.config.numLayers, 1) }, { out, format: 'gguf' });
        const m = await runtime.llama!.loadModel({ modelPath: out });
        try {
          for (const text of ['the then on', 'other thermos, 12345 on!', 'ünïcode ☃ the\n\nend']) {
            const ours = model.tokenizer.encode(text);
            expect(Array.from(m.tokenize(text)), text).toEqual(ours[0] === 0 ? ours.slice(1) : ours);
          }
        } finally {
          await m.dispose();
        }
      } finally {
        model.dispose();
      }
    }, 120_000);
  }
});

describe.skipIf(!!runtime.llama)('gguf export in llama.cpp (node-llama-cpp unavailable)', () => {
  it(`is skipped: ${runtime.why ?? ''}`, () => {
    expect(runtime.why).toBeTruthy();
  });
});
