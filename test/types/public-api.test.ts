// Type-level tests of the public surface (src/index.ts, what `hopscotch-native` exports).
// The assertions are checked by the TypeScript compiler, not at run time: the
// `typecheck` test below compiles this file (test/types/tsconfig.json), and
// `tsc -p tsconfig.json --noEmit` covers it too. A change that breaks a caller's code
// (a renamed option, a narrowed parameter, a widened result, a removed event type)
// fails here. Additive changes that keep old code compiling are allowed where the
// assertion says `toMatchTypeOf`/`toHaveProperty`; exact shapes use `toEqualTypeOf`.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expectTypeOf } from 'expect-type';
import { describe, expect, it } from 'vitest';

import defaultExport, {
  type BatchOptions,
  type Dataset,
  type ErrorCode,
  type ExportFormat,
  type ExportOptions,
  type ExportResult,
  type Fit,
  type GenerateOptions,
  type LayerStats,
  type LoadOptions,
  type LossAndGradResult,
  type LossResult,
  type Model,
  type ModelConfig,
  type Probing,
  type ProbingOption,
  type ProgressCallback,
  type ProgressEvent,
  type ProgressStream,
  type PromptInput,
  type RecoverySetOptions,
  type RescaleOptions,
  type Sample,
  type SelectOptions,
  type Selection,
  type SelectionJson,
  type SelectionStrategy,
  type StrategyContext,
  type StrategyName,
  type Theta,
  type TraceEntry,
  ErrorCodes,
  HopscotchError,
  STRATEGIES,
  exportModel,
  hopscotch,
  load,
  loadAdapter,
  progressStream,
  recoverySet,
  rescale,
  selectBlocks,
  theta,
} from '../../src/index.js';
import { root } from '../helpers.js';

