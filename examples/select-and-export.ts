/**
 * Select, rescale, export: the whole method from TypeScript on the bundled TinyStories
 * model, written as an application would write it.
 *
 *   npx tsc -p examples && node examples/dist/select-and-export.js [outDir]
 *
 * Builds a recovery set from story openings (the model's own greedy answers), picks two
 * attention blocks with the iterative greedy search, rescales theta on the skipped
 * model, compares the held-out loss with and without the learned scales, then writes
 * the `scales` adapter and a folded `hf` checkpoint and reads the adapter back.
 */
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

import { evaluateLoss, hopscotch, theta as thetaLib } from 'hopscotch-native';

// The bundled model and prompts ship inside the package.
const pkg = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.resolve('hopscotch-native')));
const MODEL = pkg('models/stories260k');
const PROMPTS = pkg('data/prompts/story-openings.jsonl');
/** TinyStories 260K ends a story with BOS (1); EOS is 2. */
const STOP = [1, 2];

const out = resolve(process.argv[2] ?? 'select-and-export-out');

await using model = await hopscotch.load(MODEL, { device: 'cpu' });
console.log(`loaded ${model.config.arch}: ${model.config.numLayers} layers, ${model.config.parameters} parameters, on ${model.device}`);

const prompts = await hopscotch.loadPrompts(PROMPTS, { limit: 64 });
const data = await hopscotch.recoverySet(model, prompts, { maxNewTokens: 64, stop: STOP, batchSize: 16 });
const train = data.filter((_, i) => i % 4 !== 3);
const heldOut = data.filter((_, i) => i % 4 === 3);
console.log(`recovery set: ${data.length} samples (${train.length} train, ${heldOut.length} held out)`);

const pick = await hopscotch.selectBlocks(model, train, {
  count: 2,
  batchSize: 8,
  onProgress: (e) => {
    if (e.type === 'step-end') console.log(`step ${e.step}: skip layer ${e.skipped} (probe loss ${e.score.toFixed(3)})`);
  },
});
console.log(`selected: skip attention of layers ${pick.skipped.join(', ')} (stopped by ${pick.stoppedBy})`);

// Library defaults: trains until the loss on a held-out 20% of `train` stops improving.
const fit = await hopscotch.rescale(model, train, { skip: pick.skipped, theta: pick.theta, batchSize: 8 });
const base = await evaluateLoss(model, heldOut, hopscotch.theta(model));
const noScale = await evaluateLoss(model, heldOut, hopscotch.theta(model), { skip: fit.skipped });
const rescaled = await evaluateLoss(model, heldOut, fit.theta, { skip: fit.skipped });
console.log(`held-out loss: base ${base.toFixed(3)}, skipped ${noScale.toFixed(3)}, skipped + rescaled ${rescaled.toFixed(3)}`);

const scales = await hopscotch.export(model, fit, { out: join(out, 'scales'), format: 'scales', force: true });
console.log(`wrote ${scales.out}: ${scales.files.join(', ')} (${scales.bytes} bytes)`);
const hf = await hopscotch.export(model, fit, { out: join(out, 'hf'), format: 'hf', force: true });
console.log(`wrote ${hf.out}: ${hf.files.length} files, max |logit diff| ${hf.maxAbsLogitDiff?.toExponential(2)} (tolerance ${hf.tolerance?.toExponential(2)})`);

// The adapter round-trips: the same skipped layers (stored in ascending order) and the
// same theta, bit for bit (F32 in the file and in memory).
const adapter = hopscotch.loadAdapter(model, scales.out);
const ascending = (a: number[]) => [...a].sort((x, y) => x - y).join();
const same =
  ascending(adapter.skipped) === ascending(fit.skipped) &&
  JSON.stringify(thetaLib.toJSON(adapter.theta)) === JSON.stringify(thetaLib.toJSON(fit.theta));
console.log(`adapter read back: skip ${adapter.skipped.join(', ')}, theta ${same ? 'identical' : 'DIFFERENT'}`);
if (!same) process.exitCode = 1;
