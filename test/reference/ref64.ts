/**
 * Plain float64 forward pass of the supported decoders, written for clarity and used as the
 * independent reference of the engine tests. It follows the forward pass of docs/concepts.md and the
 * Hugging Face transformers modelling code:
 *
 *   h0     = embed[tokens] (* embedding_multiplier, Granite)
 *   A      = o_proj(attn(rope(qk_norm(q_proj(n))), rope(qk_norm(k_proj(n))), v_proj(n)))   n = RMSNorm(h)
 *            (* residual_multiplier, Granite); skipped layer: A is not computed
 *   x1     = b_att * A + s_att * h                       (skipped: x1 = s_att * h)
 *   M      = down(silu(gate(m)) * up(m))  m = RMSNorm(x1)   (* residual_multiplier, Granite)
 *   h_next = b_mlp * M + s_mlp * x1
 *   logits = lm_head(RMSNorm(h_L)) (/ logits_scaling, Granite)
 *
 * Each sample is run on its own, so positions restart at 0 and attention never crosses samples.
 * Loss: response token t is predicted by position t - 1; L = (1/N) sum of response NLL, or
 * divided by the response-token count with `tokenMean`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readModelTensors, type RefTensor } from './safetensors-js.js';

export interface RefThetaLike {
  bAtt: ArrayLike<number>;
  sAtt: ArrayLike<number>;
  bMlp: ArrayLike<number>;
  sMlp: ArrayLike<number>;
}

export interface RefThetaNumbers {
  bAtt: number[];
  sAtt: number[];
  bMlp: number[];
  sMlp: number[];
}

export interface RefSample {
  prompt: number[];
  response: number[];
}

export interface RefLossOptions {
  skip?: number[];
  tokenMean?: boolean;
}

export interface RefConfig {
  arch: string;
  modelType: string;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  eps: number;
  ropeTheta: number;
  ropeScaling: Record<string, unknown> | null;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
  slidingWindow: number | null;
  embeddingMultiplier: number;
  residualMultiplier: number;
  attentionScale: number;
  logitsScaling: number;
}

/** Intermediate values of one layer for one sample (tokens x hidden, row-major). */
export interface RefLayerTrace {
  h: Float64Array;
  A: Float64Array | null;
  x1: Float64Array;
  M: Float64Array;
  hNext: Float64Array;
}

export interface RefModel {
  readonly config: RefConfig;
  /** RoPE inverse frequencies after scaling (length headDim / 2). */
  readonly invFreq: Float64Array;
  logits(tokens: number[], theta?: RefThetaLike, skip?: number[]): Float64Array;
  trace(tokens: number[], theta?: RefThetaLike, skip?: number[]): RefLayerTrace[];
  loss(samples: RefSample[], theta?: RefThetaLike, opts?: RefLossOptions): { loss: number; sampleNll: number[]; responseTokens: number };
  gradFD(samples: RefSample[], theta?: RefThetaLike, opts?: RefLossOptions, h?: number): RefThetaNumbers;
}

export const ARCHS = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'GraniteForCausalLM'];

function num(v: unknown, fallback?: number): number {
  if (typeof v === 'number') return v;
  if (fallback !== undefined && (v === undefined || v === null)) return fallback;
  throw new Error(`expected a number, got ${JSON.stringify(v)}`);
}