describe('entry points', () => {
  it('hopscotch namespace and named exports have the documented signatures', () => {
    expectTypeOf(defaultExport).toEqualTypeOf(hopscotch);
    expectTypeOf(hopscotch.load).toEqualTypeOf(load);
    expectTypeOf(load).toEqualTypeOf<(dir: string, opts?: LoadOptions) => Promise<Model>>();
    expectTypeOf<LoadOptions>().toEqualTypeOf<{
      device?: 'cpu' | 'cuda' | 'auto';
      threads?: number;
      precision?: 'f32' | 'bf16';
      log?: (message: string) => void;
    }>();

    expectTypeOf(hopscotch.recoverySet).toEqualTypeOf(recoverySet);
    expectTypeOf(recoverySet).parameters.toEqualTypeOf<[Model, readonly PromptInput[], RecoverySetOptions?]>();
    expectTypeOf(recoverySet).returns.toEqualTypeOf<Promise<Dataset>>();
    expectTypeOf<PromptInput>().toEqualTypeOf<string | { messages: { role: string; content: string }[] }>();

    expectTypeOf(hopscotch.selectBlocks).toEqualTypeOf(selectBlocks);
    expectTypeOf(selectBlocks).toEqualTypeOf<(model: Model, data: Dataset, opts?: SelectOptions) => Promise<Selection>>();

    expectTypeOf(hopscotch.rescale).toEqualTypeOf(rescale);
    expectTypeOf(rescale).toEqualTypeOf<(model: Model, data: Dataset, opts: RescaleOptions) => Promise<Fit>>();

    expectTypeOf(hopscotch.export).toEqualTypeOf(exportModel);
    expectTypeOf(exportModel).parameters.toEqualTypeOf<[Model, { skipped: number[]; theta: Theta; fingerprint?: string }, ExportOptions]>();
    expectTypeOf(exportModel).returns.toEqualTypeOf<Promise<ExportResult>>();
    // A Selection and a Fit are both accepted as the thing to export.
    expectTypeOf<Selection>().toMatchTypeOf<Parameters<typeof exportModel>[1]>();
    expectTypeOf<Fit>().toMatchTypeOf<Parameters<typeof exportModel>[1]>();

    expectTypeOf(hopscotch.loadAdapter).toEqualTypeOf(loadAdapter);
    expectTypeOf(loadAdapter).parameters.toEqualTypeOf<[Model, string]>();
    expectTypeOf(loadAdapter).returns.toMatchTypeOf<{ theta: Theta; skipped: number[]; metadata: { fingerprint: string } }>();
    expectTypeOf(hopscotch.theta).toEqualTypeOf<(model: Model) => Theta>();
  });

  it('options carry AbortSignal and a typed progress callback wherever work is long', () => {
    expectTypeOf<RecoverySetOptions['signal']>().toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<SelectOptions['signal']>().toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<RescaleOptions['signal']>().toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<StrategyContext['signal']>().toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<RecoverySetOptions['onProgress']>().toEqualTypeOf<ProgressCallback | undefined>();
    expectTypeOf<SelectOptions['onProgress']>().toEqualTypeOf<ProgressCallback | undefined>();
    expectTypeOf<RescaleOptions['onProgress']>().toEqualTypeOf<ProgressCallback | undefined>();
    expectTypeOf<ProgressCallback>().toEqualTypeOf<(event: ProgressEvent) => void>();
  });

  it('progressStream turns a call with onProgress into an async iterable of its events', () => {
    expectTypeOf(progressStream).toEqualTypeOf<<T>(start: (onProgress: ProgressCallback) => Promise<T>) => ProgressStream<T>>();
    expectTypeOf(hopscotch.progressStream).toEqualTypeOf(progressStream);
    expectTypeOf<ProgressStream<Selection>>().toMatchTypeOf<AsyncIterable<ProgressEvent>>();
    expectTypeOf<ProgressStream<Selection>['result']>().toEqualTypeOf<Promise<Selection>>();
    // Type-only: never called.
    const use = (model: Model, data: Dataset) => progressStream((onProgress) => selectBlocks(model, data, { count: 1, onProgress }));
    expectTypeOf(use).returns.toEqualTypeOf<ProgressStream<Selection>>();
    expect(typeof use).toBe('function');
  });

  it('option objects keep their fields and types', () => {
    expectTypeOf<SelectOptions>().toEqualTypeOf<{
      count?: number;
      maxLoss?: number;
      maxLossOn?: 'score' | 'validation';
      strategy?: StrategyName | SelectionStrategy;
      exclude?: readonly number[];
      probeLr?: number;
      probeSteps?: number;
      probeScore?: 'train' | 'validation';
      rescaleLr?: number;
      rescaleEpochs?: number;
      rescaleMaxEpochs?: number;
      rescalePatience?: number;
      holdout?: number;
      validation?: Dataset;
      batchSize?: number;
      tokenCap?: number;
      seed?: number;
      tokenMean?: boolean;
      probeSubset?: number;
      shortlist?: number;
      probing?: ProbingOption;
      workers?: number;
      rescaleAfter?: boolean;
      checkpoint?: string;
      onProgress?: ProgressCallback;
      signal?: AbortSignal;
    }>();
    expectTypeOf<RescaleOptions>().toEqualTypeOf<{
      skip: readonly number[];
      theta?: Theta;
      epochs?: number;
      maxEpochs?: number;
      patience?: number;
      holdout?: number;
      validation?: Dataset;
      lr?: number;
      batchSize?: number;
      tokenCap?: number;
      seed?: number;
      tokenMean?: boolean;
      checkpoint?: string;
      checkpointEvery?: number;
      onProgress?: ProgressCallback;
      signal?: AbortSignal;
    }>();
    expectTypeOf<RecoverySetOptions>().toEqualTypeOf<{
      maxNewTokens?: number;
      batchSize?: number;
      chatTemplate?: boolean;
      stop?: number[];
      onProgress?: ProgressCallback;
      signal?: AbortSignal;
    }>();
  });

  it('export formats are exactly scales, hf, decilm and gguf', () => {
    expectTypeOf<ExportFormat>().toEqualTypeOf<'scales' | 'hf' | 'decilm' | 'gguf'>();
    expectTypeOf<NonNullable<ExportOptions['ggufType']>>().toEqualTypeOf<'F32' | 'F16' | 'BF16' | 'Q8_0'>();
    expectTypeOf<ExportOptions['format']>().toEqualTypeOf<ExportFormat>();
    expectTypeOf<ExportOptions>().toMatchTypeOf<{ out: string; format: ExportFormat; force?: boolean }>();
    expectTypeOf<ExportResult>().toMatchTypeOf<{ out: string; format: ExportFormat; bytes: number; files: string[] }>();
    // Type-only: never called.
    const misuse = (model: Model, fit: Fit) => {
      // @ts-expect-error 'onnx' is not an export format
      void exportModel(model, fit, { out: 'x', format: 'onnx' });
      // @ts-expect-error Q4_K is not a GGUF type this export writes
      void exportModel(model, fit, { out: 'x.gguf', format: 'gguf', ggufType: 'Q4_K' });
      // @ts-expect-error `out` is required
      void exportModel(model, fit, { format: 'hf' });
    };
    expect(typeof misuse).toBe('function');
  });
});

