// Probes as independent jobs (select --plan / probe --plan) and worker processes: the
// picks, theta and every score must be those of the in-process run, bit for bit, however
// the jobs are run: as separate processes in shuffled order, one twice, one killed
// mid-probe and rerun; and every bad input is a typed error naming the job, with nothing merged.
import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/batching.js';
import { loadPrompts, recoverySet, saveDataset } from '../../src/dataset.js';
import { load } from '../../src/model.js';
import { type PlanState, planSelection, readPlan, resultFile, runPlanJob } from '../../src/plan.js';
import { type Selection, type SelectOptions, selectBlocks, selectionToJSON } from '../../src/select.js';
import type { Model, Sample } from '../../src/types.js';
import { demoModel, expectCode, fixtureDir, root } from '../helpers.js';
import { type CliResult, jsonResult, startCli } from './cli-run.js';

const OPTS = { count: 2, probeSteps: 4, batchSize: 8, rescaleEpochs: 1, probing: 'halving' } satisfies SelectOptions;
const CLI_OPTS = ['--count', '2', '--probe-steps', '4', '--batch-size', '8', '--rescale-epochs', '1', '--probing', 'halving', '--threads', '1', '--device', 'cpu'];

let dir: string;
let model: Model;
let data: Sample[];
let dataFile: string;
let reference: Selection;

const lastJson = (r: CliResult) => {
  if (r.code !== 0) throw new Error(`exit ${r.code} ${r.signal}: ${r.stderr}`);
  return jsonResult<Record<string, any>>(r);
};
const cli = (args: string[]) => startCli(root, args).done;
const comparable = (s: Selection | Record<string, any>) => {
  const j = (s.theta?.bAtt instanceof Float32Array ? selectionToJSON(s as Selection) : s) as ReturnType<typeof selectionToJSON>;
  return { skipped: j.skipped, theta: j.theta, trace: j.trace, losses: j.losses, probeOptimizerSteps: j.probeOptimizerSteps, probeTokens: j.probeTokens };
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hopscotch-plan-'));
  model = await load(demoModel, { device: 'cpu', threads: 1 });
  const prompts = await loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'), { limit: 16 });
  data = await recoverySet(model, prompts, { maxNewTokens: 16, stop: [], batchSize: 16 });
  dataFile = join(dir, 'data.jsonl');
  await saveDataset(dataFile, data, { fingerprint: model.fingerprint });
  reference = await selectBlocks(model, data, OPTS);
  expect(reference.skipped).toHaveLength(2);
  expect(reference.trace.some((e) => e.droppedAt !== undefined)).toBe(true);
}, 120_000);

