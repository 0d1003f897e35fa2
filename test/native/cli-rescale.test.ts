// `hopscotch rescale --checkpoint`, run as a user runs it (`node dist/cli/main.js ...`;
// `npm test` builds dist/ first) on the bundled stories260k model: killed with SIGKILL
// at seeded random steps and resumed, interrupted with Ctrl-C and resumed, the fit must
// equal an uninterrupted run bit for bit, and the checkpoint file must parse at every
// moment it is read while the run writes it.
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadPrompts, recoverySet, saveDataset } from '../../src/dataset.js';
import { load } from '../../src/model.js';
import { type CliResult, jsonResult, mainJs, startCli, waitFor as waitForCli } from './cli-run.js';
import { demoModel, root } from '../helpers.js';

const work = mkdtempSync(join(tmpdir(), 'hs-cli-rescale-'));
const dataFile = join(work, 'stories.jsonl');

type Result = CliResult;
const start = (args: string[]) => startCli(work, args);

const cli = (args: string[]) => start(args).done;

interface FitJson {
  skipped: number[];
  theta: Record<string, number[]>;
  losses: number[];
  epochLosses: number[];
  steps: number;
}

const lastJson = (r: Result) => jsonResult<FitJson>(r);

// 48 samples in batches of 4 for 4 epochs: 48 optimizer steps.
const STEPS = 48;
const rescaleArgs = [
  'rescale',
  '--model',
  demoModel,
  '--data',
  dataFile,
  '--skip',
  '1,3',
  '--epochs',
  '4',
  '--batch-size',
  '4',
  '--lr',
  '0.01',
  '--seed',
  '3',
  '--device',
  'cpu',
  '--json',
];

/** Float32 bit patterns of a theta JSON, per vector. */
const bits = (t: Record<string, number[]>) =>
  Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Array.from(new Uint32Array(Float32Array.from(v).buffer))]));

function expectSameFit(a: FitJson, b: FitJson): void {
  expect(a.skipped).toEqual(b.skipped);
  expect(a.steps).toBe(b.steps);
  expect(a.losses).toEqual(b.losses);
  expect(a.epochLosses).toEqual(b.epochLosses);
  expect(bits(a.theta)).toEqual(bits(b.theta));
}

/**
 * Reads a checkpoint that a running process may be replacing: null while it does not
 * exist yet; a file that exists but does not parse counts as torn.
 */
function readWhileRunning(file: string, torn: { count: number }): { state: { losses: number[]; stoppedBy: string | null } } | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    torn.count += 1;
    return null;
  }
}

const waitFor = (cond: () => boolean, what: string) => waitForCli(cond, what, 60_000, 2);

let reference: FitJson;