describe('data types', () => {
  it('Theta is four Float32Array vectors', () => {
    expectTypeOf<Theta>().toEqualTypeOf<{ bAtt: Float32Array; sAtt: Float32Array; bMlp: Float32Array; sMlp: Float32Array }>();
    expectTypeOf(theta.ones).toEqualTypeOf<(numLayers: number) => Theta>();
    expectTypeOf(theta.clone).toEqualTypeOf<(t: Theta) => Theta>();
    expectTypeOf(theta.toJSON).toEqualTypeOf<(t: Theta) => theta.ThetaJson>();
    expectTypeOf(theta.fromJSON).toEqualTypeOf<(j: theta.ThetaJson) => Theta>();
    expectTypeOf<theta.ThetaJson>().toEqualTypeOf<{ bAtt: number[]; sAtt: number[]; bMlp: number[]; sMlp: number[] }>();
    expectTypeOf(theta.THETA_KEYS).toEqualTypeOf<readonly ['bAtt', 'sAtt', 'bMlp', 'sMlp']>();
  });

  it('Sample, Dataset, Selection and Fit', () => {
    expectTypeOf<Sample>().toEqualTypeOf<{ prompt: number[]; response: number[]; truncated?: boolean }>();
    // A plain { prompt, response } is still a Sample.
    expectTypeOf<{ prompt: number[]; response: number[] }>().toMatchTypeOf<Sample>();
    expectTypeOf<Dataset>().toEqualTypeOf<Sample[]>();
    expectTypeOf<TraceEntry>().toEqualTypeOf<{ step: number; candidate: number; score: number; train?: number; validation?: number; droppedAt?: number }>();
    expectTypeOf<Selection>().toEqualTypeOf<{
      fingerprint?: string;
      strategy: string;
      skipped: number[];
      theta: Theta;
      trace: TraceEntry[];
      losses: { step: number; loss: number; validationLoss?: number; epochs?: number; stoppedBy?: string; validationCurve?: number[] }[];
      timings: { step: number; probeMs: number; rescaleMs: number }[];
      stoppedBy: 'count' | 'maxLoss' | 'exhausted';
      firstOrder?: TraceEntry[];
      probeSteps?: number;
      probeOptimizerSteps?: number;
      probeTokens?: number;
      trainSamples?: number;
      validationSamples?: number;
      probing?: Probing;
    }>();
    expectTypeOf<SelectionJson['theta']>().toEqualTypeOf<theta.ThetaJson>();
    expectTypeOf<Fit>().toEqualTypeOf<{
      fingerprint?: string;
      skipped: number[];
      theta: Theta;
      losses: number[];
      epochLosses: number[];
      validationLoss?: number;
      validationCurve?: number[];
      bestEpoch?: number;
      stoppedBy?: 'steps' | 'epochs' | 'patience' | 'maxEpochs';
      trainSamples?: number;
      validationSamples?: number;
      steps: number;
    }>();
  });
});