afterAll(async () => {
  model?.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('select --plan / probe --plan', () => {
  it('gives the in-process selection bit for bit: jobs as processes, shuffled, one twice, one killed mid-probe', async () => {
    const plan = join(dir, 'plan-a');
    const rng = mulberry32(7);
    let killed = false;
    let twice = false;
    let rounds = 0;
    for (;;) {
      const state = lastJson(await cli(['select', '--model', demoModel, '--data', dataFile, ...CLI_OPTS, '--plan', plan, '--json']));
      if (state.state === 'done') {
        expect(comparable(state)).toEqual(comparable(reference));
        break;
      }
      expect(state.state).toBe('planned');
      expect(state.jobs).toBeGreaterThan(0);
      rounds++;
      const order = Array.from({ length: state.jobs }, (_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      if (!killed) {
        // Kill the first job once it has started probing; no result may appear.
        const victim = order[0];
        const run = startCli(root, ['probe', '--plan', plan, '--job', String(victim), '--threads', '1', '--device', 'cpu']);
        await new Promise<void>((resolve) => {
          const onData = (d: Buffer) => {
            if (String(d).includes('probe job')) {
              run.child.stderr!.off('data', onData);
              run.child.kill('SIGKILL');
              resolve();
            }
          };
          run.child.stderr!.on('data', onData);
        });
        const r = await run.done;
        expect(r.signal).toBe('SIGKILL');
        expect(existsSync(resultFile(plan, state.plan, victim))).toBe(false);
        killed = true;
      }
      for (const i of order) {
        const r = lastJson(await cli(['probe', '--plan', plan, '--job', String(i), '--threads', '1', '--device', 'cpu', '--json']));
        expect(r.state).toBe('done');
      }
      if (!twice) {
        const again = lastJson(await cli(['probe', '--plan', plan, '--job', String(order[0]), '--threads', '1', '--json']));
        expect(again.state).toBe('exists');
        twice = true;
      }
      // No temporary or lock file is left behind.
      const left = await readdir(join(plan, 'results', state.plan));
      expect(left.filter((f) => !/^job-\d+\.json$/.test(f))).toEqual([]);
    }
    expect(rounds).toBeGreaterThan(2); // halving: several rounds per step
  }, 300_000);

  it('takes the job index from SLURM_ARRAY_TASK_ID, then JOB_COMPLETION_INDEX', async () => {
    const { jobIndexFromEnv } = await import('../../src/plan.js');
    expect(jobIndexFromEnv(3, { SLURM_ARRAY_TASK_ID: '1' })).toBe(3);
    expect(jobIndexFromEnv(undefined, { SLURM_ARRAY_TASK_ID: '1', JOB_COMPLETION_INDEX: '2' })).toBe(1);
    expect(jobIndexFromEnv(undefined, { JOB_COMPLETION_INDEX: '2' })).toBe(2);
    await expectCode(() => jobIndexFromEnv(undefined, {}), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => jobIndexFromEnv(undefined, { SLURM_ARRAY_TASK_ID: 'x' }), 'HOPSCOTCH_ERR_ARGUMENT');
  });

  describe('bad input: a typed error naming the job, nothing merged', () => {
    let plan: string;
    let state: Extract<PlanState, { state: 'planned' }>;
    beforeAll(async () => {
      plan = join(dir, 'plan-bad');
      state = (await planSelection(model, data, plan, OPTS)) as typeof state;
      expect(state.state).toBe('planned');
      for (let i = 0; i < state.jobs; i++) await runPlanJob(model, plan, i);
    }, 120_000);

    const refusedMerge = async (code: string, pattern: RegExp) => {
      const before = await readFile(join(plan, 'selection.json'), 'utf8');
      const err = await planSelection(model, data, plan, OPTS).then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code).toBe(code);
      expect(err?.message).toMatch(pattern);
      expect(await readFile(join(plan, 'selection.json'), 'utf8')).toBe(before);
    };

    it('a corrupted result', async () => {
      const file = resultFile(plan, state.plan, 1);
      const good = await readFile(file, 'utf8');
      await writeFile(file, good.replace('"score":', '"score":"x",'));
      await refusedMerge('HOPSCOTCH_ERR_PLAN', /job 1/);
      await writeFile(file, good);
    });

    it('a truncated result', async () => {
      const file = resultFile(plan, state.plan, 2);
      const good = await readFile(file, 'utf8');
      await truncate(file, Math.floor(good.length / 2));
      await refusedMerge('HOPSCOTCH_ERR_PLAN', /job 2.*(corrupted|truncated)/);
      await writeFile(file, good);
    });

    it('a result from another plan or model', async () => {
      const file = resultFile(plan, state.plan, 0);
      const good = await readFile(file, 'utf8');
      await writeFile(file, good.replace(/"fingerprint":"[^"]*"/, '"fingerprint":"another-model"'));
      await refusedMerge('HOPSCOTCH_ERR_PLAN', /job 0.*fingerprint another-model/);
      await writeFile(file, good.replace(/"plan":"[^"]*"/, '"plan":"0123456789abcdef"'));
      await refusedMerge('HOPSCOTCH_ERR_PLAN', /job 0.*plan 0123456789abcdef/);
      await writeFile(file, good);
    });

    it('a missing job, and a job index outside the plan', async () => {
      const file = resultFile(plan, state.plan, 0);
      const good = await readFile(file, 'utf8');
      await rm(file);
      const again = await planSelection(model, data, plan, OPTS);
      expect(again).toMatchObject({ state: 'planned', missing: [0] });
      await writeFile(file, good);
      await expectCode(runPlanJob(model, plan, state.jobs), 'HOPSCOTCH_ERR_PLAN');
      await expect(runPlanJob(model, plan, state.jobs)).rejects.toThrow(new RegExp(`job ${state.jobs} does not exist`));
    });

    it('a plan from another model or data set', async () => {
      const other = await load(fixtureDir('llama-inert'), { device: 'cpu', threads: 1 });
      try {
        await expect(runPlanJob(other, plan, 0)).resolves.toMatchObject({ state: 'exists' }); // done jobs are not rerun
        await rm(resultFile(plan, state.plan, 0));
        await expectCode(runPlanJob(other, plan, 0), 'HOPSCOTCH_ERR_FINGERPRINT');
        await expect(runPlanJob(other, plan, 0)).rejects.toThrow(/job 0/);
        await runPlanJob(model, plan, 0);
      } finally {
        other.dispose();
      }
      await expectCode(planSelection(model, data.slice(1), plan, OPTS), 'HOPSCOTCH_ERR_CHECKPOINT');
    });

    it('two writers for one job', async () => {
      const p = await readPlan(plan);
      await rm(resultFile(plan, p.id, 1));
      const lock = join(plan, 'results', p.id, 'job-1.lock');
      const { hostname } = await import('node:os');
      await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname() })); // a live writer
      await expectCode(runPlanJob(model, plan, 1), 'HOPSCOTCH_ERR_PLAN');
      await expect(runPlanJob(model, plan, 1)).rejects.toThrow(/job 1 is already being run/);
      await writeFile(lock, JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname() })); // a dead one
      await expect(runPlanJob(model, plan, 1)).resolves.toMatchObject({ state: 'done' });
      expect(existsSync(lock)).toBe(false);
    });

    it('a missing plan', async () => {
      const empty = await mkdtemp(join(dir, 'empty-'));
      await expectCode(runPlanJob(model, empty, 0), 'HOPSCOTCH_ERR_PLAN');
    });
  });
});

