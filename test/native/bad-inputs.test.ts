// Bad inputs: every public entry point refuses malformed token ids, sample lists, theta,
// skip lists, export targets, checkpoints and data sets with a typed error code, writes
// and changes nothing, and leaves the model usable (the same loss, bit for bit, as
// before the refusal). Disk-full and read-only targets are tmpfs mounts (tests run as
// root, which permission bits do not stop); without mount rights those cases are skipped
// with the reason printed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadAdapter } from '../../src/adapter.js';
import { loadDataset, readDataset, saveDataset } from '../../src/dataset.js';
import { exportModel, type ExportFormat } from '../../src/export.js';
import { load } from '../../src/model.js';
import { binding } from '../../src/native/binding.js';
import { evaluateLoss, rescale } from '../../src/rescale.js';
import { selectBlocks, type SelectOptions } from '../../src/select.js';
import { ones } from '../../src/theta.js';
import type { Model, Sample, Theta } from '../../src/types.js';
import { demoModel, expectCode, fixtureDir } from '../helpers.js';
import { readModelTensors } from '../reference/safetensors-js.js';

// ---------------------------------------------------------------------------------------
// Shared state and helpers

let work: string;
let model: Model;
/** A second base model with the same vocabulary (3 layers): "another model". */
let other: Model;
const L = 5; // layers of the demo model
const VOCAB = 512;

const DATA: Sample[] = [
  { prompt: [1, 403, 407, 261], response: [365, 287, 2] },
  { prompt: [1, 30, 79, 100, 4], response: [101, 7, 300] },
  { prompt: [1, 9], response: [55, 66, 77, 2] },
  { prompt: [1, 200, 201], response: [202] },
];
/** Token counts of DATA (prompt + response): 7, 8, 6, 4. */
const LONGEST = 8;

/** The loss of DATA at theta = ones before any refusal; every later check must match it bitwise. */
let baseline: { loss: number; nll: number[]; grad: number[] };

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'hs-bad-inputs-'));
  model = await load(demoModel, { device: 'cpu' });
  other = await load(fixtureDir('llama-gqa'), { device: 'cpu' });
  const r = await model.lossAndGrad(DATA, ones(L));
  baseline = { loss: r.loss, nll: Array.from(r.sampleNll), grad: Array.from(r.grad.sAtt) };
});

const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', [m], { stdio: 'pipe' });
    } catch {
      // Already gone.
    }
  }
  model?.dispose();
  other?.dispose();
  rmSync(work, { recursive: true, force: true });
});

/** Every file under `dir` (recursive) with its size and SHA-256: equal snapshots mean nothing was written or changed. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = statSync(p);
      if (st.isDirectory()) {
        out[`${r}/`] = 'dir';
        walk(p, r);
      } else out[r] = `${st.size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir, '');
  return out;
}

/** The model still computes exactly what it computed before (loss, per-sample NLL, gradient). */
async function expectUsable(m: Model = model): Promise<void> {
  const r = await m.lossAndGrad(DATA, ones(L));
  expect(r.loss).toBe(baseline.loss);
  expect(Array.from(r.sampleNll)).toEqual(baseline.nll);
  expect(Array.from(r.grad.sAtt)).toEqual(baseline.grad);
}

/** A fresh folder under the work folder. */
function folder(name: string): string {
  const d = path.join(work, name);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Theta with every vector a copy of ones, then `edit` applied. */
function thetaWith(edit: (t: Theta) => void, n = L): Theta {
  const t = ones(n);
  edit(t);
  return t;
}

/** Serialises a theta (or anything) so that "unchanged" can be compared after a call. */
const bytesOf = (t: unknown): string =>
  JSON.stringify(t, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : v));

/** Mounts a tmpfs at `dir`; returns null on success or why it could not. */
function mountTmpfs(dir: string, options: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
    mounts.push(dir);
    return null;
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    return (e.stderr?.toString().trim() || e.message).split('\n')[0]!;
  }
}

/** Expects `p` to reject with `code` and a message matching `message` (naming the cause). */
async function expectFailure(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as { code?: string; message?: string },
  );
  expect(err, 'expected a rejection').toBeDefined();
  expect(err!.code, err!.message).toBe(code);
  expect(err!.message).toMatch(message);
}

function skipBecause(ctx: { skip: (note?: string) => void }, reason: string): void {
  console.log(`skipped: ${reason}`);
  ctx.skip(reason);
}

// ---------------------------------------------------------------------------------------