describe('Model', () => {
  it('has the engine primitives with their result types, and disposes', () => {
    expectTypeOf<Model['precision']>().toEqualTypeOf<'f32' | 'bf16'>();
    expectTypeOf<Model['lossAndGrad']>().toEqualTypeOf<(samples: Sample[], theta: Theta, opts?: BatchOptions) => Promise<LossAndGradResult>>();
    expectTypeOf<Model['loss']>().toEqualTypeOf<(samples: Sample[], theta: Theta, opts?: BatchOptions) => Promise<LossResult>>();
    expectTypeOf<Model['logits']>().toEqualTypeOf<(tokens: number[], opts?: { theta?: Theta; skip?: number[] }) => Promise<Float32Array>>();
    expectTypeOf<Model['generate']>().toEqualTypeOf<(prompts: number[][], opts?: GenerateOptions) => Promise<number[][]>>();
    expectTypeOf<Model['layerStats']>().toEqualTypeOf<
      (samples: Sample[], opts?: { theta?: Theta; skip?: number[]; hiddenLayers?: number[] }) => Promise<LayerStats>
    >();
    expectTypeOf<Model['dispose']>().toEqualTypeOf<() => void>();
    expectTypeOf<Model[typeof Symbol.asyncDispose]>().toEqualTypeOf<() => Promise<void>>();
    expectTypeOf<Model>().toMatchTypeOf<AsyncDisposable>();
    expectTypeOf<Model['config']>().toEqualTypeOf<ModelConfig>();
    expectTypeOf<Model['device']>().toEqualTypeOf<'cpu' | 'cuda'>();
    expectTypeOf<Model['fingerprint']>().toEqualTypeOf<string>();

    expectTypeOf<BatchOptions>().toEqualTypeOf<{ skip?: number[]; tokenMean?: boolean; recompute?: boolean; maxMemory?: number }>();
    expectTypeOf<LossResult>().toEqualTypeOf<{ loss: number; responseTokens: number; sampleNll: Float64Array; peakBytes: number }>();
    expectTypeOf<LossAndGradResult>().toEqualTypeOf<{
      loss: number;
      responseTokens: number;
      sampleNll: Float64Array;
      peakBytes: number;
      grad: Theta;
    }>();
    expectTypeOf<GenerateOptions>().toEqualTypeOf<{ maxNewTokens?: number; theta?: Theta; skip?: number[]; stop?: number[]; includeStop?: boolean }>();
    expectTypeOf<LayerStats>().toEqualTypeOf<{
      cosAttn: number[];
      cosMlp: number[];
      cosBlock: number[];
      blockInfluence: number[];
      hidden: Float32Array[];
    }>();
    expectTypeOf<ModelConfig['ropeType']>().toEqualTypeOf<'default' | 'linear' | 'llama3'>();
  });
});

