// The gguf export and the GGUF reader: what is written (architecture, per-layer head
// counts, no attention tensors for skipped layers, the fold, llama.cpp's q/k row order,
// the tokenizer), the tensor types (F32 exact, F16/BF16 rounding, Q8_0 block error), typed
// refusals before any work with nothing left on disk, and the reader on a malformed corpus.
// Running the files in llama.cpp is gguf-llama-cpp.test.ts.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { exportModel, foldFactors } from '../../src/export.js';
import { inspectGguf, readGgufTensor, summarizeGguf } from '../../src/gguf.js';
import { load } from '../../src/model.js';
import { binding, type GgufInfo } from '../../src/native/binding.js';
import type { Model, Theta } from '../../src/types.js';
import { demoModel, expectCode, fixtureDir, generated } from '../helpers.js';
import { startCli } from './cli-run.js';
import { LLAMA3_SPLIT, byteChars, byteLevelModel } from './gguf-fixtures.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'hopscotch-gguf-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
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

const meta = (info: GgufInfo, key: string) => info.metadata.find((m) => m.key === key)?.value;
const src = (model: Model, name: string): Promise<Float32Array> => binding().readTensor(path.join(model.dir, 'model.safetensors'), name);

/** llama.cpp's converter permutation, written from its definition: reshape(heads, 2, hd/2, cols).swapaxes(1, 2). */
function permuteReference(w: Float32Array, rows: number, heads: number): Float32Array {
  const cols = w.length / rows;
  const hd = rows / heads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let half = 0; half < 2; half++)
      for (let i = 0; i < hd / 2; i++) {
        const from = h * hd + half * (hd / 2) + i;
        const to = h * hd + i * 2 + half;
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
  return out;
}

