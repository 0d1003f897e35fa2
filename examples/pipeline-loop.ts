/**
 * Your own training loop over the engine primitives: `model.lossAndGrad` gives the loss
 * and dL/dtheta of one batch; the optimiser, the batching, cancellation and checkpoints
 * are the application's. Here the optimiser is SGD with momentum and gradient clipping.
 *
 *   npx tsc -p examples && node examples/dist/pipeline-loop.js [workDir] [--stop-after N]
 *
 * The recovery set is saved in `workDir` on the first run and reloaded afterwards. The
 * loop writes `workDir/checkpoint.json` (step, theta, momentum, losses) atomically when
 * it stops early: Ctrl-C or `--stop-after N` aborts an AbortController whose signal the
 * loop checks before every batch. Running again resumes from the checkpoint, and the
 * batch order is a pure function of (seed, epoch), so the result is the same as that of
 * an uninterrupted run. The final theta goes to `workDir/theta.json`.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Dataset, type Theta, evaluateLoss, hopscotch, makeBatches, theta as thetaLib } from 'hopscotch-native';

const pkg = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.resolve('hopscotch-native')));
const MODEL = pkg('models/stories260k');
const PROMPTS = pkg('data/prompts/story-openings.jsonl');
const STOP = [1, 2];

/** Attention blocks to skip, e.g. from `selectBlocks` or `hopscotch select` (these are the demo's). */
const SKIP = [2, 4];
const EPOCHS = 4;
const BATCH_SIZE = 8;
const SEED = 7;
const LR = 0.05;
const MOMENTUM = 0.9;
/** Largest L2 norm of the gradient over all of theta; longer gradients are scaled down. */
const MAX_GRAD_NORM = 1;

const args = process.argv.slice(2);
const stopAt = args.indexOf('--stop-after');
const stopAfter = stopAt >= 0 ? Number(args.splice(stopAt, 2)[1]) : Infinity;
const workDir = resolve(args[0] ?? 'pipeline-out');
mkdirSync(workDir, { recursive: true });
const files = { data: join(workDir, 'data.jsonl'), checkpoint: join(workDir, 'checkpoint.json'), theta: join(workDir, 'theta.json') };

interface Checkpoint {
  step: number;
  theta: thetaLib.ThetaJson;
  velocity: thetaLib.ThetaJson;
  losses: number[];
}

/** Write-then-rename, so a crash leaves the old checkpoint or the new one, never half of one. */
function writeJsonAtomic(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(value));
  renameSync(`${file}.tmp`, file);
}

const controller = new AbortController();
process.once('SIGINT', () => controller.abort(new Error('interrupted (SIGINT)')));
const signal = controller.signal;

await using model = await hopscotch.load(MODEL, { device: 'cpu' });

// The recovery set: generated once, then reloaded (the fingerprint check refuses a file made by another model).
let data: Dataset;
if (existsSync(files.data)) {
  data = await hopscotch.loadDataset(files.data, { fingerprint: model.fingerprint });
  console.log(`loaded ${data.length} samples from ${files.data}`);
} else {
  const prompts = await hopscotch.loadPrompts(PROMPTS, { limit: 32 });
  data = await hopscotch.recoverySet(model, prompts, { maxNewTokens: 48, stop: STOP, batchSize: 16, signal });
  await hopscotch.saveDataset(files.data, data, { fingerprint: model.fingerprint });
  console.log(`generated ${data.length} samples into ${files.data}`);
}
const train = data.filter((_, i) => i % 4 !== 3);
const heldOut = data.filter((_, i) => i % 4 === 3);

// State: theta starts at ones with the skipped blocks' b_att at 0, momentum at zero.
const start: Theta = hopscotch.theta(model);
for (const l of SKIP) start.bAtt[l] = 0;
let theta = thetaLib.clone(start);
let velocity: Theta = thetaLib.ones(model.config.numLayers);
for (const k of thetaLib.THETA_KEYS) velocity[k].fill(0);
let losses: number[] = [];
let step = 0;
if (existsSync(files.checkpoint)) {
  const ckpt = JSON.parse(readFileSync(files.checkpoint, 'utf8')) as Checkpoint;
  theta = thetaLib.fromJSON(ckpt.theta);
  velocity = thetaLib.fromJSON(ckpt.velocity);
  losses = ckpt.losses;
  step = ckpt.step;
  console.log(`resumed from ${files.checkpoint} at step ${step}`);
}

/** One SGD-with-momentum update; b_att of skipped layers stays frozen at 0. */
function sgdStep(t: Theta, grad: Theta): void {
  let sq = 0;
  for (const k of thetaLib.THETA_KEYS) for (const g of grad[k]) sq += g * g;
  const clip = Math.min(1, MAX_GRAD_NORM / (Math.sqrt(sq) || 1));
  for (const k of thetaLib.THETA_KEYS)
    for (let l = 0; l < t[k].length; l++) {
      if (k === 'bAtt' && SKIP.includes(l)) continue;
      velocity[k][l] = MOMENTUM * velocity[k][l] + clip * grad[k][l];
      t[k][l] -= LR * velocity[k][l];
    }
}

const perEpoch = makeBatches(train, { batchSize: BATCH_SIZE, seed: SEED, epoch: 0 }).length;
const totalSteps = EPOCHS * perEpoch;
let stopped = false;
try {
  while (step < totalSteps) {
    const epoch = Math.floor(step / perEpoch);
    const batches = makeBatches(train, { batchSize: BATCH_SIZE, seed: SEED, epoch });
    for (let b = step % perEpoch; b < batches.length; b++) {
      signal.throwIfAborted();
      const { loss, grad } = await model.lossAndGrad(batches[b], theta, { skip: SKIP, tokenMean: true });
      sgdStep(theta, grad);
      losses.push(loss);
      step += 1;
      if (step >= stopAfter) controller.abort(new Error(`--stop-after ${stopAfter}`));
    }
    const epochLosses = losses.slice(epoch * perEpoch, (epoch + 1) * perEpoch);
    const mean = epochLosses.reduce((a, x) => a + x, 0) / epochLosses.length;
    console.log(`epoch ${epoch + 1}/${EPOCHS}: mean loss/token ${mean.toFixed(4)}`);
  }
} catch (err) {
  if (!signal.aborted) throw err;
  stopped = true;
}

if (stopped) {
  const ckpt: Checkpoint = { step, theta: thetaLib.toJSON(theta), velocity: thetaLib.toJSON(velocity), losses };
  writeJsonAtomic(files.checkpoint, ckpt);
  console.log(`stopped at step ${step} of ${totalSteps} (${(signal.reason as Error).message}); checkpoint saved to ${files.checkpoint}`);
} else {
  const before = await evaluateLoss(model, heldOut, start, { skip: SKIP, tokenMean: true });
  const after = await evaluateLoss(model, heldOut, theta, { skip: SKIP, tokenMean: true });
  writeJsonAtomic(files.theta, thetaLib.toJSON(theta));
  rmSync(files.checkpoint, { force: true });
  console.log(`done: ${step} steps, skip ${SKIP.join(', ')}; held-out loss/token at theta = ones ${before.toFixed(4)}, trained ${after.toFixed(4)}`);
  console.log(`wrote ${files.theta}`);
}
