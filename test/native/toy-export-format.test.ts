// docs/internals.md says where a new export format goes and what it must do; the toy
// format in test/fixtures/toy-export-format.ts follows those steps. Its output is checked
// here against the fold written out in docs/concepts.md, recomputed in float64, and the
// steps' promises are held: typed errors before any work, nothing left at `out` on failure.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { load } from '../../src/model.js';
import { binding } from '../../src/native/binding.js';
import type { Model, Theta } from '../../src/types.js';
import { TOY_FILE, exportToyFold } from '../fixtures/toy-export-format.js';
import { demoModel, expectCode, root } from '../helpers.js';

let model: Model;
const work = mkdtempSync(join(tmpdir(), 'hopscotch-toy-format-'));
beforeAll(async () => {
  model = await load(demoModel, { device: 'cpu', threads: 1 });
});
afterAll(async () => {
  await model?.[Symbol.asyncDispose]();
  rmSync(work, { recursive: true, force: true });
});

function seededTheta(L: number): Theta {
  const v = (k: number) => Float32Array.from({ length: L }, (_, l) => 0.6 + 0.1 * ((l * 7 + k * 3) % 9));
  return { bAtt: v(1), sAtt: v(2), bMlp: v(3), sMlp: v(4) };
}

/** docs/concepts.md, "Folding θ into the weights", in float64. */
function foldFromConcepts(t: Theta, skipped: number[]): { att: number[]; mlp: number[]; c: number[] } {
  const r = { att: [] as number[], mlp: [] as number[], c: [] as number[] };
  let c = 1;
  for (let l = 0; l < t.bAtt.length; l++) {
    r.att.push(skipped.includes(l) ? 0 : t.bAtt[l]! / (t.sAtt[l]! * c));
    c *= t.sAtt[l]!;
    r.mlp.push(t.bMlp[l]! / (t.sMlp[l]! * c));
    c *= t.sMlp[l]!;
    r.c.push(c);
  }
  return r;
}

describe('a toy export format added by following docs/internals.md', () => {
  it('the document has the steps the toy follows', () => {
    const doc = readFileSync(join(root, 'docs', 'internals.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### A new export format'));
    expect(section.length).toBeGreaterThan(200);
    for (const step of ['EXPORT_FORMATS', 'foldFactors', 'writeSafetensors', 'temporary', 'test/fixtures/toy-export-format.ts'])
      expect(section, step).toContain(step);
  });

  it('writes the fold factors of the fit, equal to the documented fold, with its metadata', async () => {
    const L = model.config.numLayers;
    const theta = seededTheta(L);
    const skipped = [L - 1, 1];
    const out = join(work, 'toy');
    const r = await exportToyFold(model, { skipped, theta }, { out });
    expect(readdirSync(out)).toEqual([TOY_FILE]);
    const file = join(out, TOY_FILE);
    const want = foldFromConcepts(theta, skipped);
    for (const k of ['att', 'mlp', 'c'] as const) {
      const got = await binding().readTensor(file, k);
      expect(got.length, k).toBe(L);
      for (let l = 0; l < L; l++) expect(Math.abs(got[l]! - want[k][l]!), `${k}[${l}]`).toBeLessThanOrEqual(1e-6 * Math.abs(want[k][l]!));
    }
    expect((await binding().readTensor(file, 'att'))[1]).toBe(0);
    const info = binding().inspectSafetensors(file);
    expect(info.metadata).toEqual({ format: 'toy-fold', skipped: JSON.stringify([1, L - 1]), fingerprint: model.fingerprint });
    expect(r.bytes).toBe(info.fileSize);
    expect(readdirSync(work).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('checks come first, with typed errors, and leave nothing behind', async () => {
    const L = model.config.numLayers;
    const existing = join(work, 'existing');
    writeFileSync(existing, 'keep');
    await expectCode(exportToyFold(model, { skipped: [], theta: seededTheta(L) }, { out: existing }), 'HOPSCOTCH_ERR_EXISTS');
    expect(readFileSync(existing, 'utf8')).toBe('keep');
    const bad = seededTheta(L);
    bad.sMlp = new Float32Array(L - 1);
    await expectCode(exportToyFold(model, { skipped: [], theta: bad }, { out: join(work, 'bad-theta') }), 'HOPSCOTCH_ERR_THETA');
    await expectCode(exportToyFold(model, { skipped: [L], theta: seededTheta(L) }, { out: join(work, 'bad-skip') }), 'HOPSCOTCH_ERR_SKIP');
    const zero = seededTheta(L);
    zero.sAtt[0] = 0;
    await expectCode(exportToyFold(model, { skipped: [], theta: zero }, { out: join(work, 'zero-scale') }), 'HOPSCOTCH_ERR_EXPORT');
    for (const name of ['bad-theta', 'bad-skip', 'zero-scale']) expect(existsSync(join(work, name)), name).toBe(false);
  });
});