describe('gguf export of the demo model with skipped attention (deci)', () => {
  let model: Model;
  let theta: Theta;
  let out: string;
  const skip = [2, 4];
  beforeAll(async () => {
    model = await load(demoModel, { device: 'cpu' });
    theta = randomTheta(model.config.numLayers, 11);
    out = path.join(work, 'demo', 'model.gguf');
  });
  afterAll(() => model?.dispose());

  it('writes deci with per-layer head counts, key/value length and no attention tensors in skipped layers', async () => {
    const r = await exportModel(model, { skipped: skip, theta }, { out, format: 'gguf', ggufType: 'F32' });
    expect(r.format).toBe('gguf');
    expect(r.gguf).toMatchObject({ architecture: 'deci', tensorType: 'F32', attentionFree: [2, 4], f16Fallback: [] });
    expect(readdirSync(path.dirname(out))).toEqual(['model.gguf']);
    const info = inspectGguf(out);
    const c = model.config;
    expect(meta(info, 'general.architecture')).toBe('deci');
    expect(meta(info, 'deci.attention.head_count')).toEqual([8, 8, 0, 8, 0]);
    expect(meta(info, 'deci.attention.head_count_kv')).toEqual([4, 4, 0, 4, 0]);
    expect(meta(info, 'deci.feed_forward_length')).toEqual(Array(5).fill(c.intermediateSize));
    expect(meta(info, 'deci.attention.key_length')).toBe(c.headDim);
    expect(meta(info, 'deci.attention.value_length')).toBe(c.headDim);
    expect(meta(info, 'deci.rope.dimension_count')).toBe(c.headDim);
    expect(meta(info, 'deci.block_count')).toBe(5);
    expect(info.metadata.find((m) => m.key === 'deci.attention.head_count')?.elemType).toBe('i32');
    const names = info.tensors.map((t) => t.name);
    for (const l of skip) {
      expect(names.filter((n) => n.startsWith(`blk.${l}.attn`))).toEqual([]);
      expect(names).toContain(`blk.${l}.ffn_down.weight`);
    }
    expect(names).toContain('blk.3.attn_norm.weight');
    expect(names).not.toContain('output.weight'); // tied: llama.cpp reuses token_embd
    // Dimensions are reversed torch shapes.
    expect(info.tensors.find((t) => t.name === 'blk.0.attn_k.weight')?.ne).toEqual([c.hiddenSize, c.numKvHeads * c.headDim]);
    const removed = skip.length * (c.hiddenSize + 2 * c.hiddenSize * c.numHeads * c.headDim + 2 * c.hiddenSize * c.numKvHeads * c.headDim);
    expect(r.parameters).toBe(r.baseParameters! - removed);
    expect(summarizeGguf(info)).toMatchObject({ architecture: 'deci', layers: 5, attentionFree: [2, 4], tokenizer: 'llama', vocabSize: 512 });
  });

  it('folds theta into attn_output / ffn_down exactly as the hf export and permutes q/k rows like llama.cpp', async () => {
    const f = foldFactors(theta, skip);
    for (const [l, kind] of [[0, 'att'], [1, 'mlp'], [3, 'att'], [4, 'mlp']] as const) {
      const [g, s] = kind === 'att' ? ['attn_output', 'self_attn.o_proj'] : ['ffn_down', 'mlp.down_proj'];
      const got = readGgufTensor(out, `blk.${l}.${g}.weight`);
      const want = (await src(model, `model.layers.${l}.${s}.weight`)).map((v) => Math.fround(v * Math.fround(f[kind][l]!)));
      expect(got).toEqual(want);
    }
    const c = model.config;
    expect(readGgufTensor(out, 'blk.1.attn_q.weight')).toEqual(permuteReference(await src(model, 'model.layers.1.self_attn.q_proj.weight'), c.numHeads * c.headDim, c.numHeads));
    expect(readGgufTensor(out, 'blk.1.attn_k.weight')).toEqual(permuteReference(await src(model, 'model.layers.1.self_attn.k_proj.weight'), c.numKvHeads * c.headDim, c.numKvHeads));
    expect(readGgufTensor(out, 'blk.1.attn_v.weight')).toEqual(await src(model, 'model.layers.1.self_attn.v_proj.weight'));
    // The permutation is not the identity (the test can fail).
    expect(readGgufTensor(out, 'blk.1.attn_q.weight')).not.toEqual(await src(model, 'model.layers.1.self_attn.q_proj.weight'));
  });

  it('embeds the SentencePiece-style tokenizer: tokens, byte tokens, scores from merge ranks, special ids', () => {
    const info = inspectGguf(out);
    const tj = JSON.parse(readFileSync(path.join(model.dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number>; merges: string[] } };
    const tokens = meta(info, 'tokenizer.ggml.tokens') as string[];
    expect(meta(info, 'tokenizer.ggml.model')).toBe('llama');
    expect(tokens).toHaveLength(512);
    for (const [t, id] of Object.entries(tj.model.vocab)) expect(tokens[id]).toBe(t);
    const types = meta(info, 'tokenizer.ggml.token_type') as number[];
    expect(types.slice(0, 4)).toEqual([2, 3, 3, 6]); // <unk>, <s>, </s>, <0x00>
    const scores = meta(info, 'tokenizer.ggml.scores') as number[];
    const [a, b] = tj.model.merges[5]!.split(' ');
    expect(scores[tj.model.vocab[a! + b!]!]).toBe(-5);
    expect(meta(info, 'tokenizer.ggml.bos_token_id')).toBe(1);
    expect(meta(info, 'tokenizer.ggml.eos_token_id')).toBe(2);
    expect(meta(info, 'tokenizer.ggml.unknown_token_id')).toBe(0);
    expect(meta(info, 'tokenizer.ggml.add_bos_token')).toBe(true);
    expect(meta(info, 'tokenizer.ggml.add_space_prefix')).toBe(true);
  });

  it('refuses an existing file without force, leaves it untouched, and replaces it with force', async () => {
    const before = readFileSync(out);
    await expectCode(exportModel(model, { skipped: [2], theta }, { out, format: 'gguf' }), 'HOPSCOTCH_ERR_EXISTS');
    expect(readFileSync(out).equals(before)).toBe(true);
    const r = await exportModel(model, { skipped: [2], theta }, { out, format: 'gguf', force: true });
    expect(r.gguf?.attentionFree).toEqual([2]);
    expect(readdirSync(path.dirname(out))).toEqual(['model.gguf']);
  });

  it('writes llama (scalar head counts, all attention tensors) when nothing is skipped', async () => {
    const o = path.join(work, 'demo-noskip.gguf');
    const r = await exportModel(model, { skipped: [], theta }, { out: o, format: 'gguf' });
    expect(r.gguf?.architecture).toBe('llama');
    const info = inspectGguf(o);
    expect(meta(info, 'llama.attention.head_count')).toBe(8);
    expect(meta(info, 'llama.attention.head_count_kv')).toBe(4);
    expect(info.tensors.filter((t) => t.name.endsWith('attn_q.weight'))).toHaveLength(5);
    expect(r.parameters).toBe(r.baseParameters);
  });

  it('Q8_0: blocks of 32 within half a step plus the f16 rounding of the scale, F16 fallback for 172-wide rows (as llama.cpp converts)', async () => {
    const o = path.join(work, 'demo-q8.gguf');
    const r = await exportModel(model, { skipped: skip, theta }, { out: o, format: 'gguf', ggufType: 'Q8_0' });
    const info = inspectGguf(o);
    const type = (n: string) => info.tensors.find((t) => t.name === n)?.type;
    expect(type('blk.0.attn_q.weight')).toBe('Q8_0');
    expect(type('blk.0.ffn_down.weight')).toBe('F16'); // ne[0] = 172
    expect(type('blk.0.attn_norm.weight')).toBe('F32');
    expect(r.gguf?.f16Fallback).toEqual([0, 1, 2, 3, 4].map((l) => `blk.${l}.ffn_down.weight`));
    expect(meta(info, 'general.file_type')).toBe(7);
    expect(meta(info, 'general.quantization_version')).toBe(2);
    const want = await src(model, 'model.layers.0.mlp.gate_proj.weight');
    const got = readGgufTensor(o, 'blk.0.ffn_gate.weight');
    for (let b = 0; b < want.length / 32; b++) {
      const block = want.subarray(b * 32, b * 32 + 32);
      const d = Math.max(...block.map(Math.abs)) / 127;
      // |q d16 - x| <= |q d - x| + |q| |d16 - d| <= d / 2 + 127 d 2^-11 (d is stored as f16).
      for (let j = 0; j < 32; j++) expect(Math.abs(got[b * 32 + j]! - block[j]!)).toBeLessThanOrEqual(d * (0.5 + 127 * 2 ** -11) + 1e-12);
    }
  });

  it('F16 and BF16 round each weight to nearest (relative error <= 2^-11 and 2^-8)', async () => {
    for (const [t, rel] of [['F16', 2 ** -11], ['BF16', 2 ** -8]] as const) {
      const o = path.join(work, `demo-${t}.gguf`);
      await exportModel(model, { skipped: skip, theta }, { out: o, format: 'gguf', ggufType: t });
      const want = await src(model, 'model.layers.3.mlp.up_proj.weight');
      const got = readGgufTensor(o, 'blk.3.ffn_up.weight');
      expect(inspectGguf(o).tensors.find((x) => x.name === 'blk.3.ffn_up.weight')?.type).toBe(t);
      let worst = 0;
      for (let i = 0; i < want.length; i++) if (Math.abs(want[i]!) > 1e-4) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.abs(want[i]!));
      expect(worst).toBeLessThanOrEqual(rel);
      expect(worst).toBeGreaterThan(0);
    }
  });
});

