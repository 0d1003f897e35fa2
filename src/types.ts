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
  /**
   * Set by `recoverySet` (and kept in dataset files) when the answer was cut by the token
   * limit or the model's context instead of ending with a stop token. Absent otherwise.
   */
  truncated?: boolean;
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
  /**
   * config.json's max_position_embeddings: the longest sequence (prompt + response, or
   * prompt + new tokens) every engine call accepts (HOPSCOTCH_ERR_CONTEXT beyond it). With
   * llama3 rope scaling this is already the extended context, as transformers reads it.
   */
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
  /**
   * CUDA: bytes the engine may hold on the GPU, weights included (default: the free GPU
   * memory). lossAndGrad keeps each layer's internals while they fit and recomputes
   * the layers that do not.
   */
  maxMemory?: number;
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
  /**
   * Most new tokens per prompt. Prompt + maxNewTokens must fit the model's context
   * (HOPSCOTCH_ERR_CONTEXT otherwise: refused, not capped). Default 128, lowered when
   * unset so that the longest prompt fits.
   */
  maxNewTokens?: number;
  theta?: Theta;
  skip?: number[];
  /** Token ids that end a sequence. Defaults to the tokenizer's `stopTokenIds`. */
  stop?: number[];
  /**
   * End each finished output with the stop token that ended it (it counts toward
   * `maxNewTokens`); an output without one was cut by `maxNewTokens`. Default false: the
   * stop token is not part of the output.
   */
  includeStop?: boolean;
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
  /** End-of-sequence ids of config.json and generation_config.json (`eos_token_id`, a number or a list). */
  readonly eosTokenIds: number[];
  /**
   * Every token that ends an answer: `eosTokenIds` plus the chat template's end-of-turn
   * token (e.g. `<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`) when the template ends an
   * assistant turn with one. The default stop ids of `generate` and `recoverySet`.
   */
  readonly stopTokenIds: number[];
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
