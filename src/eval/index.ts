/**
 * Evaluation of skipped models: held-out loss and perplexity, GSM8K accuracy with
 * lm-evaluation-harness's rules, hidden-state shift (MMD), largest singular values of
 * the block matrices, generation speed and memory, and the report folder.
 */
import * as gsm8kLib from './gsm8k.js';

export {
  GSM8K_FEWSHOT_SEED,
  GSM8K_STOP,
  INVALID,
  buildMessages,
  buildPrompt,
  docToText,
  evaluateGsm8k,
  fewshotIndices,
  normalize as normalizeGsm8k,
  readGsm8k,
  type EvaluateGsm8kOptions,
  type Gsm8kDoc,
  type Gsm8kItem,
  type Gsm8kProgressEvent,
  type Gsm8kResult,
  type Gsm8kScore,
} from './gsm8k.js';
export { firstStop, generateUntil, type Completion, type GenerateUntilOptions } from './generate.js';
export { PyRandom } from './pyrandom.js';
export {
  WIKITEXT_TEST,
  heldOutLoss,
  readText,
  textPerplexity,
  textWindows,
  type HeldOutLoss,
  type LossOptions,
  type TextPerplexity,
  type TextPerplexityOptions,
} from './perplexity.js';
export { layerShift, mmd2Unbiased, type LayerShift, type LayerShiftOptions, type Mmd2Result, type ModelVariant } from './mmd.js';
export {
  BLOCK_MATRICES,
  spectralNorms,
  topSingularValue,
  type BlockMatrix,
  type PowerIterationOptions,
  type SingularValue,
  type SpectralNorms,
  type SpectralOptions,
} from './spectral.js';
export { benchCsv, benchOne, benchPlan, benchmark, defaultSkipOrder, randomPrompts, type BenchOptions, type BenchRow } from './bench.js';
export {
  EVAL_TASKS,
  evaluateModel,
  mdTable,
  summarizeMmd,
  summaryRows,
  variantsFor,
  writeReport,
  type EvalTask,
  type EvaluateOptions,
  type EvaluationReport,
  type FitLike,
  type MmdSummary,
  type RemovalPoint,
  type ReportInputs,
  type SelectionReport,
  type TraceSource,
  type VariantResult,
} from './report.js';

/** GSM8K scoring, as in lm-evaluation-harness: `gsm8k.score(completion, answer)`. */
export const gsm8k = {
  score: gsm8kLib.score,
  normalize: gsm8kLib.normalize,
  buildPrompt: gsm8kLib.buildPrompt,
  fewshotIndices: gsm8kLib.fewshotIndices,
  evaluate: gsm8kLib.evaluateGsm8k,
  STOP: gsm8kLib.GSM8K_STOP,
} as const;