describe('gguf export refusals (typed, before any work, nothing written)', () => {
  const cases: Array<[string, string, number[], (t: Theta) => void, string]> = [
    ['s <= 0', demoModel, [2], (t) => (t.sMlp[1] = 0), 'HOPSCOTCH_ERR_EXPORT'],
    ['layer 0 skipped', demoModel, [0], () => {}, 'HOPSCOTCH_ERR_EXPORT'],
    ['Qwen2 with skipped attention', fixtureDir('qwen2'), [1], () => {}, 'HOPSCOTCH_ERR_EXPORT'],
    ['Qwen3 with skipped attention', fixtureDir('qwen3'), [1], () => {}, 'HOPSCOTCH_ERR_EXPORT'],
    ['Granite', fixtureDir('granite'), [], () => {}, 'HOPSCOTCH_ERR_EXPORT'],
  ];
  for (const [what, dir, skip, edit, code] of cases) {
    it(what, async () => {
      const model = await load(dir, { device: 'cpu' });
      try {
        const theta = randomTheta(model.config.numLayers, 3);
        edit(theta);
        const o = path.join(work, 'refused', what.replace(/\W+/g, '-'), 'x.gguf');
        await expectCode(exportModel(model, { skipped: skip, theta }, { out: o, format: 'gguf' }), code);
        expect(existsSync(path.dirname(o))).toBe(false);
      } finally {
        model.dispose();
      }
    });
  }

  it('an unknown ggufType is an argument error', async () => {
    const model = await load(demoModel, { device: 'cpu' });
    try {
      const theta = randomTheta(5, 1);
      const o = path.join(work, 'bad-type.gguf');
      await expectCode(exportModel(model, { skipped: [], theta }, { out: o, format: 'gguf', ggufType: 'Q4_K' as 'Q8_0' }), 'HOPSCOTCH_ERR_ARGUMENT');
      expect(existsSync(o)).toBe(false);
    } finally {
      model.dispose();
    }
  });

  it('Qwen2 and Qwen3 without skipping are written as their own architectures (no q/k permutation)', async () => {
    for (const name of ['qwen2', 'qwen3']) {
      const model = await load(fixtureDir(name), { device: 'cpu' });
      try {
        const o = path.join(work, `${name}.gguf`);
        const r = await exportModel(model, { skipped: [], theta: randomTheta(model.config.numLayers, 5) }, { out: o, format: 'gguf' });
        expect(r.gguf?.architecture).toBe(name);
        const names = inspectGguf(o).tensors.map((t) => t.name);
        if (name === 'qwen2') expect(names).toContain('blk.0.attn_k.bias');
        else expect(names).toContain('blk.0.attn_q_norm.weight');
        expect(readGgufTensor(o, 'blk.0.attn_q.weight')).toEqual(await src(model, 'model.layers.0.self_attn.q_proj.weight'));
      } finally {
        model.dispose();
      }
    }
  });
});

