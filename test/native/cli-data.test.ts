// `hopscotch data`, run as a user runs it (`node dist/cli/main.js data ...`; `npm test`
// builds dist/ first): the recovery set alone, a seeded disjoint validation file, output
// checks before any generation, and the warning when most answers are cut.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { datasetDigest, readDataset } from '../../src/dataset.js';
import { inspect } from '../../src/model.js';
import { jsonResult, startCli } from './cli-run.js';
import { demoModel, fixtureDir } from '../helpers.js';

const work = mkdtempSync(join(tmpdir(), 'hs-cli-data-'));
const cli = (args: string[]) => startCli(work, args).done;
const model = fixtureDir('llama-eos-list');

const prompts = join(work, 'prompts.jsonl');
writeFileSync(
  prompts,
  Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: `Once upon a time, a child number ${i} saw a dog` })).join('\n') + '\n',
);


const key = (s: { prompt: number[] }) => s.prompt.join(',');

describe('hopscotch data', () => {
  it('--holdout writes a training file and a disjoint, seeded validation file', async () => {
    const out = join(work, 'set.jsonl');
    const base = ['data', '--model', model, '--prompts', prompts, '--out', out, '--max-new-tokens', '32', '--device', 'cpu'];
    const r = await cli([...base, '--holdout', '0.25', '--seed', '3', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = jsonResult(r);
    expect(j).toMatchObject({ out, validation: join(work, 'set.val.jsonl'), samples: 9, validationSamples: 3, prompts: 12 });
    const train = await readDataset(out, { fingerprint: inspect(model).fingerprint });
    const val = await readDataset(join(work, 'set.val.jsonl'), { fingerprint: inspect(model).fingerprint });
    expect(train.samples).toHaveLength(9);
    expect(val.samples).toHaveLength(3);
    const trainKeys = new Set(train.samples.map(key));
    expect(val.samples.filter((s) => trainKeys.has(key(s)))).toEqual([]);
    expect(train.header).toMatchObject({ version: 2, split: { role: 'train', fraction: 0.25, seed: 3, of: 12 } });
    expect(val.header).toMatchObject({ version: 2, split: { role: 'validation', fraction: 0.25, seed: 3, of: 12 } });
    // The model's stop ids (config.json's eos and generation_config.json's list) end the answers.
    expect(j.stop).toEqual([2, 15, 255]);
    for (const s of [...train.samples, ...val.samples])
      if (!s.truncated) expect([2, 15, 255]).toContain(s.response.at(-1));

    // Same seed, same files; another seed, another validation set. No temporary files stay.
    const again = await cli([...base, '--holdout', '0.25', '--seed', '3', '--force']);
    expect(again.code, again.stderr).toBe(0);
    expect((await readDataset(join(work, 'set.val.jsonl'))).header.digest).toBe(datasetDigest(val.samples));
    const other = await cli([...base, '--holdout', '0.25', '--seed', '4', '--force', '--val-out', join(work, 'other.jsonl')]);
    expect(other.code, other.stderr).toBe(0);
    const otherVal = (await readDataset(join(work, 'other.jsonl'))).samples;
    expect(otherVal.map(key).sort()).not.toEqual(val.samples.map(key).sort());
    expect(readdirSync(work).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses an existing --out without --force in under a second, before loading the model', async () => {
    const out = join(work, 'exists.jsonl');
    writeFileSync(out, 'keep me\n');
    // Against the start-up time of the CLI itself (`--help` loads every module), so that a
    // busy machine does not fail the test, but answering the 12 prompts with up to 256
    // tokens each on the bundled model first (well over a second) would.
    let t0 = Date.now();
    await cli(['data', '--help']);
    const startup = Date.now() - t0;
    t0 = Date.now();
    const r = await cli(['data', '--model', demoModel, '--prompts', prompts, '--out', out, '--device', 'cpu']);
    const ms = Date.now() - t0;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_EXISTS: --out .*exists.jsonl exists \(pass --force/);
    expect(ms - startup).toBeLessThan(1000);
    // The order, independent of timing: with a model folder that does not exist, the
    // output is still what is refused.
    const first = await cli(['data', '--model', join(work, 'no-model'), '--prompts', prompts, '--out', out]);
    expect(first.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_EXISTS: --out /);
    expect(readFileSync(out, 'utf8')).toBe('keep me\n');
    // The validation file is checked as well.
    const val = join(work, 'taken.val.jsonl');
    writeFileSync(val, 'keep me too\n');
    const v = await cli(['data', '--model', model, '--prompts', prompts, '--out', join(work, 'taken.jsonl'), '--holdout', '0.2']);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/HOPSCOTCH_ERR_EXISTS: --val-out .*taken\.val\.jsonl exists/);
    expect(readFileSync(val, 'utf8')).toBe('keep me too\n');
  });

  it('--force never replaces a folder or the prompts file', async () => {
    const dir = join(work, 'a-folder');
    mkdirSync(dir);
    writeFileSync(join(dir, 'inside.txt'), 'x');
    const r = await cli(['data', '--model', model, '--prompts', prompts, '--out', dir, '--force']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HOPSCOTCH_ERR_EXISTS: --out .*a-folder exists and is not a regular file/);
    expect(readdirSync(dir)).toEqual(['inside.txt']);
    const before = readFileSync(prompts, 'utf8');
    const p = await cli(['data', '--model', model, '--prompts', prompts, '--out', prompts, '--force']);
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/HOPSCOTCH_ERR_ARGUMENT: --out .* is the prompts file/);
    expect(readFileSync(prompts, 'utf8')).toBe(before);
    const missing = await cli(['data', '--model', model, '--prompts', prompts, '--out', join(work, 'no', 'such', 'x.jsonl')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/HOPSCOTCH_ERR_IO: --out .* does not exist/);
    for (const bad of ['0', '1', '1.5', 'x']) {
      const h = await cli(['data', '--model', model, '--prompts', prompts, '--out', join(work, 'h.jsonl'), '--holdout', bad]);
      expect(h.code, bad).toBe(1);
      expect(h.stderr).toMatch(/HOPSCOTCH_ERR_ARGUMENT: --holdout must be/);
    }
  });

  it('says when most answers were cut and suggests --stop', async () => {
    // The bundled model ends its stories with BOS (1), not with its eos id (2).
    const out = join(work, 'stories.jsonl');
    const r = await cli(['data', '--model', demoModel, '--prompts', prompts, '--out', out, '--max-new-tokens', '24', '--limit', '6', '--device', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning +6 of 6 answers were cut at 24 tokens without a stop token \(stop ids 2\).*--stop <ids>/);
    expect(r.stdout).toMatch(/answers +0 ended with a stop token \(2\), 6 cut at the token limit/);
    expect(r.stdout).toMatch(/warning .*--stop <ids>/);
    const set = await readDataset(out);
    expect(set.samples.every((s) => s.truncated === true)).toBe(true);
    expect(set.header.truncated).toBe(6);
  });

  it('a version 1 dataset is refused with the command that regenerates it', async () => {
    const old = join(work, 'old.jsonl');
    const sample = { prompt: [1, 403], response: [407, 261] };
    const header = { format: 'hopscotch-dataset', version: 1, fingerprint: inspect(model).fingerprint, samples: 1, digest: datasetDigest([sample]) };
    writeFileSync(old, `${JSON.stringify(header)}\n${JSON.stringify(sample)}\n`);
    const r = await cli(['rescale', '--model', model, '--data', old, '--skip', '1', '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hopscotch: HOPSCOTCH_ERR_DATASET: .*version 1 dataset.*hopscotch data --model/);
  });
});
