/** Public data types shared by the engine wrapper and the algorithms. */

/** The four per-layer scalars, each of length `numLayers`. All ones = the original model. */
export interface Theta {
  bAtt: Float32Array;
  sAtt: Float32Array;
  bMlp: Float32Array;
  sMlp: Float32Array;
}

/** One training sample: token ids; loss is taken on the response tokens only. */
export interface Sample {
  prompt: number[];
  response: number[];
}

export type Dataset = Sample[];

export type Device = 'cpu' | 'cuda';

export interface ModelConfig {
  arch: string;
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeType: 'default' | 'linear' | 'llama3';
  tieWordEmbeddings: boolean;
  qkvBias: boolean;
  qkNorm: boolean;
  bosTokenIds: number[];
  eosTokenIds: number[];
  /** Layers whose attention weights are absent from the checkpoint (DeciLM no_op layers). */
  attentionAbsent: number[];
  /** Parameter count of the checkpoint (tied embeddings counted once). */
  parameters: number;
  /** dtype of the checkpoint tensors, e.g. "F32", "BF16". */
  dtype: string;
}

export interface BatchOptions {
  /** Layers whose attention block is skipped (not computed at all). */
  skip?: number[];
  /** Divide by response tokens instead of by samples. */
  tokenMean?: boolean;
  /** Recompute each layer's internals in the backward pass instead of keeping them. */
  recompute?: boolean;
}

export interface LossResult {
  loss: number;
  responseTokens: number;
  /** Per-sample sum of response-token negative log-likelihood. */
  sampleNll: Float64Array;
  /** Peak activation/workspace bytes of this call. */
  peakBytes: number;
}

export interface LossAndGradResult extends LossResult {
  grad: Theta;
}

export interface GenerateOptions {
  maxNewTokens?: number;
  theta?: Theta;
  skip?: number[];
  /** Token ids that end a sequence (not included in the output). Defaults to the model's eos ids. */
  stop?: number[];
}

export interface LayerStats {
  /** mean over tokens of cos(h, x1): the attention sub-layer. */
  cosAttn: number[];
  /** mean over tokens of cos(x1, h_next): the MLP sub-layer. */
  cosMlp: number[];
  /** mean over tokens of cos(h, h_next): the whole block. */
  cosBlock: number[];
  /** ShortGPT block influence, 1 - cosBlock. */
  blockInfluence: number[];
  /** Hidden states (tokens x hidden) of the requested layer inputs. */
  hidden: Float32Array[];
}

export interface Tokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  applyChatTemplate(
    messages: { role: string; content: string }[],
    opts?: { addGenerationPrompt?: boolean },
  ): number[];
  readonly hasChatTemplate: boolean;
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
}

/** A loaded model: an engine plus its config and tokenizer. */
/** GEMM arithmetic of a loaded model. */
export type Precision = 'f32' | 'bf16';

export interface Model {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly device: Device;
  /**
   * Arithmetic of the CPU engine's weight GEMMs: 'f32' (default), or 'bf16' (both operands
   * rounded to bf16, products summed in fp32; see `LoadOptions.precision`). The CUDA engine
   * always computes in bf16 and reports 'bf16'.
   */
  readonly precision: Precision;
  readonly tokenizer: Tokenizer;
  /** Stable digest of the config and weights, used to match datasets, adapters and checkpoints. */
  readonly fingerprint: string;
  lossAndGrad(samples: Sample[], theta: Theta, opts?: BatchOptions): Promise<LossAndGradResult>;
  loss(samples: Sample[], theta: Theta, opts?: BatchOptions): Promise<LossResult>;
  logits(tokens: number[], opts?: { theta?: Theta; skip?: number[] }): Promise<Float32Array>;
  generate(prompts: number[][], opts?: GenerateOptions): Promise<number[][]>;
  layerStats(samples: Sample[], opts?: { theta?: Theta; skip?: number[]; hiddenLayers?: number[] }): Promise<LayerStats>;
  dispose(): void;
  [Symbol.asyncDispose](): Promise<void>;
}