beforeAll(async () => {
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: build the TypeScript first (npm run build:ts)`);
  const model = await load(demoModel, { device: 'cpu' });
  try {
    const prompts = (await loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'))).slice(0, 48);
    const data = await recoverySet(model, prompts, { maxNewTokens: 24, stop: [], batchSize: 16 });
    expect(data).toHaveLength(48);
    await saveDataset(dataFile, data, { fingerprint: model.fingerprint });
  } finally {
    model.dispose();
  }
  const r = await cli(rescaleArgs);
  expect(r.code, r.stderr).toBe(0);
  reference = lastJson(r);
  expect(reference.steps).toBe(STEPS);
  expect(reference.epochLosses[3]).toBeLessThan(reference.epochLosses[0]);
});

describe('hopscotch rescale --checkpoint', () => {
  it('gives the same fit as a run without it, and a finished checkpoint gives it again', async () => {
    const ckpt = join(work, 'plain.json');
    const r = await cli([...rescaleArgs, '--checkpoint', ckpt]);
    expect(r.code, r.stderr).toBe(0);
    expectSameFit(lastJson(r), reference);
    const c = JSON.parse(readFileSync(ckpt, 'utf8'));
    expect(c.format).toBe('hopscotch-rescale-checkpoint');
    expect(c.state.stoppedBy).toBe('epochs');
    expect(c.state.losses).toEqual(reference.losses);
    const again = await cli([...rescaleArgs, '--checkpoint', ckpt]);
    expect(again.code, again.stderr).toBe(0);
    expectSameFit(lastJson(again), reference);
  });

  it('killed with SIGKILL at random steps, then resumed, ends with the uninterrupted fit', async () => {
    // Seeded choice of kill points: after `target` recorded steps (of 48), plus a delay of
    // up to 20 ms so that the kill lands anywhere in a step or in a checkpoint write.
    let seed = 0x5eed;
    const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const torn = { count: 0 };
    let reads = 0;
    for (let run = 0; run < 3; run++) {
      const ckpt = join(work, `kill-${run}.json`);
      const target = 1 + Math.floor(rand() * (STEPS - 12));
      const { child, done } = start([...rescaleArgs, '--checkpoint', ckpt]);
      await waitFor(() => {
        reads += 1;
        const c = readWhileRunning(ckpt, torn);
        return (c !== null && c.state.losses.length >= target) || child.exitCode !== null;
      }, `${target} steps in the checkpoint`);
      await new Promise((r) => setTimeout(r, rand() * 20));
      child.kill('SIGKILL');
      const killed = await done;
      expect(killed.signal, `run ${run}: the process finished before the kill`).toBe('SIGKILL');
      const state = JSON.parse(readFileSync(ckpt, 'utf8')).state as { losses: number[]; stoppedBy: string | null };
      expect(state.stoppedBy).toBeNull();
      expect(state.losses.length).toBeGreaterThanOrEqual(target);
      expect(state.losses.length).toBeLessThan(STEPS);
      // What was recorded is the start of the uninterrupted run.
      expect(state.losses).toEqual(reference.losses.slice(0, state.losses.length));
      const resumed = await cli([...rescaleArgs, '--checkpoint', ckpt]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expectSameFit(lastJson(resumed), reference);
      // A temporary file that the kill left behind is removed by the resumed run.
      expect(readdirSync(work).filter((f) => f.startsWith(`.kill-${run}.json.`))).toEqual([]);
    }
    expect(torn.count, `${torn.count} of ${reads} reads found a partial checkpoint`).toBe(0);
  });

  it('SIGINT stops with exit status 130 and a valid checkpoint that resumes to the same fit', async () => {
    const ckpt = join(work, 'sigint.json');
    const torn = { count: 0 };
    const { child, done } = start([...rescaleArgs, '--checkpoint', ckpt]);
    await waitFor(() => (readWhileRunning(ckpt, torn)?.state.losses.length ?? 0) >= 5 || child.exitCode !== null, 'five steps');
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/interrupted/);
    expect(r.stdout).toBe('');
    const c = JSON.parse(readFileSync(ckpt, 'utf8'));
    expect(c.format).toBe('hopscotch-rescale-checkpoint');
    expect(c.state.stoppedBy).toBeNull();
    expect(c.state.losses).toEqual(reference.losses.slice(0, c.state.losses.length));
    const resumed = await cli([...rescaleArgs, '--checkpoint', ckpt]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expectSameFit(lastJson(resumed), reference);
  });

  it('refuses a checkpoint of other options or a corrupt one with HOPSCOTCH_ERR_CHECKPOINT', async () => {
    const ckpt = join(work, 'other.json');
    const first = await cli([...rescaleArgs, '--checkpoint', ckpt]);
    expect(first.code, first.stderr).toBe(0);
    const otherLr = rescaleArgs.map((a, i) => (rescaleArgs[i - 1] === '--lr' ? '0.02' : a));
    const r = await cli([...otherLr, '--checkpoint', ckpt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_CHECKPOINT: .*option lr was 0.01, now 0.02/m);
    expect(r.stdout).toBe('');
    const text = readFileSync(ckpt, 'utf8');
    writeFileSync(ckpt, text.slice(0, Math.floor(text.length / 2)));
    const torn = await cli([...rescaleArgs, '--checkpoint', ckpt]);
    expect(torn.code).toBe(1);
    expect(torn.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_CHECKPOINT: .*not valid JSON/m);
  });
});
