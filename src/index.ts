/**
 * hopscotch-native: skip redundant attention blocks in decoder LLMs and learn four
 * scalars per layer so the model keeps its quality (the Hopscotch method).
 *
 * ```ts
 * import { hopscotch } from 'hopscotch-native';
 * const model = await hopscotch.load(dir, { device: 'auto' });
 * const data = await hopscotch.recoverySet(model, prompts);
 * const pick = await hopscotch.selectBlocks(model, data, { count: 4 });
 * const fit = await hopscotch.rescale(model, data, { skip: pick.skipped, theta: pick.theta });
 * await hopscotch.export(model, fit, { out: './model-hop4', format: 'hf' });
 * ```
 */
import { exportModel } from './export.js';
import { loadAdapter } from './adapter.js';
import { inspectGguf } from './gguf.js';
import { inspect, load, resolveDevice } from './model.js';
import { loadDataset, loadPrompts, recoverySet, saveDataset, splitDataset } from './dataset.js';
import { rescale } from './rescale.js';
import { selectBlocks, selectionFromJSON, selectionToJSON } from './select.js';
import { planSelection, runPlanJob } from './plan.js';
import { STRATEGIES } from './strategies.js';
import { progressStream } from './progress-stream.js';
import * as evalLib from './eval/index.js';
import * as plotLib from './plot/index.js';
import * as thetaLib from './theta.js';
import type { Model, Theta } from './types.js';

// The public surface: exactly what docs/public-api.md lists (test/unit/public-surface.test.ts
// holds the two equal). Internals stay importable from their modules inside the
// package, never from here.
export * from './types.js';
export { ErrorCodes, HopscotchError, type ErrorCode } from './errors.js';
export { inspect, load, resolveDevice, type LoadOptions } from './model.js';
export { Adam, type AdamOptions, type AdamState, type FrozenMask } from './adam.js';
export { makeBatches, type BatchingOptions } from './batching.js';
export {
  loadDataset,
  loadPrompts,
  readDataset,
  recoverySet,
  saveDataset,
  splitDataset,
  type ChatMessage,
  type DatasetHeader,
  type DatasetSplit,
  type LoadDatasetOptions,
  type PromptInput,
  type RecoverySetOptions,
  type SaveDatasetOptions,
  type SplitOptions,
} from './dataset.js';
export { rescale, evaluateLoss, type Fit, type RescaleOptions } from './rescale.js';
export {
  selectBlocks,
  selectionFromJSON,
  selectionToJSON,
  type Selection,
  type SelectOptions,
  type SelectionJson,
  type StopReason,
} from './select.js';
export type { Probing, ProbingOption, ProbeContext, ProbeJob, ProbeOutcome } from './probing.js';
export {
  jobIndexFromEnv,
  planSelection,
  readPlan,
  runPlanJob,
  type PlanJobResult,
  type PlanState,
  type ProbePlan,
  type ProbeResultFile,
} from './plan.js';
export { trainTheta, type TrainBudget, type TrainResult, type TrainSpec, type TrainState, type TrainStop } from './train.js';
export {
  STRATEGIES,
  blockInfluence,
  fullGreedy,
  iterativeGreedy,
  random,
  similarity,
  type SelectionStrategy,
  type StrategyContext,
  type StrategyName,
} from './strategies.js';
export type {
  BatchEvent,
  EtaEvent,
  GenerateEvent,
  ProbeEndEvent,
  ProbeRoundEvent,
  ProbeStartEvent,
  ProgressCallback,
  ProgressEvent,
  RecoverySetEvent,
  RescaleEpochEvent,
  StepEndEvent,
  TruncatedEvent,
  ValidationEvent,
} from './progress.js';
export { progressStream, type ProgressStream } from './progress-stream.js';
export type { TraceEntry, StepLoss, StepTiming } from './checkpoint.js';
export { EXPORT_FORMATS, exportConstraints, exportModel, type ExportFit, type ExportFormat, type ExportOptions, type ExportResult } from './export.js';
export { loadAdapter, readAdapter, type Adapter, type AdapterMetadata } from './adapter.js';
export {
  GGUF_TENSOR_TYPES,
  inspectGguf,
  readGgufTensor,
  type GgufArchitecture,
  type GgufTensorTypeName,
  type GgufTokenizerInfo,
} from './gguf.js';
export type { GgufInfo, GgufKeyValue, GgufTensorInfo, GgufValueType } from './native/binding.js';
export * as theta from './theta.js';
export * as evaluation from './eval/index.js';
export * as plot from './plot/index.js';
export { gsm8k } from './eval/index.js';

/** The library as one namespace, as in the README's examples. */
export const hopscotch = {
  load,
  inspect,
  resolveDevice,
  /** All-ones theta for a model: the original network. */
  theta: (model: Model): Theta => thetaLib.ones(model.config.numLayers),
  recoverySet,
  loadPrompts,
  saveDataset,
  loadDataset,
  splitDataset,
  selectBlocks,
  planSelection,
  runPlanJob,
  selectionToJSON,
  selectionFromJSON,
  rescale,
  export: exportModel,
  loadAdapter,
  /** Header, metadata and tensor table of a GGUF file (what `export` format `gguf` writes). */
  inspectGguf,
  strategies: STRATEGIES,
  /** The progress events of a long call as an async iterable (see `progressStream`). */
  progressStream,
  /** GSM8K scoring and evaluation with lm-evaluation-harness's rules. */
  gsm8k: evalLib.gsm8k,
  /** Held-out loss, perplexity, MMD, singular values, speed, reports. */
  evaluate: evalLib.evaluateModel,
  evaluation: evalLib,
  plot: plotLib,
} as const;

export default hopscotch;