describe('progress events', () => {
  it('are a union tagged by `type` that narrows', () => {
    expectTypeOf<ProgressEvent['type']>().toEqualTypeOf<
      'probe-start' | 'probe-round' | 'batch' | 'probe-end' | 'step-end' | 'rescale-epoch' | 'validation' | 'eta' | 'generate' | 'recovery-set' | 'truncated'
    >();
    const handle = (e: ProgressEvent): number => {
      switch (e.type) {
        case 'probe-start':
          expectTypeOf(e).toEqualTypeOf<{ type: 'probe-start'; step: number; candidate: number; candidates: number }>();
          return e.candidates;
        case 'probe-round':
          expectTypeOf(e).toEqualTypeOf<{ type: 'probe-round'; step: number; round: number; rounds: number; candidates: number; steps: number }>();
          return e.steps;
        case 'batch':
          expectTypeOf(e).toEqualTypeOf<{
            type: 'batch';
            phase: 'probe' | 'rescale';
            step: number;
            candidate?: number;
            epoch: number;
            batch: number;
            batches: number;
            loss: number;
          }>();
          return e.loss;
        case 'probe-end':
          expectTypeOf(e).toEqualTypeOf<{ type: 'probe-end'; step: number; candidate: number; score: number }>();
          return e.score;
        case 'step-end':
          expectTypeOf(e).toEqualTypeOf<{ type: 'step-end'; step: number; skipped: number; score: number }>();
          return e.skipped;
        case 'rescale-epoch':
          expectTypeOf(e).toEqualTypeOf<{ type: 'rescale-epoch'; step: number; epoch: number; epochs: number; loss: number }>();
          return e.loss;
        case 'validation':
          expectTypeOf(e).toEqualTypeOf<{ type: 'validation'; loss: number; epoch?: number; step?: number; phase?: 'probe' | 'rescale'; candidate?: number }>();
          return e.loss;
        case 'eta':
          expectTypeOf(e).toEqualTypeOf<{ type: 'eta'; seconds: number }>();
          return e.seconds;
        case 'generate':
          expectTypeOf(e).toEqualTypeOf<{
            type: 'generate';
            batch: number;
            batches: number;
            samples: number;
            dropped: number;
            truncated: number;
            skipped: number;
          }>();
          return e.dropped;
        case 'recovery-set':
          expectTypeOf(e).toEqualTypeOf<{
            type: 'recovery-set';
            prompts: number;
            samples: number;
            dropped: number;
            skipped: number;
            truncated: number;
            maxNewTokens: number;
            stop: number[];
          }>();
          return e.samples;
        case 'truncated':
          expectTypeOf(e).toEqualTypeOf<{ type: 'truncated'; truncated: number; samples: number; maxNewTokens: number; stop: number[] }>();
          return e.truncated;
        default: {
          // Exhaustive: a new event type is a change callers must see.
          const none: never = e;
          return none;
        }
      }
    };
    expect(handle({ type: 'eta', seconds: 3 })).toBe(3);
  });
});

describe('strategies', () => {
  it('SelectionStrategy and its context', () => {
    expectTypeOf<SelectionStrategy>().toEqualTypeOf<{
      readonly name: string;
      readonly schedule: 'iterative' | 'one-shot';
      readonly scoreIsLoss: boolean;
      readonly probes?: boolean;
      rank(ctx: StrategyContext): Promise<readonly number[]>;
    }>();
    expectTypeOf<StrategyContext>().toMatchTypeOf<{
      readonly model: Model;
      readonly data: Dataset;
      readonly step: number;
      readonly skipped: readonly number[];
      readonly theta: Theta;
      readonly candidates: readonly number[];
      readonly seed: number;
      probe(candidate: number): Promise<number>;
      layerStats(): Promise<LayerStats>;
    }>();
    expectTypeOf<StrategyName>().toEqualTypeOf<
      | 'iterative-greedy'
      | 'full-greedy'
      | 'similarity'
      | 'similarity-attn'
      | 'similarity-mlp'
      | 'similarity-block'
      | 'block-influence'
      | 'random'
    >();
    expectTypeOf(STRATEGIES['iterative-greedy']).toMatchTypeOf<SelectionStrategy>();
    // A plain object literal is a strategy.
    const mine = {
      name: 'mine',
      schedule: 'one-shot',
      scoreIsLoss: false,
      rank: async (ctx: StrategyContext) => ctx.candidates.map((l) => -l),
    } satisfies SelectionStrategy;
    expectTypeOf(mine).toMatchTypeOf<SelectOptions['strategy']>();
    expect(mine.name).toBe('mine');
  });
});

