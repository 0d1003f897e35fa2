// The `hopscotch` command line, run as a user runs it: `node dist/cli/main.js ...`
// (`npm test` builds dist/ first). Selection on the llama-inert fixture, crash and
// Ctrl-C safety of checkpoints, argument errors, the demo, and the generated reference.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadPrompts, recoverySet, saveDataset } from '../../src/dataset.js';
import { inspect, load } from '../../src/model.js';
import type { Sample } from '../../src/types.js';
import { type CliResult, jsonResult, mainJs, startCli, waitFor } from './cli-run.js';
import { demoModel, fixtureDir, root } from '../helpers.js';

const inert = fixtureDir('llama-inert');
const work = mkdtempSync(join(tmpdir(), 'hs-cli-'));
const dataFile = join(work, 'inert.jsonl');

type Result = CliResult;
const start = (args: string[]) => startCli(work, args);

const cli = (args: string[]) => start(args).done;

const lastJson = (r: Result) => jsonResult(r);

/** The fixture's own greedy answers to 48 story openings (the tokenizer is the demo model's). */
async function fixtureData(): Promise<Sample[]> {
  const model = await load(inert, { device: 'cpu' });
  try {
    const prompts = (await loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'))).slice(0, 48);
    return await recoverySet(model, prompts, { maxNewTokens: 24, stop: [], batchSize: 16 });
  } finally {
    model.dispose();
  }
}

// Short probes and one-epoch rescales on all the data: the CLI's mechanics, quickly.
const selectArgs = ['select', '--model', inert, '--data', dataFile, '--count', '3', '--batch-size', '8', '--probe-steps', '6', '--rescale-epochs', '1', '--device', 'cpu', '--json'];

/** Completed units of work recorded in a checkpoint file: probes and rankings done, plus rescales. */
function checkpointProgress(file: string): number {
  try {
    const c = JSON.parse(readFileSync(file, 'utf8'));
    return c.state.trace.length + c.state.probes.length + c.state.losses.length;
  } catch {
    return -1;
  }
}

function expectSameSelection(a: Record<string, unknown>, b: Record<string, unknown>): void {
  expect(a.skipped).toEqual(b.skipped);
  expect(a.trace).toEqual(b.trace);
  expect(a.losses).toEqual(b.losses);
  const bits = (t: unknown) =>
    Object.fromEntries(Object.entries(t as Record<string, number[]>).map(([k, v]) => [k, Array.from(new Uint32Array(Float32Array.from(v).buffer))]));
  expect(bits(a.theta)).toEqual(bits(b.theta));
}

let reference: Record<string, unknown>;

beforeAll(async () => {
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: build the TypeScript first (npm run build:ts)`);
  const data = await fixtureData();
  expect(data).toHaveLength(48);
  await saveDataset(dataFile, data, { fingerprint: inspect(inert).fingerprint });
  const r = await cli(selectArgs);
  expect(r.code, r.stderr).toBe(0);
  reference = lastJson(r);
});

describe('hopscotch inspect', () => {
  it('--json prints the summary and the fingerprint load() computes', async () => {
    const r = await cli(['inspect', demoModel, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = lastJson(r) as { config: { numLayers: number; arch: string }; fingerprint: string };
    expect(j.config.arch).toBe('LlamaForCausalLM');
    expect(j.config.numLayers).toBe(5);
    const model = await load(demoModel, { device: 'cpu' });
    try {
      expect(j.fingerprint).toBe(model.fingerprint);
    } finally {
      model.dispose();
    }
  });
});

describe('hopscotch select', () => {
  it('--json on llama-inert skips the inert layer 2 first, and its probe scores the lowest', () => {
    const trace = reference.trace as { step: number; candidate: number; score: number }[];
    expect((reference.skipped as number[])[0]).toBe(2);
    expect(reference.skipped).toHaveLength(3);
    const step1 = trace.filter((e) => e.step === 1);
    expect(step1.map((e) => e.candidate)).toEqual([0, 1, 2, 3]);
    const best = Math.min(...step1.map((e) => e.score));
    expect(step1.find((e) => e.candidate === 2)!.score).toBe(best);
    const theta = reference.theta as { bAtt: number[] };
    for (const l of reference.skipped as number[]) expect(theta.bAtt[l]).toBe(0);
    expect(reference.stoppedBy).toBe('count');
  });

  it('killed with SIGKILL at random points, then resumed, ends with the uninterrupted selection', async () => {
    // Seeded choice of kill points (units: completed probes, rankings and rescales; the run has 4+3+2 probes,
    // 3 rankings and 3 rescales = 15).
    let seed = 0x5eed;
    const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    for (let run = 0; run < 3; run++) {
      const ckpt = join(work, `kill-${run}.json`);
      const target = 1 + Math.floor(rand() * 12);
      const { child, done } = start([...selectArgs, '--checkpoint', ckpt]);
      await waitFor(() => checkpointProgress(ckpt) >= target || child.exitCode !== null, `checkpoint progress ${target}`);
      child.kill('SIGKILL');
      const killed = await done;
      expect(killed.signal, `run ${run}: the process finished before the kill`).toBe('SIGKILL');
      const state = JSON.parse(readFileSync(ckpt, 'utf8')).state;
      expect(state.stoppedBy).toBeNull();
      const resumed = await cli([...selectArgs, '--checkpoint', ckpt]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expectSameSelection(lastJson(resumed), reference);
    }
  });

  it('SIGINT stops with exit status 130 and a valid checkpoint that resumes to the same selection', async () => {
    const ckpt = join(work, 'sigint.json');
    const { child, done } = start([...selectArgs, '--checkpoint', ckpt]);
    await waitFor(() => checkpointProgress(ckpt) >= 2, 'two completed probes');
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/interrupted/);
    expect(r.stdout).toBe('');
    const c = JSON.parse(readFileSync(ckpt, 'utf8'));
    expect(c.format).toBe('hopscotch-selection-checkpoint');
    expect(c.state.stoppedBy).toBeNull();
    const resumed = await cli([...selectArgs, '--checkpoint', ckpt]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expectSameSelection(lastJson(resumed), reference);
  });
});

describe('argument errors', () => {
  it.each([
    [['select', '--model', inert, '--data', dataFile, '--count', '0'], /--count must be an integer >= 1, got '0'/],
    [['select', '--model', inert, '--data', dataFile, '--count', '2', '--probe-lr', 'fast'], /--probe-lr must be a positive number/],
    [['select', '--model', inert, '--data', dataFile, '--count', '2', '--bogus'], /unknown option '--bogus'/],
    [['select', '--model', inert, '--count', '2'], /--prompts <file> or --data <file>/],
    [['select', '--model', inert, '--data', dataFile, '--prompts', dataFile, '--count', '2'], /cannot be used with/],
    [['rescale', '--model', inert, '--data', dataFile, '--skip', '1,x'], /--skip must be a comma-separated list/],
    [['select', '--model', inert, '--data', dataFile, '--count', '2', '--strategy', 'best'], /Allowed choices/],
    [['run', '--model', inert, '--data', dataFile, '--skip', '2', '--out', join(work, 'never')], /unknown option '--skip'/],
    [['export', '--model', inert, '--fit', dataFile, '--format', 'hf', '--out', join(work, 'never'), '--max-shard-bytes', 'lots'], /--max-shard-bytes must be a positive whole number/],
    [['export', '--model', inert, '--fit', dataFile, '--format', 'hf', '--out', join(work, 'never'), '--device', 'gpu'], /Allowed choices are auto, cpu, cuda/],
    [['eval', '--model', inert, '--mmd'], /unknown option '--mmd'/],
    [['eval', '--model', inert, '--tasks', 'loss,bleu'], /--tasks: unknown task 'bleu'/],
    [['eval', '--model', inert, '--tasks', 'svd', '--text', dataFile], /--text gives the text task its file/],
    [['bench', '--model', inert, '--batch-sizes', '1,0'], /--batch-sizes must be a comma-separated list of integers >= 1/],
  ])('%j exits with 1 and HOPSCOTCH_ERR_ARGUMENT', async (args, message) => {
    const r = await cli(args as string[]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_ARGUMENT: /);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stdout).toBe('');
  });

  it('a data file made for another model is refused with its own code', async () => {
    const r = await cli(['select', '--model', fixtureDir('llama-gqa'), '--data', dataFile, '--count', '1', '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_FINGERPRINT: /);
  });
});

describe('hopscotch rescale', () => {
  it('--json prints a fit whose training loss went down, starting from --theta', async () => {
    const sel = join(work, 'sel.json');
    const r1 = await cli([...selectArgs.filter((a) => a !== '--json'), '--save', sel]);
    expect(r1.code, r1.stderr).toBe(0);
    const r = await cli(['rescale', '--model', inert, '--data', dataFile, '--skip', '2,0', '--epochs', '3', '--batch-size', '8', '--device', 'cpu', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const fit = lastJson(r) as { skipped: number[]; epochLosses: number[]; theta: { bAtt: number[] }; steps: number };
    expect(fit.skipped).toEqual([2, 0]);
    expect(fit.steps).toBe(18);
    expect(fit.epochLosses[2]).toBeLessThan(fit.epochLosses[0]);
    expect(fit.theta.bAtt[0]).toBe(0);
    expect(fit.theta.bAtt[2]).toBe(0);
    // --theta brings its skip list; a --skip that would revive a skipped layer is refused.
    const from = await cli(['rescale', '--model', inert, '--data', dataFile, '--theta', sel, '--epochs', '1', '--device', 'cpu', '--json']);
    expect(from.code, from.stderr).toBe(0);
    const fromFit = lastJson(from) as { skipped: number[]; fingerprint: string; settings: { thetaFrom: string } };
    expect(fromFit.settings.thetaFrom).toBe(sel);
    expect(fromFit.skipped).toEqual(JSON.parse(readFileSync(sel, 'utf8')).skipped);
    expect(fromFit.fingerprint).toBe(inspect(inert).fingerprint);
    const contradicts = await cli(['rescale', '--model', inert, '--data', dataFile, '--skip', '2', '--theta', sel, '--epochs', '1', '--device', 'cpu']);
    expect(contradicts.code).toBe(1);
    expect(contradicts.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_SKIP: --skip 2 contradicts .*sel\.json: it skipped layers/);
  });

  it('converges by default on a held-out slice and reports the curve and why it stopped', async () => {
    const r = await cli(['rescale', '--model', inert, '--data', dataFile, '--skip', '2', '--batch-size', '8', '--max-epochs', '6', '--patience', '2', '--device', 'cpu', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const fit = lastJson(r) as { validationCurve: number[]; validationLoss: number; stoppedBy: string; trainSamples: number; validationSamples: number; epochLosses: number[] };
    expect(fit.trainSamples + fit.validationSamples).toBe(48);
    expect(fit.validationSamples).toBe(10); // round(0.2 * 48)
    expect(fit.validationCurve).toHaveLength(fit.epochLosses.length + 1);
    expect(['patience', 'maxEpochs']).toContain(fit.stoppedBy);
    expect(fit.validationLoss).toBe(Math.min(...fit.validationCurve));
  });
});

describe('mistakes are caught before the expensive work', () => {
  const fixturePrompts = join(root, 'data', 'prompts', 'story-openings.jsonl');
  it('run --out EXISTING fails before loading the model or generating anything', async () => {
    const out = join(work, 'exists');
    mkdirSync(out, { recursive: true });
    const r = await cli(['run', '--model', demoModel, '--prompts', fixturePrompts, '--count', '1', '--out', out, '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_EXISTS: /);
    expect(r.stderr).not.toMatch(/generat|data {7}/i);
  });

  it('--force never deletes a regular file', async () => {
    const file = join(work, 'a-file');
    writeFileSync(file, 'keep me');
    const r = await cli(['run', '--model', demoModel, '--prompts', fixturePrompts, '-k', '1', '--out', file, '--force', '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HOPSCOTCH_ERR_EXISTS: .* is not a folder/);
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('a count larger than the layers left is refused before the recovery set is generated', async () => {
    const r = await cli(['select', '--model', demoModel, '--prompts', fixturePrompts, '--count', '9', '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HOPSCOTCH_ERR_ARGUMENT: count must be an integer in \[1, 5\]/);
    expect(r.stderr).not.toMatch(/generat/i);
  });

  it('export refuses a fit made for another model', async () => {
    const sel = join(work, 'sel-for-export.json');
    const r1 = await cli(['select', '--model', inert, '--data', dataFile, '--count', '1', '--probe-steps', '2', '--rescale-epochs', '1', '--device', 'cpu', '--save', sel]);
    expect(r1.code, r1.stderr).toBe(0);
    const r = await cli(['export', '--model', fixtureDir('llama-gqa'), '--fit', sel, '--format', 'scales', '--out', join(work, 'wrong-model'), '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_FINGERPRINT: /);
    expect(existsSync(join(work, 'wrong-model'))).toBe(false);
  });
});

describe('hopscotch run', () => {
  it('answers prompts, selects, rescales and exports a folded checkpoint that loads back', async () => {
    const prompts = join(work, 'run-prompts.jsonl');
    writeFileSync(
      prompts,
      ['Once upon a time, there was a little dog', 'The sun was hot and Tim', 'Lily had a red ball.', 'One day, a big bird']
        .map((p) => JSON.stringify({ prompt: p }))
        .join('\n') + '\n',
    );
    const out = join(work, 'run-out');
    const fitFile = join(work, 'run-fit.json');
    const r = await cli([
      'run', '--model', demoModel, '--prompts', prompts, '--max-new-tokens', '24', '--stop', '1,2',
      '--count', '1', '--batch-size', '4', '--probe-steps', '4', '--rescale-epochs', '1', '--max-epochs', '4',
      '--out', out, '--format', 'hf', '--save-fit', fitFile, '--device', 'cpu', '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const result = lastJson(r) as { skipped?: number[]; export?: { out: string; maxAbsLogitDiff?: number } };
    const fit = JSON.parse(readFileSync(fitFile, 'utf8')) as { skipped: number[]; theta: Record<'bAtt' | 'sAtt' | 'bMlp' | 'sMlp', number[]> };
    expect(fit.skipped).toHaveLength(1);
    expect(fit.theta.bAtt[fit.skipped[0]]).toBe(0);
    expect(JSON.stringify(result)).toContain(out);
    // The folded checkpoint is a plain model: run with theta ones it matches the scaled base model.
    const base = await load(demoModel, { device: 'cpu' });
    const folded = await load(out, { device: 'cpu' });
    const tokens = base.tokenizer.encode('Once upon a time, there was a little girl named Lily.');
    const theta = {
      bAtt: Float32Array.from(fit.theta.bAtt), sAtt: Float32Array.from(fit.theta.sAtt),
      bMlp: Float32Array.from(fit.theta.bMlp), sMlp: Float32Array.from(fit.theta.sMlp),
    };
    const want = await base.logits(tokens, { theta, skip: fit.skipped });
    const got = await folded.logits(tokens);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) {
      diff = Math.max(diff, Math.abs(got[i] - want[i]));
      scale = Math.max(scale, Math.abs(want[i]));
    }
    expect(diff).toBeLessThanOrEqual(1e-3 * scale);
    base.dispose();
    folded.dispose();
  });
});

describe('hopscotch demo', () => {
  it('--json runs the pipeline on the bundled model and writes every file it reports', async () => {
    const out = join(work, 'demo');
    const r = await cli(['demo', '--out', out, '--count', '1', '--limit', '12', '--max-new-tokens', '24', '--device', 'cpu', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = lastJson(r) as {
      skipped: number[];
      samples: { train: number; heldOut: number };
      heldOutLoss: { base: number; noScale: number; rescaled: number };
      files: Record<string, string | string[]>;
      curve: { step: number }[];
    };
    expect(j.skipped).toHaveLength(1);
    expect(j.samples).toMatchObject({ train: 9, heldOut: 3 });
    expect(j.curve.map((c) => c.step)).toEqual([0, 1]);
    expect(j.heldOutLoss.noScale).toBeGreaterThan(j.heldOutLoss.base);
    for (const key of ['train', 'heldOut', 'selection', 'fit', 'scales', 'hf']) {
      const f = j.files[key] as string;
      expect(existsSync(f), f).toBe(true);
    }
    for (const f of j.files.hfFiles as string[]) expect(statSync(join(j.files.hf as string, f)).size).toBeGreaterThan(0);
    const selection = JSON.parse(readFileSync(j.files.selection as string, 'utf8'));
    expect(selection.skipped).toEqual(j.skipped);
    const again = await cli(['demo', '--out', out, '--count', '1', '--limit', '12', '--max-new-tokens', '24', '--device', 'cpu']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/HOPSCOTCH_ERR_EXISTS/);
  });
});

describe('docs/cli.md', () => {
  it('equals a fresh generation from the parser', async () => {
    const script = pathToFileURL(join(root, 'scripts', 'gen-cli-docs.mjs')).href;
    const { generateCliDocs } = (await import(script)) as { generateCliDocs: (main: string) => string };
    expect(readFileSync(join(root, 'docs', 'cli.md'), 'utf8')).toBe(generateCliDocs(mainJs));
  });
});
