// The `hf` / `decilm` export's native tensor writer (native/core/safetensors_export.h):
// its output equals, byte for byte, the fold as it was computed in JavaScript
// (test/reference/fold-js.ts) on the fixtures' F32, BF16 and F16 checkpoints and on
// crafted edge values (rounding ties, subnormals, -0, overflow, chunk boundaries); the
// source index goes through the native validation; an abort flag stops it with nothing
// left on disk.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { exportModel, foldFactors } from '../../src/export.js';
import { load } from '../../src/model.js';
import { binding, type FoldedTensor } from '../../src/native/binding.js';
import type { Theta } from '../../src/types.js';
import { expectCode, fixtureDir } from '../helpers.js';
import { foldJs } from '../reference/fold-js.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'hopscotch-export-native-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Seeded uniform [0, 1). */
function lcg(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296;
  };
}

function randomTheta(numLayers: number, seed: number): Theta {
  const u = lcg(seed);
  const vec = (lo: number, hi: number) => Float32Array.from({ length: numLayers }, () => lo + (hi - lo) * u());
  return { bAtt: vec(0.5, 1.5), sAtt: vec(0.7, 1.3), bMlp: vec(0.5, 1.5), sMlp: vec(0.7, 1.3) };
}

/** Raw data bytes of every tensor of a safetensors file, by name. */
function rawTensors(file: string): Map<string, { dtype: string; bytes: Buffer }> {
  const buf = readFileSync(file);
  const out = new Map<string, { dtype: string; bytes: Buffer }>();
  for (const t of binding().inspectSafetensors(file).tensors) out.set(t.name, { dtype: t.dtype, bytes: buf.subarray(t.offset, t.offset + t.bytes) });
  return out;
}

describe('hf export bytes equal the JavaScript fold', () => {
  for (const name of ['llama-gqa', 'llama-tied-bf16', 'llama-f16']) {
    it(`${name}: unchanged tensors byte for byte, o_proj / down_proj as the JS fold encodes them`, async () => {
      const dir = fixtureDir(name);
      const model = await load(dir, { device: 'cpu' });
      try {
        const L = model.config.numLayers;
        const theta = randomTheta(L, 7 + L);
        const skipped = [L - 1];
        const out = path.join(work, `fold-${name}`);
        await exportModel(model, { skipped, theta }, { out, format: 'hf', checkTokens: [] });
        const src = path.join(dir, 'model.safetensors');
        const before = rawTensors(src);
        const after = rawTensors(path.join(out, 'model.safetensors'));
        expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
        const f = foldFactors(theta, skipped);
        let scaled = 0;
        for (const [n, t] of before) {
          const m = /^model\.layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)$/.exec(n);
          if (!m) {
            expect(after.get(n)!.bytes.equals(t.bytes), n).toBe(true);
            continue;
          }
          const factor = m[2] === 'self_attn.o_proj' ? f.att[Number(m[1])]! : f.mlp[Number(m[1])]!;
          const want = foldJs(await binding().readTensor(src, n), factor, t.dtype as 'F32' | 'BF16' | 'F16');
          expect(want).not.toBeNull();
          expect(Buffer.from(want!).equals(after.get(n)!.bytes), n).toBe(true);
          if (factor !== 0 && factor !== 1) expect(after.get(n)!.bytes.equals(t.bytes), `${n} changed`).toBe(false);
          scaled++;
        }
        expect(scaled).toBe(2 * L);
      } finally {
        model.dispose();
      }
    });
  }
});

