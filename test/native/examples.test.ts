// The examples in examples/, compiled with their own tsconfig and run as a user runs
// them: `node examples/dist/<name>.js` from an empty folder, importing the package by
// its name (`hopscotch-native`, resolved through package.json `exports` to dist/, which
// `npm test` builds first). Each run's printed claims are checked against the files it
// wrote and, where cheap, recomputed here with the library's own primitives.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadAdapter } from '../../src/adapter.js';
import { loadPrompts, recoverySet, splitDataset } from '../../src/dataset.js';
import { DEFAULT_HOLDOUT } from '../../src/rescale.js';
import { load } from '../../src/model.js';
import { ones } from '../../src/theta.js';
import { demoModel, root } from '../helpers.js';

const examplesDist = join(root, 'examples', 'dist');
const work = mkdtempSync(join(tmpdir(), 'hs-examples-'));

/** Runs a compiled example in `cwd`; returns its stdout (a non-zero exit fails with its stderr). */
function runExample(name: string, args: string[] = [], cwd = work): string {
  return execFileSync(process.execPath, [join(examplesDist, `${name}.js`), ...args], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** The numbers after `label` on the line that contains it. */
function numbersAfter(out: string, label: string): number[] {
  const line = out.split('\n').find((l) => l.includes(label));
  if (!line) throw new Error(`no line with "${label}" in:\n${out}`);
  return [...line.slice(line.indexOf(label) + label.length).matchAll(/-?\d+(?:\.\d+)?(?:e[-+]?\d+)?/g)].map((m) => Number(m[0]));
}

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'examples')], {
    cwd: root,
    stdio: 'inherit',
  });
});

describe('examples/select-and-export', () => {
  it('selects, rescales, exports both formats and reads the adapter back', async () => {
    const out = runExample('select-and-export', ['out']);
    expect(out).toMatch(/^loaded LlamaForCausalLM: 5 layers, 260032 parameters, on cpu$/m);
    expect(out).toMatch(/^recovery set: 64 samples \(48 train, 16 held out\)$/m);
    const skipped = numbersAfter(out, 'selected: skip attention of layers');
    expect(skipped).toHaveLength(2);
    const [base, noScale, rescaled] = numbersAfter(out, 'held-out loss: base');
    expect(noScale).toBeGreaterThan(base);
    expect(rescaled).toBeLessThan(noScale);
    expect(out).toMatch(/adapter read back: skip [\d, ]+, theta identical$/m);

    const dir = join(work, 'out');
    expect(existsSync(join(dir, 'scales', 'adapter.safetensors'))).toBe(true);
    expect(existsSync(join(dir, 'hf', 'model.safetensors'))).toBe(true);
    // Independently: the folded checkpoint, run plainly, gives the logits of the base
    // model run with the adapter's skip list and theta.
    const baseModel = await load(demoModel, { device: 'cpu' });
    const folded = await load(join(dir, 'hf'), { device: 'cpu' });
    try {
      const adapter = loadAdapter(baseModel, join(dir, 'scales'));
      expect([...adapter.skipped].sort()).toEqual([...skipped].sort());
      const tokens = baseModel.tokenizer.encode('Once upon a time, a little cat found a red ball.', { addSpecialTokens: true });
      const want = await baseModel.logits(tokens, { theta: adapter.theta, skip: adapter.skipped });
      const got = await folded.logits(tokens);
      let maxDiff = 0;
      let scale = 0;
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      expect(maxDiff).toBeLessThan(1e-3 * scale);
    } finally {
      baseModel.dispose();
      folded.dispose();
    }
  });
});

describe('examples/custom-strategy', () => {
  it('runs a user strategy through selectBlocks, with scores that are the skipped-model loss', async () => {
    const out = runExample('custom-strategy');
    expect(out).toMatch(/^recovery set: 24 samples$/m);
    expect(out).toMatch(/^skip-loss: skipped \d, \d; /m);
    expect(out).toMatch(/^iterative-greedy: skipped \d, \d; /m);
    const first = numbersAfter(out, 'skip-loss step 1: skip layer');
    const [layer, score] = first;

    // Recompute that step-1 score: the loss of the original model with `layer` skipped,
    // over the same recovery set, in one engine call.
    const model = await load(demoModel, { device: 'cpu' });
    try {
      const prompts = await loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'), { limit: 24 });
      const all = await recoverySet(model, prompts, { maxNewTokens: 48, stop: [1, 2], batchSize: 12 });
      // A strategy ranks on the training part: selectBlocks holds out 20% (seed 0) by default.
      const data = splitDataset(all, { fraction: DEFAULT_HOLDOUT, seed: 0 }).train;
      const theta = ones(model.config.numLayers);
      theta.bAtt[layer] = 0;
      const { loss } = await model.loss(data, theta, { skip: [layer] });
      expect(loss).toBeCloseTo(score, 2);
      // And it is the lowest of the five: the strategy's ranking picked the minimum.
      for (let l = 0; l < model.config.numLayers; l++) {
        if (l === layer) continue;
        const t = ones(model.config.numLayers);
        t.bAtt[l] = 0;
        expect((await model.loss(data, t, { skip: [l] })).loss).toBeGreaterThanOrEqual(loss);
      }
    } finally {
      model.dispose();
    }
  });
});