describe('GGUF reader on malformed files', () => {
  const dir = path.join(generated, 'malformed-gguf');
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Array<{ file: string; expectedCode: string | null; description: string }>;
  it('has a corpus with many malformed cases and valid controls', () => {
    expect(manifest.filter((m) => m.expectedCode !== null).length).toBeGreaterThanOrEqual(30);
    expect(manifest.filter((m) => m.expectedCode === null).length).toBeGreaterThanOrEqual(3);
  });
  for (const m of manifest) {
    it(`${m.file}: ${m.description}`, async () => {
      const p = path.join(dir, m.file);
      if (m.expectedCode === null) expect(inspectGguf(p).version).toBe(3);
      else await expectCode(() => inspectGguf(p), m.expectedCode);
    });
  }
  it('dequantizes the Q8_0 control exactly (scale 1.0 x int8)', () => {
    const got = readGgufTensor(path.join(dir, 'valid-q8_0.gguf'), 'q.weight');
    expect(got.length).toBe(64);
    expect(got[0]).toBe(-127);
    expect(got[1]).toBe(13 - 127);
  });
  it('a file that is not GGUF at all is a header error', async () => {
    const p = path.join(work, 'not.gguf');
    writeFileSync(p, 'hello world, this is not a gguf file');
    await expectCode(() => inspectGguf(p), 'HOPSCOTCH_ERR_GGUF_HEADER');
  });
});