describe('exportSafetensors on crafted values', () => {
  const N = 1_100_001; // more than one piece of a fold (2^20 elements)
  let dir: string;
  const srcFile = () => path.join(dir, 'model.safetensors');

  beforeAll(async () => {
    dir = path.join(work, 'crafted');
    mkdirSync(dir);
    const u = lcg(42);
    const f32 = new Float32Array(N);
    for (let i = 0; i < N; i++) f32[i] = (u() - 0.5) * 2 ** Math.floor(u() * 60 - 30);
    // Edge values: zeros, a subnormal, the largest finite, values on a rounding tie.
    f32.set([0, -0, 1e-40, -1e-40, 3.4028234663852886e38, 1 + 2 ** -8, 1 + 3 * 2 ** -9, 65504, 2 ** -24, 2 ** -25]);
    // 16-bit sources: every finite bit pattern is fair game (exponent below all-ones).
    const bits16 = (expMask: number) => {
      const a = new Uint16Array(N);
      for (let i = 0; i < N; i++) {
        let b = Math.floor(u() * 65536);
        if ((b & expMask) === expMask) b &= ~0x4000;
        a[i] = b;
      }
      return a;
    };
    const bf16 = bits16(0x7f80);
    const f16 = bits16(0x7c00);
    const raw = new Uint8Array(17_000_001);
    for (let i = 0; i < raw.length; i += 4096) raw[i] = i & 0xff;
    await binding().writeSafetensors(
      srcFile(),
      [
        { name: 'a', dtype: 'F32', shape: [N], data: f32 },
        { name: 'b', dtype: 'BF16', shape: [N], data: bf16 },
        { name: 'c', dtype: 'F16', shape: [1, N], data: f16 },
        { name: 'raw', dtype: 'U8', shape: [raw.length], data: raw },
      ],
      {},
      false,
    );
  });

  it('writes each dtype and factor exactly as the JavaScript fold', async () => {
    const factors = [0.7377, 1 / 3, 1e-3, 2.5, -1.25, 0];
    for (const [name, dtype, shape] of [['a', 'F32', [N]], ['b', 'BF16', [N]], ['c', 'F16', [1, N]]] as const) {
      const values = await binding().readTensor(srcFile(), name);
      for (const factor of factors) {
        const want = foldJs(values, factor, dtype);
        const file = path.join(work, `crafted-${name}-${factor}.safetensors`);
        const t: FoldedTensor = { name, dtype, shape: [...shape], source: name, scale: factor };
        if (want === null) {
          await expectCode(binding().exportSafetensors(dir, file, [t], {}), 'HOPSCOTCH_ERR_EXPORT');
          expect(readdirSync(work).filter((f) => f.startsWith(`crafted-${name}-${factor}`))).toEqual([]);
          continue;
        }
        await binding().exportSafetensors(dir, file, [t], {});
        expect(Buffer.from(want).equals(rawTensors(file).get(name)!.bytes), `${name} x ${factor}`).toBe(true);
      }
    }
  });

  it('refuses a fold that overflows BF16 / F16 and copies unscaled tensors and zeros exactly', async () => {
    const big = path.join(work, 'overflow.safetensors');
    await expectCode(binding().exportSafetensors(dir, big, [{ name: 'a', dtype: 'F32', shape: [N], source: 'a', scale: 1 }, { name: 'b', dtype: 'BF16', shape: [N], source: 'b', scale: 1e38 }], {}), 'HOPSCOTCH_ERR_EXPORT');
    const file = path.join(work, 'copied.safetensors');
    const bytes = await binding().exportSafetensors(
      dir,
      file,
      [
        { name: 'raw', dtype: 'U8', shape: [17_000_001], source: 'raw' },
        { name: 'z', dtype: 'BF16', shape: [3, 100_000] },
        { name: 'b2', dtype: 'BF16', shape: [N], source: 'b' },
      ],
      { format: 'pt' },
    );
    expect(bytes).toBe(readFileSync(file).length);
    const src = rawTensors(srcFile());
    const got = rawTensors(file);
    expect(got.get('raw')!.bytes.equals(src.get('raw')!.bytes)).toBe(true);
    expect(got.get('b2')!.bytes.equals(src.get('b')!.bytes)).toBe(true);
    expect(got.get('z')!.bytes.equals(Buffer.alloc(600_000))).toBe(true);
    expect(binding().inspectSafetensors(file).metadata).toEqual({ format: 'pt' });
    expect(readdirSync(work).filter((f) => f.startsWith('overflow'))).toEqual([]);
  });

  it('checks the plan against the checkpoint before writing anything', async () => {
    const file = path.join(work, 'bad-plan.safetensors');
    await expectCode(binding().exportSafetensors(dir, file, [{ name: 'x', dtype: 'F32', shape: [N], source: 'missing' }], {}), 'HOPSCOTCH_ERR_MISSING_TENSOR');
    await expectCode(binding().exportSafetensors(dir, file, [{ name: 'a', dtype: 'F32', shape: [N, 1], source: 'a' }], {}), 'HOPSCOTCH_ERR_SHAPE');
    await expectCode(binding().exportSafetensors(dir, file, [{ name: 'a', dtype: 'BF16', shape: [N], source: 'a' }], {}), 'HOPSCOTCH_ERR_SAFETENSORS_DTYPE');
    await expectCode(binding().exportSafetensors(dir, file, [{ name: 'raw', dtype: 'U8', shape: [17_000_001], source: 'raw', scale: 2 }], {}), 'HOPSCOTCH_ERR_SAFETENSORS_DTYPE');
    expect(readdirSync(work).filter((f) => f.startsWith('bad-plan'))).toEqual([]);
  });

  it('stops with HOPSCOTCH_ERR_ABORTED when its abort flag is set, leaving no file', async () => {
    const flag = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(flag, 0, 1);
    const file = path.join(work, 'aborted.safetensors');
    await expectCode(binding().exportSafetensors(dir, file, [{ name: 'raw', dtype: 'U8', shape: [17_000_001], source: 'raw' }], {}, flag), 'HOPSCOTCH_ERR_ABORTED');
    expect(readdirSync(work).filter((f) => f.startsWith('aborted'))).toEqual([]);
  });
});

describe('the source checkpoint', () => {
  it('is listed through the native index validation', async () => {
    const sharded = binding().inspectCheckpoint(fixtureDir('llama-sharded'));
    const single = binding().inspectCheckpoint(fixtureDir('llama-gqa'));
    expect(sharded.map((t) => t.name).sort()).toEqual(single.map((t) => t.name).sort());
    expect(new Set(sharded.map((t) => path.basename(t.file))).size).toBeGreaterThan(1);
    const bad = path.join(work, 'bad-index');
    mkdirSync(bad);
    writeFileSync(path.join(bad, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../model.safetensors' } }));
    await expectCode(() => binding().inspectCheckpoint(bad), 'HOPSCOTCH_ERR_SAFETENSORS_INDEX');
  });

  it('an abort while shards are written rejects with the reason and leaves nothing', async () => {
    const model = await load(fixtureDir('llama-gqa'), { device: 'cpu' });
    try {
      const out = path.join(work, 'abort-shards');
      const before = readdirSync(work).sort();
      const ac = new AbortController();
      const log = (line: string) => {
        if (line.includes('wrote model-00001')) ac.abort(new Error('stop while writing'));
      };
      const fit = { skipped: [1], theta: randomTheta(model.config.numLayers, 3) };
      await expect(exportModel(model, fit, { out, format: 'hf', maxShardBytes: 100_000, signal: ac.signal, log, checkTokens: [] })).rejects.toThrow('stop while writing');
      expect(readdirSync(work).sort()).toEqual(before);
    } finally {
      model.dispose();
    }
  });
});