export function parseConfig(raw: Record<string, unknown>): RefConfig {
  const arch = (raw.architectures as string[] | undefined)?.[0] ?? '';
  if (!ARCHS.includes(arch)) throw new Error(`ref64: unsupported architecture ${arch}`);
  const hidden = num(raw.hidden_size);
  const heads = num(raw.num_attention_heads);
  const headDim = num(raw.head_dim, hidden / heads);
  const granite = arch === 'GraniteForCausalLM';
  const attentionBias = raw.attention_bias === true;
  const useSliding = raw.use_sliding_window === true;
  let slidingWindow: number | null = null;
  if (arch === 'MistralForCausalLM' && typeof raw.sliding_window === 'number') slidingWindow = raw.sliding_window;
  if ((arch === 'Qwen2ForCausalLM' || arch === 'Qwen3ForCausalLM') && useSliding)
    throw new Error('ref64: use_sliding_window is not supported');
  return {
    arch,
    modelType: String(raw.model_type ?? ''),
    hidden,
    layers: num(raw.num_hidden_layers),
    heads,
    kvHeads: num(raw.num_key_value_heads, heads),
    headDim,
    intermediate: num(raw.intermediate_size),
    vocab: num(raw.vocab_size),
    eps: num(raw.rms_norm_eps, 1e-6),
    ropeTheta: num(raw.rope_theta, 10000),
    ropeScaling: (raw.rope_scaling as Record<string, unknown> | null | undefined) ?? null,
    tied: raw.tie_word_embeddings === true,
    qkvBias: arch === 'Qwen2ForCausalLM' || (arch !== 'MistralForCausalLM' && attentionBias),
    oBias: arch !== 'Qwen2ForCausalLM' && arch !== 'MistralForCausalLM' && attentionBias,
    mlpBias: arch === 'LlamaForCausalLM' && raw.mlp_bias === true,
    qkNorm: arch === 'Qwen3ForCausalLM',
    slidingWindow,
    embeddingMultiplier: granite ? num(raw.embedding_multiplier, 1) : 1,
    residualMultiplier: granite ? num(raw.residual_multiplier, 1) : 1,
    attentionScale: granite ? num(raw.attention_multiplier, 1) : 1 / Math.sqrt(headDim),
    logitsScaling: granite ? num(raw.logits_scaling, 1) : 1,
  };
}

/**
 * RoPE inverse frequencies, as transformers' rope init functions compute them:
 * default theta^(-2i/D); linear divides by `factor`; llama3 keeps high frequencies, divides low
 * ones by `factor` and interpolates in between.
 */
export function ropeInvFreq(c: RefConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s === null) return inv;
  const type = String(s.rope_type ?? s.type ?? 'default');
  if (type === 'default') return inv;
  const factor = num(s.factor);
  if (type === 'linear') {
    for (let i = 0; i < half; i++) inv[i]! /= factor;
    return inv;
  }
  if (type === 'llama3') {
    const low = num(s.low_freq_factor);
    const high = num(s.high_freq_factor);
    const oldContext = num(s.original_max_position_embeddings);
    const lowFreqWavelen = oldContext / low;
    const highFreqWavelen = oldContext / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highFreqWavelen) continue;
      if (wavelen > lowFreqWavelen) {
        inv[i] = f / factor;
        continue;
      }
      const smooth = (oldContext / wavelen - low) / (high - low);
      inv[i] = (1 - smooth) * (f / factor) + smooth * f;
    }
    return inv;
  }
  throw new Error(`ref64: unsupported rope_scaling type ${type}`);
}

/** y[t, o] = sum_i W[o, i] x[t, i] (+ b[o]); W is [out, in] as in HF Linear. */
function linear(x: Float64Array, T: number, inDim: number, W: RefTensor, outDim: number, b?: RefTensor): Float64Array {
  if (W.shape[0] !== outDim || W.shape[1] !== inDim)
    throw new Error(`ref64: weight shape ${JSON.stringify(W.shape)}, expected [${outDim}, ${inDim}]`);
  const y = new Float64Array(T * outDim);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < outDim; o++) {
      let acc = b ? b.data[o]! : 0;
      for (let i = 0; i < inDim; i++) acc += W.data[o * inDim + i]! * x[t * inDim + i]!;
      y[t * outDim + o] = acc;
    }
  }
  return y;
}

/** RMSNorm over rows of width `dim`: x / sqrt(mean(x^2) + eps) * w. */
function rmsNorm(x: Float64Array, rows: number, dim: number, w: RefTensor, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i]! * inv * w.data[i]!;
  }
  return y;
}

/** rotate_half RoPE on every head of x (T x nHeads x D), in place. */
function applyRope(x: Float64Array, T: number, nHeads: number, D: number, invFreq: Float64Array): void {
  const half = D / 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * D;
      for (let i = 0; i < half; i++) {
        const angle = t * invFreq[i]!;
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        const a = x[base + i]!;
        const b = x[base + i + half]!;
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    }
  }
}

function silu(z: number): number {
  return z / (1 + Math.exp(-z));
}