describe('token ids', () => {
  /** Not token ids of a 512-token vocabulary, and what each one is. */
  const BAD_IDS: [unknown, string][] = [
    [VOCAB, '= vocabSize'],
    [VOCAB + 1000, '> vocabSize'],
    [2 ** 32, '2^32 (wraps to 0 as uint32)'],
    [-1, 'negative'],
    [1.5, 'not an integer'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    ['7', 'a string'],
  ];

  it.each(BAD_IDS)('refuses %s (%s) in loss, lossAndGrad, layerStats, logits and generate', async (bad) => {
    const id = bad as number;
    const before = snapshot(work);
    const theta = ones(L);
    const thetaBytes = bytesOf(theta);
    for (const where of ['prompt', 'response'] as const) {
      const samples: Sample[] = [DATA[0]!, { prompt: [1, 2, 3], response: [4, 5], [where]: [1, id, 3] }];
      await expectCode(model.loss(samples, theta), 'HOPSCOTCH_ERR_TOKEN_RANGE');
      await expectCode(model.lossAndGrad(samples, theta), 'HOPSCOTCH_ERR_TOKEN_RANGE');
      await expectCode(model.layerStats(samples, { theta }), 'HOPSCOTCH_ERR_TOKEN_RANGE');
    }
    await expectCode(model.logits([1, 2, id]), 'HOPSCOTCH_ERR_TOKEN_RANGE');
    await expectCode(model.generate([[1, 2], [1, id]], { maxNewTokens: 2 }), 'HOPSCOTCH_ERR_TOKEN_RANGE');
    await expectCode(model.generate([[1, 2]], { maxNewTokens: 2, stop: [2, id] }), 'HOPSCOTCH_ERR_TOKEN_RANGE');
    expect(bytesOf(theta)).toBe(thetaBytes);
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it('refuses token lists that are not arrays with HOPSCOTCH_ERR_ARGUMENT', async () => {
    await expectCode(model.loss([{ prompt: '1 2 3' as never, response: [4] }], ones(L)), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(model.logits(new Int32Array([1, 2]) as never), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(model.generate([new Int32Array([1, 2]) as never]), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectUsable();
  });

  it('the engine itself refuses them when the TypeScript checks are bypassed (memory safety)', async () => {
    const engine = await binding().Model.load(demoModel, { device: 'cpu' });
    try {
      const t = ones(L);
      for (const [bad] of BAD_IDS) {
        const code = typeof bad === 'number' ? 'HOPSCOTCH_ERR_TOKEN_RANGE' : 'HOPSCOTCH_ERR_ARGUMENT';
        const id = bad as number;
        await expectCode(() => engine.loss([{ prompt: [1, id], response: [3] }], t, { skip: [] }, false), code);
        await expectCode(() => engine.loss([{ prompt: [1], response: [3, id] }], t, { skip: [] }, true), code);
        await expectCode(() => engine.logits([1, id], t, []), code);
        await expectCode(() => engine.generate([[1, id]], t, { maxNewTokens: 1, skip: [], stop: [] }), code);
        await expectCode(() => engine.generate([[1]], t, { maxNewTokens: 1, skip: [], stop: [id] }), code);
        await expectCode(() => engine.layerStats([{ prompt: [1, id], response: [3] }], t, [], []), code);
      }
      // Still computes the same loss afterwards.
      const r = await engine.loss(DATA, t, { skip: [] }, false);
      expect(r.loss).toBe(baseline.loss);
    } finally {
      engine.dispose();
    }
  });

  it('refuses a saved data set with ids beyond the vocabulary when vocabSize is given', async () => {
    const file = path.join(folder('ids'), 'data.jsonl');
    await saveDataset(file, [...DATA, { prompt: [1, 600], response: [3] }], { fingerprint: model.fingerprint });
    const before = snapshot(work);
    await expectCode(loadDataset(file, { fingerprint: model.fingerprint, vocabSize: VOCAB }), 'HOPSCOTCH_ERR_TOKEN_RANGE');
    expect(snapshot(work)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------

describe('sample lists', () => {
  it('refuses an empty sample list everywhere with HOPSCOTCH_ERR_EMPTY_BATCH, writing nothing', async () => {
    const dir = folder('empty');
    const ckpt = path.join(dir, 'select.json');
    const before = snapshot(work);
    await expectCode(model.loss([], ones(L)), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(model.lossAndGrad([], ones(L)), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(model.layerStats([]), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(model.logits([]), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(model.generate([]), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(model.generate([[1, 2], []]), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(rescale(model, [], { skip: [1] }), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(rescale(model, DATA, { skip: [1], validation: [] }), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(evaluateLoss(model, [], ones(L)), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    await expectCode(selectBlocks(model, [], { count: 1, checkpoint: ckpt }), 'HOPSCOTCH_ERR_EMPTY_BATCH');
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it('refuses a sample with an empty response with HOPSCOTCH_ERR_EMPTY_RESPONSE', async () => {
    const bad: Sample[] = [...DATA, { prompt: [1, 2, 3], response: [] }];
    const before = snapshot(work);
    await expectCode(model.loss(bad, ones(L)), 'HOPSCOTCH_ERR_EMPTY_RESPONSE');
    await expectCode(model.lossAndGrad(bad, ones(L)), 'HOPSCOTCH_ERR_EMPTY_RESPONSE');
    await expectCode(rescale(model, bad, { skip: [1] }), 'HOPSCOTCH_ERR_EMPTY_RESPONSE');
    await expectCode(evaluateLoss(model, bad, ones(L)), 'HOPSCOTCH_ERR_EMPTY_RESPONSE');
    await expectCode(selectBlocks(model, bad, { count: 1 }), 'HOPSCOTCH_ERR_EMPTY_RESPONSE');
    // A data set file cannot hold one either.
    const file = path.join(work, 'empty-response.jsonl');
    await expectCode(saveDataset(file, bad, { fingerprint: model.fingerprint }), 'HOPSCOTCH_ERR_DATASET');
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it('refuses a sample with an empty prompt (its first response token has no context)', async () => {
    await expectCode(model.loss([{ prompt: [], response: [3, 4] }], ones(L)), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(model.lossAndGrad([{ prompt: [], response: [3] }], ones(L)), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectUsable();
  });

  // Every sample is checked before the first checkpoint is written.
  it('selectBlocks refuses bad samples before it writes a checkpoint', async () => {
    const dir = folder('select-bad-sample');
    const before = snapshot(dir);
    await expectCode(
      selectBlocks(model, [...DATA, { prompt: [1, 2], response: [] }], { count: 1, checkpoint: path.join(dir, 'c.json') }),
      'HOPSCOTCH_ERR_EMPTY_RESPONSE',
    );
    await expectCode(
      selectBlocks(model, [...DATA, { prompt: [1, 2], response: [999] }], { count: 1, checkpoint: path.join(dir, 'd.json') }),
      'HOPSCOTCH_ERR_TOKEN_RANGE',
    );
    expect(snapshot(dir)).toEqual(before);
  });

  it('refuses a sample longer than tokenCap with HOPSCOTCH_ERR_TOKEN_CAP before any work or write', async () => {
    const dir = folder('token-cap');
    const ckpt = path.join(dir, 'select.json');
    const before = snapshot(work);
    let events = 0;
    const onProgress = () => {
      events += 1;
    };
    await expectCode(rescale(model, DATA, { skip: [1], tokenCap: LONGEST - 1, onProgress }), 'HOPSCOTCH_ERR_TOKEN_CAP');
    await expectCode(
      rescale(model, DATA, { skip: [1], tokenCap: LONGEST, validation: [{ prompt: [1, 2, 3, 4, 5, 6], response: [7, 8, 9] }] }),
      'HOPSCOTCH_ERR_TOKEN_CAP',
    );
    await expectCode(selectBlocks(model, DATA, { count: 1, tokenCap: LONGEST - 1, checkpoint: ckpt, onProgress }), 'HOPSCOTCH_ERR_TOKEN_CAP');
    await expectCode(selectBlocks(model, DATA, { count: 1, tokenCap: 1, strategy: 'block-influence' }), 'HOPSCOTCH_ERR_TOKEN_CAP');
    await expectCode(evaluateLoss(model, DATA, ones(L), { tokenCap: LONGEST - 1 }), 'HOPSCOTCH_ERR_TOKEN_CAP');
    expect(events).toBe(0);
    expect(snapshot(work)).toEqual(before);
    // A cap equal to the longest sample is allowed.
    const fit = await rescale(model, DATA, { skip: [1], tokenCap: LONGEST });
    expect(fit.steps).toBeGreaterThan(0);
    await expectUsable();
  });
});

// ---------------------------------------------------------------------------------------

describe('theta', () => {
  const BAD_THETA: [string, () => Theta][] = [
    ['NaN in sAtt', () => thetaWith((t) => (t.sAtt[2] = Number.NaN))],
    ['+Infinity in bMlp', () => thetaWith((t) => (t.bMlp[0] = Number.POSITIVE_INFINITY))],
    ['-Infinity in sMlp', () => thetaWith((t) => (t.sMlp[4] = Number.NEGATIVE_INFINITY))],
    ['too short (4 layers)', () => ones(L - 1)],
    ['too long (6 layers)', () => ones(L + 1)],
    ['empty vectors', () => ones(0)],
    ['Float64Array vectors', () => ({ ...ones(L), bAtt: new Float64Array(L).fill(1) }) as unknown as Theta],
    ['plain arrays', () => ({ bAtt: [1, 1, 1, 1, 1], sAtt: [1, 1, 1, 1, 1], bMlp: [1, 1, 1, 1, 1], sMlp: [1, 1, 1, 1, 1] }) as unknown as Theta],
    ['a missing vector', () => ({ bAtt: ones(L).bAtt, sAtt: ones(L).sAtt, bMlp: ones(L).bMlp }) as unknown as Theta],
    ['a string', () => 'ones' as unknown as Theta],
  ];

  it.each(BAD_THETA)('refuses theta with %s (HOPSCOTCH_ERR_THETA) in every engine call and in rescale', async (what, make) => {
    const theta = make();
    const thetaBytes = bytesOf(theta);
    const before = snapshot(work);
    await expectCode(model.loss(DATA, theta), 'HOPSCOTCH_ERR_THETA');
    await expectCode(model.lossAndGrad(DATA, theta), 'HOPSCOTCH_ERR_THETA');
    await expectCode(model.layerStats(DATA, { theta }), 'HOPSCOTCH_ERR_THETA');
    await expectCode(model.logits([1, 2, 3], { theta }), 'HOPSCOTCH_ERR_THETA');
    await expectCode(model.generate([[1, 2]], { theta, maxNewTokens: 2 }), 'HOPSCOTCH_ERR_THETA');
    await expectCode(rescale(model, DATA, { skip: [1], theta }), 'HOPSCOTCH_ERR_THETA');
    expect(bytesOf(theta)).toBe(thetaBytes);
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });


  it.each(BAD_THETA)('export refuses theta with %s, writing nothing', async (what, make) => {
    const theta = make();
    const before = snapshot(work);
    // Non-finite values are an export refusal; a wrong type or length is a theta error.
    const code = /Infinity|NaN/.test(what) ? 'HOPSCOTCH_ERR_EXPORT' : 'HOPSCOTCH_ERR_THETA';
    for (const format of ['scales', 'hf'] as const)
      await expectCode(exportModel(model, { skipped: [1], theta }, { out: path.join(work, 'bad-theta'), format }), code);
    expect(snapshot(work)).toEqual(before);
  });

  it('the engine itself refuses a short, mistyped or non-finite theta', async () => {
    const engine = await binding().Model.load(demoModel, { device: 'cpu' });
    try {
      for (const [, make] of BAD_THETA) {
        if (typeof make() !== 'object') continue;
        await expectCode(() => engine.loss(DATA, make(), { skip: [] }, true), 'HOPSCOTCH_ERR_THETA');
        await expectCode(() => engine.logits([1, 2], make(), []), 'HOPSCOTCH_ERR_THETA');
      }
    } finally {
      engine.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('skip lists', () => {
  const BAD_SKIP: [string, unknown][] = [
    ['= numLayers', [L]],
    ['far out of range', [1000]],
    ['negative', [-1]],
    ['repeated', [1, 3, 1]],
    ['not an integer', [1.5]],
    ['NaN', [Number.NaN]],
    ['a string entry', ['1']],
    ['not an array', 1],
  ];

  it.each(BAD_SKIP)('refuses a skip index %s (HOPSCOTCH_ERR_SKIP) in engine calls, rescale and export', async (_what, bad) => {
    const skip = bad as number[];
    const before = snapshot(work);
    await expectCode(model.loss(DATA, ones(L), { skip }), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(model.lossAndGrad(DATA, ones(L), { skip }), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(model.layerStats(DATA, { skip }), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(model.logits([1, 2, 3], { skip }), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(model.generate([[1, 2]], { skip, maxNewTokens: 2 }), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(rescale(model, DATA, { skip }), 'HOPSCOTCH_ERR_SKIP');
    for (const format of ['scales', 'hf'] as const)
      await expectCode(exportModel(model, { skipped: skip, theta: ones(L) }, { out: path.join(work, 'bad-skip'), format }), 'HOPSCOTCH_ERR_SKIP');
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it('the engine itself refuses out-of-range and repeated skip indices', async () => {
    const engine = await binding().Model.load(demoModel, { device: 'cpu' });
    try {
      for (const skip of [[L], [-1], [2, 2], [1000]])
        await expectCode(() => engine.loss(DATA, ones(L), { skip }, false), 'HOPSCOTCH_ERR_SKIP');
    } finally {
      engine.dispose();
    }
  });

  // The addon itself (below the TypeScript checks) reads skip lists as layer indices.
  it('the engine reports a fractional skip index as HOPSCOTCH_ERR_SKIP', async () => {
    const engine = await binding().Model.load(demoModel, { device: 'cpu' });
    try {
      await expectCode(() => engine.loss(DATA, ones(L), { skip: [1.5] }, false), 'HOPSCOTCH_ERR_SKIP');
    } finally {
      engine.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('vocabulary size: config against tokenizer', () => {
  /**
   * The demo model cut to a 256-token vocabulary: config vocab_size 256 and the (tied)
   * embedding's first 256 rows, so config and weights agree, but tokenizer.json still
   * has 512 tokens and encodes text into ids up to 511.
   */
  function smallVocabCopy(): string {
    const dir = folder('vocab-256');
    for (const f of readdirSync(demoModel)) if (f !== 'model.safetensors' && f !== 'original') cpSync(path.join(demoModel, f), path.join(dir, f));
    const cfg = JSON.parse(readFileSync(path.join(demoModel, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, vocab_size: 256 }, null, 2));
    const tensors = readModelTensors(demoModel);
    const header: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const name of [...tensors.keys()].sort()) {
      const t = tensors.get(name)!;
      let shape = t.shape;
      let data: ArrayLike<number> = t.data;
      if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') {
        shape = [256, t.shape[1]!];
        data = t.data.subarray(0, 256 * t.shape[1]!);
      }
      const buf = Buffer.alloc(data.length * 4);
      for (let i = 0; i < data.length; i++) buf.writeFloatLE(data[i]!, 4 * i);
      header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + buf.length] };
      chunks.push(buf);
      offset += buf.length;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([len, Buffer.from(json), ...chunks]));
    return dir;
  }

  let dir: string;
  beforeAll(() => {
    dir = smallVocabCopy();
  });

  // A tokenizer that can produce ids the model cannot embed is refused at load.
  it('refuses at load a tokenizer with more tokens than config vocab_size', async () => {
    let err: unknown;
    try {
      (await load(dir, { device: 'cpu' })).dispose();
    } catch (e) {
      err = e;
    }
    expect(['HOPSCOTCH_ERR_TOKENIZER', 'HOPSCOTCH_ERR_CONFIG_INVALID']).toContain((err as { code?: string })?.code);
  });

  it('refuses a config vocab_size that disagrees with the weights (HOPSCOTCH_ERR_SHAPE), changing nothing', async () => {
    const d = folder('vocab-600');
    cpSync(demoModel, d, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, vocab_size: 600 }));
    const before = snapshot(d);
    await expectCode(load(d, { device: 'cpu' }), 'HOPSCOTCH_ERR_SHAPE');
    expect(snapshot(d)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------

describe('export targets', () => {
  const fit = () => ({ skipped: [1, 3], theta: thetaWith((t) => t.sAtt.fill(0.9)) });

  it('refuses s <= 0 for the folded formats (HOPSCOTCH_ERR_EXPORT), writing nothing', async () => {
    const before = snapshot(work);
    const cases: [string, (t: Theta) => void][] = [
      ['sAtt = 0', (t) => (t.sAtt[2] = 0)],
      ['sAtt = -0', (t) => (t.sAtt[0] = -0)],
      ['sMlp < 0', (t) => (t.sMlp[4] = -0.5)],
    ];
    for (const format of ['hf', 'decilm'] as const)
      for (const [, edit] of cases) {
        let err: unknown;
        try {
          await exportModel(model, { skipped: [1], theta: thetaWith(edit) }, { out: path.join(work, 'nonpositive'), format });
        } catch (e) {
          err = e;
        }
        expect((err as { code?: string }).code).toBe('HOPSCOTCH_ERR_EXPORT');
        expect((err as Error).message).toMatch(/must be > 0/);
      }
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it('refuses a residual scale so small that the folded weights overflow, writing nothing', async () => {
    const before = snapshot(work);
    // 1 / 1e-40 is beyond the float32 range: the folded o_proj would be infinite.
    const theta = thetaWith((t) => (t.sAtt[2] = 1e-40));
    await expectCode(exportModel(model, { skipped: [], theta }, { out: path.join(work, 'overflow'), format: 'hf' }), 'HOPSCOTCH_ERR_EXPORT');
    expect(snapshot(work)).toEqual(before);
  });

  it('refuses an adapter made for another base model (HOPSCOTCH_ERR_FINGERPRINT)', async () => {
    // Another architecture (3 layers).
    const gqa = path.join(work, 'adapter-gqa');
    await exportModel(other, { skipped: [1], theta: ones(3) }, { out: gqa, format: 'scales' });
    // The same architecture and shapes, one weight changed.
    const twin = folder('demo-twin');
    cpSync(demoModel, twin, { recursive: true });
    const st = readFileSync(path.join(twin, 'model.safetensors'));
    st[st.length - 3] ^= 0x01;
    writeFileSync(path.join(twin, 'model.safetensors'), st);
    const twinModel = await load(twin, { device: 'cpu' });
    const twinAdapter = path.join(work, 'adapter-twin');
    try {
      expect(twinModel.fingerprint).not.toBe(model.fingerprint);
      await exportModel(twinModel, { skipped: [2], theta: ones(L) }, { out: twinAdapter, format: 'scales' });
    } finally {
      twinModel.dispose();
    }
    const before = snapshot(work);
    await expectCode(() => loadAdapter(model, gqa), 'HOPSCOTCH_ERR_FINGERPRINT');
    await expectCode(() => loadAdapter(model, twinAdapter), 'HOPSCOTCH_ERR_FINGERPRINT');
    await expectCode(() => loadAdapter(model, path.join(twinAdapter, 'adapter.safetensors')), 'HOPSCOTCH_ERR_FINGERPRINT');
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it.each(['scales', 'hf'] as ExportFormat[])('refuses an existing output (folder or file) without force (%s)', async (format) => {
    const emptyDir = folder(`exists-empty-${format}`);
    const fullDir = folder(`exists-full-${format}`);
    writeFileSync(path.join(fullDir, 'keep.txt'), 'keep');
    const file = path.join(work, `exists-file-${format}`);
    writeFileSync(file, 'a file');
    const before = snapshot(work);
    for (const out of [emptyDir, fullDir, file]) await expectCode(exportModel(model, fit(), { out, format }), 'HOPSCOTCH_ERR_EXISTS');
    expect(snapshot(work)).toEqual(before);
  });

  it('refuses an output under a file (HOPSCOTCH_ERR_IO), writing nothing', async () => {
    const file = path.join(work, 'plain-file');
    writeFileSync(file, 'x');
    const before = snapshot(work);
    for (const format of ['scales', 'hf'] as const)
      await expectCode(exportModel(model, fit(), { out: path.join(file, 'deeper', 'out'), format }), 'HOPSCOTCH_ERR_IO');
    expect(snapshot(work)).toEqual(before);
  });

  it('refuses a read-only file system (read-only tmpfs mount) with HOPSCOTCH_ERR_IO', async (ctx) => {
    const ro = folder('read-only-mount');
    const why = mountTmpfs(ro, 'ro,size=1m');
    if (why) return skipBecause(ctx, `cannot mount a read-only tmpfs: ${why}`);
    const before = snapshot(work);
    for (const format of ['scales', 'hf'] as const) {
      await expectFailure(exportModel(model, fit(), { out: path.join(ro, 'out'), format }), 'HOPSCOTCH_ERR_IO', /EROFS|read-only/i);
      await expectFailure(exportModel(model, fit(), { out: path.join(ro, 'a', 'b'), format }), 'HOPSCOTCH_ERR_IO', /EROFS|read-only/i);
    }
    await expectCode(saveDataset(path.join(ro, 'data.jsonl'), DATA, { fingerprint: model.fingerprint }), 'HOPSCOTCH_ERR_IO');
    await expectCode(selectBlocks(model, DATA, { count: 1, checkpoint: path.join(ro, 'select.json') }), 'HOPSCOTCH_ERR_IO');
    expect(readdirSync(ro)).toEqual([]);
    expect(snapshot(work)).toEqual(before);
    await expectUsable();
  });

  it('disk full (64 KiB tmpfs): exporting the demo model as hf fails with HOPSCOTCH_ERR_IO and leaves nothing', async (ctx) => {
    const small = folder('full-64k');
    const why = mountTmpfs(small, 'size=64k');
    if (why) return skipBecause(ctx, `cannot mount a tmpfs: ${why}`);
    await expectFailure(
      exportModel(model, { skipped: [1], theta: ones(L) }, { out: path.join(small, 'out'), format: 'hf' }),
      'HOPSCOTCH_ERR_IO',
      /ENOSPC|no space/i,
    );
    expect(readdirSync(small)).toEqual([]);
    await expectUsable();
  });

  it('disk full after the weights were written: the config write fails, HOPSCOTCH_ERR_IO, nothing left', async (ctx) => {
    // Measure the folded checkpoint, then mount a tmpfs that holds it and not one page more.
    const probe = path.join(work, 'measure');
    const f = { skipped: [1], theta: ones(L) };
    await exportModel(model, f, { out: probe, format: 'hf', checkTokens: [] });
    const weights = statSync(path.join(probe, 'model.safetensors')).size;
    rmSync(probe, { recursive: true });
    const page = 4096;
    const exact = folder('full-exact');
    const why = mountTmpfs(exact, `size=${Math.ceil(weights / page) * page}`);
    if (why) return skipBecause(ctx, `cannot mount a tmpfs: ${why}`);
    const logs: string[] = [];
    await expectFailure(
      exportModel(model, f, { out: path.join(exact, 'out'), format: 'hf', log: (m) => logs.push(m) }),
      'HOPSCOTCH_ERR_IO',
      /ENOSPC|no space/i,
    );
    expect(logs.some((m) => m.includes('wrote model.safetensors'))).toBe(true);
    expect(readdirSync(exact)).toEqual([]);
    await expectUsable();
  });

  it('disk full: checkpoints, data sets and adapters fail with HOPSCOTCH_ERR_IO and leave no temporary file', async (ctx) => {
    const full = folder('full-filled');
    const why = mountTmpfs(full, 'size=64k');
    if (why) return skipBecause(ctx, `cannot mount a tmpfs: ${why}`);
    // Fill it: the write stops with ENOSPC once every page is taken.
    try {
      writeFileSync(path.join(full, 'filler'), Buffer.alloc(128 * 1024, 1));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    const before = snapshot(full);
    const noSpace = /ENOSPC|no space/i;
    await expectFailure(saveDataset(path.join(full, 'data.jsonl'), DATA, { fingerprint: model.fingerprint }), 'HOPSCOTCH_ERR_IO', noSpace);
    await expectFailure(selectBlocks(model, DATA, { count: 1, checkpoint: path.join(full, 'select.json') }), 'HOPSCOTCH_ERR_IO', noSpace);
    await expectFailure(exportModel(model, fit(), { out: path.join(full, 'adapter'), format: 'scales' }), 'HOPSCOTCH_ERR_IO', noSpace);
    expect(snapshot(full)).toEqual(before);
    await expectUsable();
  });
});

// ---------------------------------------------------------------------------------------

describe('selection checkpoints', () => {
  const OPTS: SelectOptions = { count: 1, strategy: 'block-influence', batchSize: 2 };
  let dir: string;
  let valid: string;
  let validText: string;

  beforeAll(async () => {
    dir = folder('checkpoints');
    valid = path.join(dir, 'valid.json');
    await selectBlocks(model, DATA, { ...OPTS, checkpoint: valid });
    validText = readFileSync(valid, 'utf8');
  });

  /** Writes `text` as a checkpoint and expects selectBlocks to refuse it with `code`, changing nothing. */
  async function refused(name: string, text: string, code = 'HOPSCOTCH_ERR_CHECKPOINT', m: Model = model, data = DATA, opts = OPTS) {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    const before = snapshot(dir);
    await expectCode(selectBlocks(m, data, { ...opts, checkpoint: file }), code);
    expect(snapshot(dir)).toEqual(before);
  }

  const edited = (edit: (c: Record<string, any>) => void) => {
    const c = JSON.parse(validText) as Record<string, any>;
    edit(c);
    return JSON.stringify(c);
  };

  it('resumes the valid checkpoint (the refusals below are not vacuous)', async () => {
    const fresh = await selectBlocks(model, DATA, OPTS);
    const resumed = await selectBlocks(model, DATA, { ...OPTS, checkpoint: valid });
    expect(resumed.skipped).toEqual(fresh.skipped);
    expect(Array.from(resumed.theta.sAtt)).toEqual(Array.from(fresh.theta.sAtt));
    expect(readFileSync(valid, 'utf8')).toBe(validText);
  });

  it('refuses a truncated, empty or non-JSON file', async () => {
    await refused('truncated.json', validText.slice(0, Math.floor(validText.length / 2)));
    await refused('empty.json', '');
    await refused('garbage.json', '\u0000\u0001 not json');
    await refused('array.json', '[]');
  });

  it('refuses a wrong format field, an unknown version and missing state', async () => {
    await refused('format.json', edited((c) => (c.format = 'hopscotch-dataset')));
    await refused('no-format.json', edited((c) => delete c.format));
    await refused('version.json', edited((c) => (c.version = 99)));
    await refused('no-state.json', edited((c) => delete c.state));
    await refused('bad-step.json', edited((c) => (c.state.step = 'one')));
  });

  it('refuses a theta with non-numbers or a b_att of the wrong length', async () => {
    await refused('theta-type.json', edited((c) => (c.state.theta.bMlp = ['1', 1, 1, 1, 1])));
    await refused('theta-null.json', edited((c) => (c.state.theta.sAtt[0] = null)));
    await refused('theta-batt-length.json', edited((c) => (c.state.theta.bAtt = [0, 1])));
  });

  // A resumed checkpoint's theta and skip list are validated when it is read, finished
  // or not (a short sAtt, an infinite sMlp from 1e999, layer 99), and the file is left as is.
  it('refuses a checkpoint whose theta or skip list does not fit the model', async () => {
    for (const stoppedBy of ['count', null]) {
      const withStop = (edit: (c: Record<string, any>) => void) =>
        edited((c) => {
          edit(c);
          c.state.stoppedBy = stoppedBy;
        });
      await refused('theta-short.json', withStop((c) => (c.state.theta.sAtt = [1, 1])));
      await refused('theta-infinite.json', withStop((c) => (c.state.theta.sMlp[0] = 'INF')).replace('"INF"', '1e999'));
      await refused('skipped-range.json', withStop((c) => (c.state.skipped = [99])));
      await refused('skipped-repeated.json', withStop((c) => (c.state.skipped = [1, 1])));
    }
  });

  it('refuses a checkpoint of another model, another data set or other options', async () => {
    // A real checkpoint of another base model, run on the same data and options.
    const theirs = path.join(dir, 'other-model.json');
    await selectBlocks(other, DATA, { ...OPTS, checkpoint: theirs });
    await refused('other-model-copy.json', readFileSync(theirs, 'utf8'));
    // Ours, resumed with other data (one token changed) or other options.
    const data2 = DATA.map((s, i) => (i === 2 ? { prompt: s.prompt, response: [...s.response.slice(0, -1), 3] } : s));
    await refused('other-data.json', validText, 'HOPSCOTCH_ERR_CHECKPOINT', model, data2);
    await refused('other-options.json', validText, 'HOPSCOTCH_ERR_CHECKPOINT', model, DATA, { ...OPTS, seed: 7 });
    await refused('other-count.json', validText, 'HOPSCOTCH_ERR_CHECKPOINT', model, DATA, { ...OPTS, count: 2 });
    await expectUsable();
  });

  it('refuses a checkpoint path that is a folder with HOPSCOTCH_ERR_IO', async () => {
    const d = folder('checkpoint-is-a-folder');
    const before = snapshot(work);
    await expectCode(selectBlocks(model, DATA, { ...OPTS, checkpoint: d }), 'HOPSCOTCH_ERR_IO');
    expect(snapshot(work)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------

describe('data set files', () => {
  it('refuses a data set generated by another model with HOPSCOTCH_ERR_FINGERPRINT', async () => {
    const file = path.join(folder('datasets'), 'other.jsonl');
    await saveDataset(file, DATA, { fingerprint: other.fingerprint });
    const before = snapshot(work);
    await expectCode(loadDataset(file, { fingerprint: model.fingerprint }), 'HOPSCOTCH_ERR_FINGERPRINT');
    await expectCode(readDataset(file, { fingerprint: model.fingerprint }), 'HOPSCOTCH_ERR_FINGERPRINT');
    // Without an expected fingerprint it reads (the refusal is about provenance, not syntax).
    expect(await loadDataset(file)).toEqual(DATA);
    expect(snapshot(work)).toEqual(before);
  });

  it('refuses altered, truncated and foreign files with HOPSCOTCH_ERR_DATASET', async () => {
    const dir = folder('datasets-bad');
    const good = path.join(dir, 'good.jsonl');
    await saveDataset(good, DATA, { fingerprint: model.fingerprint });
    const lines = readFileSync(good, 'utf8').split('\n');
    const variants: Record<string, string> = {
      'altered.jsonl': [lines[0], lines[1]!.replace('403', '404'), ...lines.slice(2)].join('\n'),
      'line-missing.jsonl': lines.filter((_, i) => i !== 2).join('\n'),
      'cut-mid-line.jsonl': lines.join('\n').slice(0, -12),
      'checkpoint-as-data.jsonl': '{"format":"hopscotch-selection-checkpoint","version":1}\n',
      'empty.jsonl': '',
    };
    for (const [name, text] of Object.entries(variants)) writeFileSync(path.join(dir, name), text);
    const before = snapshot(work);
    for (const name of Object.keys(variants))
      await expectCode(loadDataset(path.join(dir, name), { fingerprint: model.fingerprint }), 'HOPSCOTCH_ERR_DATASET');
    expect(snapshot(work)).toEqual(before);
    expect(await loadDataset(good, { fingerprint: model.fingerprint, vocabSize: VOCAB })).toEqual(DATA);
  });
});