describe('errors', () => {
  it('ErrorCodes values are the literal HOPSCOTCH_ERR_* strings', () => {
    const expected = {
      IO: 'HOPSCOTCH_ERR_IO',
      SAFETENSORS_HEADER: 'HOPSCOTCH_ERR_SAFETENSORS_HEADER',
      SAFETENSORS_LAYOUT: 'HOPSCOTCH_ERR_SAFETENSORS_LAYOUT',
      SAFETENSORS_DTYPE: 'HOPSCOTCH_ERR_SAFETENSORS_DTYPE',
      SAFETENSORS_INDEX: 'HOPSCOTCH_ERR_SAFETENSORS_INDEX',
      GGUF_HEADER: 'HOPSCOTCH_ERR_GGUF_HEADER',
      GGUF_LAYOUT: 'HOPSCOTCH_ERR_GGUF_LAYOUT',
      EXISTS: 'HOPSCOTCH_ERR_EXISTS',
      CONFIG_INVALID: 'HOPSCOTCH_ERR_CONFIG_INVALID',
      CONFIG_UNSUPPORTED: 'HOPSCOTCH_ERR_CONFIG_UNSUPPORTED',
      MISSING_TENSOR: 'HOPSCOTCH_ERR_MISSING_TENSOR',
      SHAPE: 'HOPSCOTCH_ERR_SHAPE',
      TOKEN_RANGE: 'HOPSCOTCH_ERR_TOKEN_RANGE',
      EMPTY_BATCH: 'HOPSCOTCH_ERR_EMPTY_BATCH',
      EMPTY_RESPONSE: 'HOPSCOTCH_ERR_EMPTY_RESPONSE',
      TOKEN_CAP: 'HOPSCOTCH_ERR_TOKEN_CAP',
      CONTEXT: 'HOPSCOTCH_ERR_CONTEXT',
      THETA: 'HOPSCOTCH_ERR_THETA',
      SKIP: 'HOPSCOTCH_ERR_SKIP',
      DISPOSED: 'HOPSCOTCH_ERR_DISPOSED',
      CUDA: 'HOPSCOTCH_ERR_CUDA',
      CUDA_ABI: 'HOPSCOTCH_ERR_CUDA_ABI',
      INTERNAL: 'HOPSCOTCH_ERR_INTERNAL',
      ARGUMENT: 'HOPSCOTCH_ERR_ARGUMENT',
      TOKENIZER: 'HOPSCOTCH_ERR_TOKENIZER',
      DATASET: 'HOPSCOTCH_ERR_DATASET',
      FINGERPRINT: 'HOPSCOTCH_ERR_FINGERPRINT',
      CHECKPOINT: 'HOPSCOTCH_ERR_CHECKPOINT',
      EXPORT: 'HOPSCOTCH_ERR_EXPORT',
      ABORTED: 'HOPSCOTCH_ERR_ABORTED',
      NON_FINITE: 'HOPSCOTCH_ERR_NON_FINITE',
      PLAN: 'HOPSCOTCH_ERR_PLAN',
    } as const;
    expectTypeOf(ErrorCodes).toEqualTypeOf<typeof expected>();
    expectTypeOf<ErrorCode>().toEqualTypeOf<(typeof expected)[keyof typeof expected]>();
    expectTypeOf<HopscotchError['code']>().toEqualTypeOf<ErrorCode>();
    expectTypeOf<HopscotchError>().toMatchTypeOf<Error>();
    // Codes are part of the contract at run time too (users match on the strings).
    expect(ErrorCodes).toEqual(expected);
  });
});

describe('typecheck', () => {
  it('this file compiles under the project settings (the assertions above hold)', () => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    let output = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', join(root, 'test', 'types', 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      output = String((err as { stdout?: string }).stdout ?? err);
    }
    expect(output).toBe('');
  });
});