export function loadRef(dir: string): RefModel {
  const raw = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const c = parseConfig(raw);
  const tensors = readModelTensors(dir);
  const get = (name: string): RefTensor => {
    const t = tensors.get(name);
    if (!t) throw new Error(`ref64: tensor ${name} missing in ${dir}`);
    return t;
  };
  const invFreq = ropeInvFreq(c);
  const { hidden: H, heads: nH, kvHeads: nKV, headDim: D, intermediate: I, vocab: V } = c;
  const embed = get('model.embed_tokens.weight');
  const lmHead = c.tied ? embed : get('lm_head.weight');
  const finalNorm = get('model.norm.weight');

  const layerWeights = Array.from({ length: c.layers }, (_, l) => {
    const p = `model.layers.${l}`;
    return {
      inNorm: get(`${p}.input_layernorm.weight`),
      q: get(`${p}.self_attn.q_proj.weight`),
      k: get(`${p}.self_attn.k_proj.weight`),
      v: get(`${p}.self_attn.v_proj.weight`),
      o: get(`${p}.self_attn.o_proj.weight`),
      qb: c.qkvBias ? get(`${p}.self_attn.q_proj.bias`) : undefined,
      kb: c.qkvBias ? get(`${p}.self_attn.k_proj.bias`) : undefined,
      vb: c.qkvBias ? get(`${p}.self_attn.v_proj.bias`) : undefined,
      ob: c.oBias ? get(`${p}.self_attn.o_proj.bias`) : undefined,
      qNorm: c.qkNorm ? get(`${p}.self_attn.q_norm.weight`) : undefined,
      kNorm: c.qkNorm ? get(`${p}.self_attn.k_norm.weight`) : undefined,
      postNorm: get(`${p}.post_attention_layernorm.weight`),
      gate: get(`${p}.mlp.gate_proj.weight`),
      up: get(`${p}.mlp.up_proj.weight`),
      down: get(`${p}.mlp.down_proj.weight`),
      gateB: c.mlpBias ? get(`${p}.mlp.gate_proj.bias`) : undefined,
      upB: c.mlpBias ? get(`${p}.mlp.up_proj.bias`) : undefined,
      downB: c.mlpBias ? get(`${p}.mlp.down_proj.bias`) : undefined,
    };
  });

  const ones = (): RefThetaLike => {
    const a = new Array<number>(c.layers).fill(1);
    return { bAtt: a, sAtt: a, bMlp: a, sMlp: a };
  };

  function attention(x: Float64Array, T: number, l: number): Float64Array {
    const w = layerWeights[l]!;
    const n = rmsNorm(x, T, H, w.inNorm, c.eps);
    const q = linear(n, T, H, w.q, nH * D, w.qb);
    const k = linear(n, T, H, w.k, nKV * D, w.kb);
    const v = linear(n, T, H, w.v, nKV * D, w.vb);
    const qn = w.qNorm ? rmsNorm(q, T * nH, D, w.qNorm, c.eps) : q;
    const kn = w.kNorm ? rmsNorm(k, T * nKV, D, w.kNorm, c.eps) : k;
    applyRope(qn, T, nH, D, invFreq);
    applyRope(kn, T, nKV, D, invFreq);
    const rep = nH / nKV;
    const ctx = new Float64Array(T * nH * D);
    const scores = new Float64Array(T);
    for (let h = 0; h < nH; h++) {
      const kvh = Math.floor(h / rep);
      for (let t = 0; t < T; t++) {
        const first = c.slidingWindow === null ? 0 : Math.max(0, t - c.slidingWindow + 1);
        let max = -Infinity;
        for (let s = first; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qn[(t * nH + h) * D + d]! * kn[(s * nKV + kvh) * D + d]!;
          scores[s] = dot * c.attentionScale;
          if (scores[s]! > max) max = scores[s]!;
        }
        let sum = 0;
        for (let s = first; s <= t; s++) {
          scores[s] = Math.exp(scores[s]! - max);
          sum += scores[s]!;
        }
        for (let s = first; s <= t; s++) {
          const p = scores[s]! / sum;
          for (let d = 0; d < D; d++) ctx[(t * nH + h) * D + d]! += p * v[(s * nKV + kvh) * D + d]!;
        }
      }
    }
    const out = linear(ctx, T, nH * D, w.o, H, w.ob);
    if (c.residualMultiplier !== 1) for (let i = 0; i < out.length; i++) out[i]! *= c.residualMultiplier;
    return out;
  }

  function mlp(x: Float64Array, T: number, l: number): Float64Array {
    const w = layerWeights[l]!;
    const n = rmsNorm(x, T, H, w.postNorm, c.eps);
    const g = linear(n, T, H, w.gate, I, w.gateB);
    const u = linear(n, T, H, w.up, I, w.upB);
    for (let i = 0; i < g.length; i++) g[i] = silu(g[i]!) * u[i]!;
    const out = linear(g, T, I, w.down, H, w.downB);
    if (c.residualMultiplier !== 1) for (let i = 0; i < out.length; i++) out[i]! *= c.residualMultiplier;
    return out;
  }

  function run(tokens: number[], theta: RefThetaLike, skip: number[]): { traces: RefLayerTrace[]; logits: Float64Array } {
    const T = tokens.length;
    if (T === 0) throw new Error('ref64: empty token sequence');
    for (const l of skip) if (!Number.isInteger(l) || l < 0 || l >= c.layers) throw new Error(`ref64: skip layer ${l} out of range`);
    let h = new Float64Array(T * H);
    for (let t = 0; t < T; t++) {
      const id = tokens[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`ref64: token ${id} out of range`);
      for (let i = 0; i < H; i++) h[t * H + i] = embed.data[id * H + i]! * c.embeddingMultiplier;
    }
    const traces: RefLayerTrace[] = [];
    for (let l = 0; l < c.layers; l++) {
      const skipped = skip.includes(l);
      const A = skipped ? null : attention(h, T, l);
      const x1 = new Float64Array(T * H);
      for (let i = 0; i < x1.length; i++) x1[i] = (A ? theta.bAtt[l]! * A[i]! : 0) + theta.sAtt[l]! * h[i]!;
      const M = mlp(x1, T, l);
      const hNext = new Float64Array(T * H);
      for (let i = 0; i < hNext.length; i++) hNext[i] = theta.bMlp[l]! * M[i]! + theta.sMlp[l]! * x1[i]!;
      traces.push({ h, A, x1, M, hNext });
      h = hNext;
    }
    const n = rmsNorm(h, T, H, finalNorm, c.eps);
    const logits = linear(n, T, H, lmHead, V);
    if (c.logitsScaling !== 1) for (let i = 0; i < logits.length; i++) logits[i]! /= c.logitsScaling;
    return { traces, logits };
  }

  function loss(samples: RefSample[], theta: RefThetaLike = ones(), opts: RefLossOptions = {}) {
    if (samples.length === 0) throw new Error('ref64: empty batch');
    const skip = opts.skip ?? [];
    const sampleNll: number[] = [];
    let responseTokens = 0;
    for (const s of samples) {
      if (s.prompt.length === 0) throw new Error('ref64: a sample needs at least one prompt token');
      if (s.response.length === 0) throw new Error('ref64: a sample needs at least one response token');
      const tokens = [...s.prompt, ...s.response];
      const { logits } = run(tokens, theta, skip);
      let nll = 0;
      for (let j = 0; j < s.response.length; j++) {
        const row = s.prompt.length + j - 1;
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, logits[row * V + v]!);
        let sum = 0;
        for (let v = 0; v < V; v++) sum += Math.exp(logits[row * V + v]! - max);
        nll += max + Math.log(sum) - logits[row * V + s.response[j]!]!;
      }
      sampleNll.push(nll);
      responseTokens += s.response.length;
    }
    const total = sampleNll.reduce((a, b) => a + b, 0);
    return { loss: total / (opts.tokenMean ? responseTokens : samples.length), sampleNll, responseTokens };
  }

  function gradFD(samples: RefSample[], theta: RefThetaLike = ones(), opts: RefLossOptions = {}, h = 1e-5): RefThetaNumbers {
    const base: RefThetaNumbers = {
      bAtt: Array.from(theta.bAtt),
      sAtt: Array.from(theta.sAtt),
      bMlp: Array.from(theta.bMlp),
      sMlp: Array.from(theta.sMlp),
    };
    const grad: RefThetaNumbers = { bAtt: [], sAtt: [], bMlp: [], sMlp: [] };
    const skip = opts.skip ?? [];
    for (const key of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) {
      for (let l = 0; l < c.layers; l++) {
        if (key === 'bAtt' && skip.includes(l)) {
          grad[key].push(0);
          continue;
        }
        const at = (delta: number): number => {
          const t = { ...base, [key]: base[key].map((v, i) => (i === l ? v + delta : v)) };
          return loss(samples, t, opts).loss;
        };
        grad[key].push((at(h) - at(-h)) / (2 * h));
      }
    }
    return grad;
  }

  return {
    config: c,
    invFreq,
    logits: (tokens, theta = ones(), skip = []) => run(tokens, theta, skip).logits,
    trace: (tokens, theta = ones(), skip = []) => run(tokens, theta, skip).traces,
    loss,
    gradFD,
  };
}
