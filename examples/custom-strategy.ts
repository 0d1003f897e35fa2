/**
 * A selection strategy of your own, run by `selectBlocks` like the built-in ones.
 *
 *   npx tsc -p examples && node examples/dist/custom-strategy.js
 *
 * `skip-loss` scores a candidate by the loss of the model with that attention block
 * removed and theta left as it is: a probe with no training, so one forward pass per
 * candidate instead of an epoch of Adam steps. It is iterative (re-ranked after every
 * skip and rescale) and its scores are losses, so `maxLoss` applies to it. The library
 * still does the rest: candidates, rescaling, checkpoints, progress and cancellation.
 * The example runs it next to the built-in `iterative-greedy` and prints both choices.
 */
import { fileURLToPath } from 'node:url';

import { type SelectionStrategy, type StrategyContext, evaluateLoss, hopscotch, theta as thetaLib } from 'hopscotch-native';

const pkg = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.resolve('hopscotch-native')));
const MODEL = pkg('models/stories260k');
const PROMPTS = pkg('data/prompts/story-openings.jsonl');
const STOP = [1, 2];

/** Loss with the candidate's attention removed, at the current theta (no training). */
const skipLoss: SelectionStrategy = {
  name: 'skip-loss',
  schedule: 'iterative',
  scoreIsLoss: true,
  async rank(ctx: StrategyContext): Promise<number[]> {
    const scores: number[] = [];
    for (const layer of ctx.candidates) {
      const theta = thetaLib.clone(ctx.theta);
      theta.bAtt[layer] = 0; // as selectBlocks does for every skipped layer
      scores.push(await evaluateLoss(ctx.model, ctx.data, theta, { skip: [...ctx.skipped, layer], batchSize: 16, signal: ctx.signal }));
    }
    return scores;
  },
};

await using model = await hopscotch.load(MODEL, { device: 'cpu' });
const prompts = await hopscotch.loadPrompts(PROMPTS, { limit: 24 });
const data = await hopscotch.recoverySet(model, prompts, { maxNewTokens: 48, stop: STOP, batchSize: 12 });
console.log(`recovery set: ${data.length} samples`);

for (const strategy of [skipLoss, 'iterative-greedy'] as const) {
  const name = typeof strategy === 'string' ? strategy : strategy.name;
  const started = performance.now();
  const sel = await hopscotch.selectBlocks(model, data, {
    strategy,
    count: 2,
    batchSize: 8,
    onProgress: (e) => {
      if (e.type === 'step-end') console.log(`  ${name} step ${e.step}: skip layer ${e.skipped} (score ${e.score.toFixed(3)})`);
    },
  });
  const ms = performance.now() - started;
  const step1 = sel.trace.filter((e) => e.step === 1).map((e) => `${e.candidate}:${e.score.toFixed(2)}`);
  console.log(`${sel.strategy}: skipped ${sel.skipped.join(', ')}; step-1 scores ${step1.join(' ')}; rescaled loss ${sel.losses.at(-1)?.loss.toFixed(3)}; ${(ms / 1000).toFixed(1)} s`);
}