describe('examples/pipeline-loop', () => {
  it('trains theta with its own optimiser; a stopped and resumed run equals an uninterrupted one', () => {
    const straight = runExample('pipeline-loop', ['straight']);
    expect(straight).toMatch(/^generated 32 samples into /m);
    expect(straight).toMatch(/^epoch 4\/4: mean loss\/token /m);
    const [before, after] = numbersAfter(straight, 'held-out loss/token at theta = ones');
    expect(after).toBeLessThan(before);
    const theta = JSON.parse(readFileSync(join(work, 'straight', 'theta.json'), 'utf8')) as Record<string, number[]>;
    expect(theta.bAtt[2]).toBe(0);
    expect(theta.bAtt[4]).toBe(0);
    expect(theta.sMlp.some((x) => x !== 1)).toBe(true);

    cpSync(join(work, 'straight', 'data.jsonl'), join(work, 'resumed', 'data.jsonl'));
    const stopped = runExample('pipeline-loop', ['resumed', '--stop-after', '5']);
    expect(stopped).toMatch(/^stopped at step 5 of 12 \(--stop-after 5\); checkpoint saved/m);
    expect(existsSync(join(work, 'resumed', 'checkpoint.json'))).toBe(true);
    expect(existsSync(join(work, 'resumed', 'theta.json'))).toBe(false);
    const resumed = runExample('pipeline-loop', ['resumed']);
    expect(resumed).toMatch(/^loaded 32 samples from /m);
    expect(resumed).toMatch(/^resumed from .*checkpoint\.json at step 5$/m);
    expect(readFileSync(join(work, 'resumed', 'theta.json'), 'utf8')).toBe(readFileSync(join(work, 'straight', 'theta.json'), 'utf8'));
    expect(existsSync(join(work, 'resumed', 'checkpoint.json'))).toBe(false);
  });
});

describe('examples/compare-strategies', () => {
  it('writes the comparison table and the figures', () => {
    const out = runExample('compare-strategies', ['cmp']);
    const names = ['iterative-greedy', 'full-greedy', 'similarity-attn', 'block-influence', 'random'];
    const md = readFileSync(join(work, 'cmp', 'strategies.md'), 'utf8');
    const rows = md.split('\n').filter((l) => names.some((n) => l.startsWith(`| ${n} |`)));
    expect(rows).toHaveLength(names.length);
    const parsed = rows.map((r) => r.split('|').map((c) => c.trim()).slice(1, -1));
    for (const [name, skipped, train, heldOut] of parsed) {
      expect(names).toContain(name);
      expect(skipped.split(', ')).toHaveLength(2);
      expect(Number(train)).toBeGreaterThan(0);
      expect(Number(heldOut)).toBeGreaterThan(0);
    }
    // One-shot strategies that skip the same layers run the same rescale from the same
    // start, so their losses must agree exactly.
    const oneShot = parsed.filter(([name]) => name !== 'iterative-greedy' && name !== 'random');
    for (const a of oneShot)
      for (const b of oneShot) if (a[1] === b[1]) expect([a[2], a[3]]).toEqual([b[2], b[3]]);
    const bars = readFileSync(join(work, 'cmp', 'strategies.svg'), 'utf8');
    expect(bars).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^]*<\/svg>\s*$/m);
    expect(bars.match(/class="bar"/g)).toHaveLength(names.length);
    const [elbowK] = numbersAfter(out, 'elbow of the greedy removal curve: k =');
    expect(readFileSync(join(work, 'cmp', 'removal-curve.svg'), 'utf8')).toContain(`elbow: k = ${elbowK}`);
  }, 600_000); // five selections with the library's defaults: about a minute and a half on 2 cores
});