describe('successive halving', () => {
  it("a survivor's score is its exhaustive probe's score bit for bit; the dropped rank after every survivor", async () => {
    const exhaustive = await selectBlocks(model, data, { ...OPTS, probing: 'exhaustive' });
    expect(reference.skipped).toEqual(exhaustive.skipped);
    let survivors = 0;
    for (const e of reference.trace) {
      const ex = exhaustive.trace.find((x) => x.step === e.step && x.candidate === e.candidate)!;
      if (e.droppedAt === undefined) {
        survivors++;
        expect(e.score).toBe(ex.score);
        expect(e.validation).toBe(ex.validation);
      } else expect(e.droppedAt).toBeLessThan(OPTS.probeSteps);
    }
    expect(survivors).toBeGreaterThanOrEqual(2); // at least the pick of each step ran the whole budget
    for (const [i, layer] of reference.skipped.entries())
      expect(reference.trace.find((e) => e.step === i + 1 && e.candidate === layer)!.droppedAt).toBeUndefined();
    expect(reference.probeTokens!).toBeLessThan(exhaustive.probeTokens!);
    expect(reference.probing).toEqual({ kind: 'halving', eta: 2, minFraction: 1 / 16 });
  }, 120_000);

  it('resumes from a checkpoint taken between the jobs of a round, bit for bit', async () => {
    const checkpoint = join(dir, 'halving-ckpt.json');
    for (const stopAfter of [2, 7]) {
      await rm(checkpoint, { force: true });
      const ac = new AbortController();
      let ends = 0;
      const first = await selectBlocks(model, data, {
        ...OPTS,
        checkpoint,
        signal: ac.signal,
        onProgress: (e) => {
          if (e.type === 'probe-end' && ++ends === stopAfter) ac.abort();
        },
      }).then(
        () => 'finished',
        (e: Error) => e.name,
      );
      expect(first).not.toBe('finished');
      const saved = JSON.parse(await readFile(checkpoint, 'utf8'));
      expect(saved.state.rounds?.flat().length ?? 0).toBeGreaterThan(0);
      const resumed = await selectBlocks(model, data, { ...OPTS, checkpoint });
      expect(comparable(resumed)).toEqual(comparable(reference));
    }
  }, 180_000);
});

describe('selectBlocks({ workers })', () => {
  it('gives the in-process selection bit for bit', async () => {
    const events: string[] = [];
    const sel = await selectBlocks(model, data, { ...OPTS, workers: 2, onProgress: (e) => events.push(e.type) });
    expect(comparable(sel)).toEqual(comparable(reference));
    expect(events).toContain('probe-round');
    expect(events).toContain('probe-end');
  }, 120_000);

  it('exhaustive probing in workers too', async () => {
    const opts = { ...OPTS, probing: 'exhaustive' as const };
    const one = await selectBlocks(model, data, opts);
    const two = await selectBlocks(model, data, { ...opts, workers: 3 });
    expect(comparable(two)).toEqual(comparable(one));
  }, 120_000);
});
