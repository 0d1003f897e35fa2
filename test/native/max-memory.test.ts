// BatchOptions.maxMemory: the CUDA engine's memory budget. Validated in TypeScript for
// every backend; the CPU engine accepts it and computes the same result.
import { describe, expect, it } from 'vitest';

import { load } from '../../src/model.js';
import { ones } from '../../src/theta.js';
import { demoModel, expectCode } from '../helpers.js';

const samples = [{ prompt: [1, 45, 300, 12], response: [87, 410, 23, 5] }];

describe('maxMemory option', () => {
  it('rejects a negative, fractional or non-numeric budget with HOPSCOTCH_ERR_ARGUMENT', async () => {
    const m = await load(demoModel, { device: 'cpu', threads: 1 });
    const t = ones(m.config.numLayers);
    await expectCode(m.lossAndGrad(samples, t, { maxMemory: -1 }), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(m.loss(samples, t, { maxMemory: 1.5 }), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(m.loss(samples, t, { maxMemory: '1e9' as unknown as number }), 'HOPSCOTCH_ERR_ARGUMENT');
    m.dispose();
  });

  it('does not change the CPU result', async () => {
    const m = await load(demoModel, { device: 'cpu', threads: 1 });
    const t = ones(m.config.numLayers);
    const a = await m.lossAndGrad(samples, t);
    const b = await m.lossAndGrad(samples, t, { maxMemory: 2 ** 30 });
    expect(b.loss).toBe(a.loss);
    expect(Array.from(b.grad.bAtt)).toEqual(Array.from(a.grad.bAtt));
    m.dispose();
  });
});