describe('CLI', () => {
  it('export --format gguf writes a deci file and inspect reads it', async () => {
    const fit = path.join(work, 'fit.json');
    const t = randomTheta(5, 9);
    writeFileSync(fit, JSON.stringify({ skipped: [3], theta: { bAtt: [...t.bAtt], sAtt: [...t.sAtt], bMlp: [...t.bMlp], sMlp: [...t.sMlp] } }));
    const o = path.join(work, 'cli', 'm.gguf');
    const r = await startCli(work, ['export', '--model', demoModel, '--fit', fit, '--format', 'gguf', '--gguf-type', 'Q8_0', '--out', o, '--device', 'cpu', '--json']).done;
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { gguf: { architecture: string; tensorType: string } };
    expect(res.gguf).toMatchObject({ architecture: 'deci', tensorType: 'Q8_0' });
    const i = await startCli(work, ['inspect', o]).done;
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/architecture deci/);
    expect(i.stdout).toMatch(/no attention 3/);
    const bad = await startCli(work, ['export', '--model', demoModel, '--fit', fit, '--format', 'gguf', '--gguf-type', 'Q4', '--out', o]).done;
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/HOPSCOTCH_ERR_ARGUMENT/);
  });
});

describe('byte-level BPE tokenizers', () => {
  it('are written as gpt2 with merges, token types, the pre-tokenizer name, special ids, add_bos and the chat template', async () => {
    for (const [split, pre] of [[null, 'gpt-2'], [LLAMA3_SPLIT, 'llama-bpe']] as const) {
      const dir = byteLevelModel(work, `bl-${pre}`, split);
      const model = await load(dir, { device: 'cpu' });
      try {
        const o = path.join(work, `bl-${pre}.gguf`);
        const r = await exportModel(model, { skipped: [1], theta: randomTheta(3, 2) }, { out: o, format: 'gguf' });
        expect(r.gguf?.tokenizer).toEqual({ model: 'gpt2', pre, tokens: 512, merges: 4 });
        const info = inspectGguf(o);
        expect(meta(info, 'tokenizer.ggml.model')).toBe('gpt2');
        expect(meta(info, 'tokenizer.ggml.pre')).toBe(pre);
        const G = byteChars()[32]!;
        expect(meta(info, 'tokenizer.ggml.merges')).toEqual([`${G} t`, 'h e', `${G}t he`, 'o n']);
        const tokens = meta(info, 'tokenizer.ggml.tokens') as string[];
        const types = meta(info, 'tokenizer.ggml.token_type') as number[];
        expect(tokens.slice(0, 4)).toEqual(['<|begin|>', '<|end|>', '<|pad|>', byteChars()[0]]);
        expect(types.slice(0, 4)).toEqual([3, 3, 3, 1]);
        expect(tokens[511]).toBe('[PAD511]');
        expect(types[511]).toBe(5);
        expect(meta(info, 'tokenizer.ggml.bos_token_id')).toBe(0);
        expect(meta(info, 'tokenizer.ggml.eos_token_id')).toBe(1);
        expect(meta(info, 'tokenizer.ggml.padding_token_id')).toBe(2);
        expect(meta(info, 'tokenizer.ggml.add_bos_token')).toBe(true); // the post-processor adds <|begin|>
        expect(meta(info, 'tokenizer.chat_template')).toMatch(/for m in messages/);
        expect(info.metadata.some((m) => m.key === 'tokenizer.ggml.scores')).toBe(false);
      } finally {
        model.dispose();
      }
    }
  });

  it('an unrecognised pre-tokenizer regex is refused unless tokenizerPre names it', async () => {
    const dir = byteLevelModel(work, 'bl-unknown', '\\p{L}+|\\p{N}|\\s+');
    const model = await load(dir, { device: 'cpu' });
    try {
      const o = path.join(work, 'bl-unknown.gguf');
      await expectCode(exportModel(model, { skipped: [], theta: randomTheta(3, 2) }, { out: o, format: 'gguf' }), 'HOPSCOTCH_ERR_EXPORT');
      expect(existsSync(o)).toBe(false);
      const r = await exportModel(model, { skipped: [], theta: randomTheta(3, 2) }, { out: o, format: 'gguf', tokenizerPre: 'default' });
      expect(r.gguf?.tokenizer.pre).toBe('default');
    } finally {
      model.dispose();
    }
  });
});
