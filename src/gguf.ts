/**
 * The `gguf` export: a single GGUF file for llama.cpp (and node-llama-cpp, llama-server,
 * the other llama.cpp-based runtimes) with theta folded into the weights as in `hf`.
 *
 * - Nothing skipped: architecture `llama` (Llama, Mistral), `qwen2` or `qwen3`.
 * - Attention skipped: architecture `deci` (llama.cpp's reader of the heterogeneous
 *   Nemotron-NAS models). Its per-layer `deci.attention.head_count` /
 *   `head_count_kv` arrays hold 0 for a skipped layer, and that layer has no
 *   `attn_norm` / `attn_q` / `attn_k` / `attn_v` / `attn_output` tensors: llama.cpp
 *   computes no attention there and keeps no KV cache for it.
 *
 * TypeScript plans every tensor (name, source, fold factor, row permutation, type) and
 * the metadata, refusing what llama.cpp cannot express before anything is written; the
 * addon then streams the file natively, one tensor in memory at a time, into a
 * temporary file that it reads back before renaming it to `out`.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { ErrorCodes, HopscotchError, fromNative } from './errors.js';
import { binding, type GgufExportTensor, type GgufInfo, type GgufKeyValue, type GgufTensorType } from './native/binding.js';
import type { Model } from './types.js';

/** Tensor types a GGUF export writes for its 2-D weights (1-D tensors are always F32). */
export type GgufTensorTypeName = GgufTensorType;
/** The values `ggufType` accepts. */
export const GGUF_TENSOR_TYPES: readonly GgufTensorTypeName[] = ['F32', 'F16', 'BF16', 'Q8_0'];

/** llama.cpp's `general.file_type` (enum llama_ftype) for each output type. */
const FILE_TYPE: Record<GgufTensorTypeName, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };

/** llama.cpp token types (enum llama_token_type). */
const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * Pre-tokenizer regexes of byte-level BPE tokenizers and the `tokenizer.ggml.pre` name
 * llama.cpp gives them (llama-vocab.cpp); any other regex must be named by the caller.
 */
const KNOWN_PRE: ReadonlyArray<{ pre: string; regex: string }> = [
  {
    pre: 'llama-bpe',
    regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  },
  {
    pre: 'qwen2',
    regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  },
  {
    pre: 'tekken',
    regex:
      '[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
  },
];

export interface GgufPlanOptions {
  /** Type of the 2-D weights. Default: the checkpoint's own (F32, F16 or BF16). */
  tensorType?: GgufTensorTypeName;
  /** `tokenizer.ggml.pre` for a byte-level BPE tokenizer whose pre-tokenizer is not recognised. */
  tokenizerPre?: string;
}

/** The llama.cpp architecture a `gguf` export writes (`deci` when attention blocks are skipped). */
export type GgufArchitecture = 'llama' | 'deci' | 'qwen2' | 'qwen3';

/** Tokenizer model written (`llama`: SentencePiece-style, `gpt2`: byte-level BPE) and its pre-tokenizer. */
export interface GgufTokenizerInfo {
  model: 'llama' | 'gpt2';
  pre?: string;
  tokens: number;
  merges: number;
}

/** What a `gguf` export writes: architecture, metadata and every tensor with its source, fold factor and type. */
export interface GgufPlan {
  architecture: GgufArchitecture;
  tensorType: GgufTensorTypeName;
  metadata: GgufKeyValue[];
  tensors: GgufExportTensor[];
  tokenizer: GgufTokenizerInfo;
  /** 2-D weights written as F16 because Q8_0 needs rows that are a multiple of 32 (as llama.cpp's converter does). */
  f16Fallback: string[];
}

type Json = Record<string, unknown>;

function exportError(message: string): HopscotchError {
  return new HopscotchError(ErrorCodes.EXPORT, message);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readJson(file: string): Json | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return isObject(v) ? v : undefined;
  } catch (err) {
    throw new HopscotchError(ErrorCodes.TOKENIZER, `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

const kv = (key: string, type: GgufKeyValue['type'], value: GgufKeyValue['value']): GgufKeyValue => ({ key, type, value });
const arr = (key: string, elemType: NonNullable<GgufKeyValue['elemType']>, value: Array<number | string | boolean>): GgufKeyValue => ({
  key,
  type: 'array',
  elemType,
  value,
});

/**
 * Refusals that depend only on the model and the skip list (checked before any work).
 * Returns the architecture that will be written.
 */
export function ggufArchitecture(model: Model, skipped: number[]): GgufPlan['architecture'] {
  const c = model.config;
  const where = `cannot export ${c.arch} at ${model.dir} as gguf`;
  let arch: GgufPlan['architecture'];
  if (c.arch === 'LlamaForCausalLM' || c.arch === 'MistralForCausalLM') arch = 'llama';
  else if (c.arch === 'Qwen2ForCausalLM') arch = 'qwen2';
  else if (c.arch === 'Qwen3ForCausalLM') arch = 'qwen3';
  else if (c.arch === 'DeciLMForCausalLM') arch = 'llama';
  else throw exportError(`${where}: only Llama, Mistral, Qwen2 and Qwen3 checkpoints are written as GGUF (Granite's multipliers have no place in llama.cpp's llama/deci graphs)`);
  if (c.attentionAbsent.length > 0 && skipped.length === 0)
    throw exportError(`${where}: the checkpoint has no attention weights in layers ${c.attentionAbsent.join(', ')}; they must be in the skip list`);
  if (skipped.length === 0) return arch;
  if (arch === 'qwen2')
    throw exportError(
      `${where} with skipped attention: attention-free layers exist only in llama.cpp's deci architecture, which is Llama's graph; ` +
        "Qwen2's q/k/v biases are not written into it by this export. Export without skipping (as qwen2), or use format hf",
    );
  if (arch === 'qwen3')
    throw exportError(`${where} with skipped attention: llama.cpp's deci architecture has no q/k RMSNorm (Qwen3); export without skipping, or use format hf`);
  if (skipped.includes(0))
    throw exportError(
      `${where}: layer 0 is skipped; llama.cpp takes a deci model's head size and RoPE dimension from layer 0's head count, ` +
        'so with no attention in layer 0 they are 0 and its loader aborts (GGML_ASSERT in llama-model-loader.cpp, seen with the ' +
        'llama.cpp of node-llama-cpp 3.21.1 and 3.22.1); choose a skip list without layer 0',
    );
  return 'deci';
}

// ---------------------------------------------------------------------------------------
// Tokenizer

/** The tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`) of a model folder. */
export function tokenizerMetadata(model: Model, pre?: string): { kvs: GgufKeyValue[]; info: GgufPlan['tokenizer'] } {
  const dir = model.dir;
  const tj = readJson(join(dir, 'tokenizer.json'));
  if (!tj) throw new HopscotchError(ErrorCodes.TOKENIZER, `${dir}: the gguf export embeds the tokenizer and needs tokenizer.json`);
  const tc = readJson(join(dir, 'tokenizer_config.json')) ?? {};
  const m = tj.model;
  if (!isObject(m) || m.type !== 'BPE' || !isObject(m.vocab))
    throw new HopscotchError(ErrorCodes.TOKENIZER, `${dir}/tokenizer.json: only BPE tokenizers (SentencePiece-style or byte-level) are written to GGUF, got ${isObject(m) ? String(m.type) : 'none'}`);
  const vocab = m.vocab as Record<string, number>;
  const size = model.config.vocabSize;
  const tokens: string[] = new Array<string>(size);
  const types: number[] = new Array<number>(size).fill(TOKEN_TYPE.NORMAL);
  for (const [text, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || id < 0 || id >= size)
      throw new HopscotchError(ErrorCodes.TOKENIZER, `${dir}/tokenizer.json: token ${JSON.stringify(text)} has id ${id} outside the model's vocabulary of ${size}`);
    tokens[id] = text;
  }
  const added = Array.isArray(tj.added_tokens) ? tj.added_tokens.filter(isObject) : [];
  for (const a of added) {
    const id = a.id;
    if (typeof id !== 'number' || typeof a.content !== 'string') continue;
    if (id < 0 || id >= size) throw new HopscotchError(ErrorCodes.TOKENIZER, `${dir}/tokenizer.json: added token ${JSON.stringify(a.content)} has id ${id} outside the vocabulary of ${size}`);
    tokens[id] = a.content;
    types[id] = a.special === true ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  }
  for (let i = 0; i < size; i++)
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.UNUSED;
    }
  const merges: string[] = (Array.isArray(m.merges) ? m.merges : []).map((x) => (Array.isArray(x) ? x.join(' ') : String(x)));
  const idOf = (t: unknown): number | undefined => {
    const s = typeof t === 'string' ? t : isObject(t) && typeof t.content === 'string' ? t.content : undefined;
    if (s === undefined) return undefined;
    const i = tokens.indexOf(s);
    return i >= 0 ? i : undefined;
  };
  const unk = idOf(m.unk_token);
  if (unk !== undefined) types[unk] = TOKEN_TYPE.UNKNOWN;

  const json = JSON.stringify([tj.pre_tokenizer ?? null, tj.decoder ?? null]);
  const byteLevel = json.includes('"ByteLevel"');
  const kvs: GgufKeyValue[] = [];
  let info: GgufPlan['tokenizer'];
  if (!byteLevel) {
    if (m.byte_fallback !== true)
      throw new HopscotchError(ErrorCodes.TOKENIZER, `${dir}/tokenizer.json: a BPE tokenizer that is neither byte-level nor SentencePiece-style (byte_fallback) cannot be written to GGUF`);
    // SentencePiece-style: llama.cpp merges the adjacent pair whose result has the
    // highest score, so a merged token scores minus the rank of its first merge.
    const scores = new Array<number>(size).fill(0);
    const rank = new Map<string, number>();
    merges.forEach((mg, r) => {
      const sp = mg.indexOf(' ');
      const result = mg.slice(0, sp) + mg.slice(sp + 1);
      if (!rank.has(result)) rank.set(result, r);
    });
    for (let i = 0; i < size; i++) {
      if (/^<0x[0-9A-F]{2}>$/.test(tokens[i]!) && types[i] === TOKEN_TYPE.NORMAL) types[i] = TOKEN_TYPE.BYTE;
      const r = rank.get(tokens[i]!);
      scores[i] = r === undefined ? -(merges.length + 1) : -r;
      if (types[i] !== TOKEN_TYPE.NORMAL && types[i] !== TOKEN_TYPE.USER_DEFINED) scores[i] = 0;
    }
    const norm = JSON.stringify([tj.normalizer ?? null, tj.pre_tokenizer ?? null]);
    const addSpacePrefix = /"Prepend","prepend":"▁"/.test(norm) || /"Metaspace"[^}]*"(prepend_scheme":"(always|first)"|add_prefix_space":true)/.test(norm);
    kvs.push(kv('tokenizer.ggml.model', 'string', 'llama'));
    kvs.push(arr('tokenizer.ggml.tokens', 'string', tokens));
    kvs.push(arr('tokenizer.ggml.scores', 'f32', scores));
    kvs.push(arr('tokenizer.ggml.token_type', 'i32', types));
    kvs.push(kv('tokenizer.ggml.add_space_prefix', 'bool', addSpacePrefix));
    info = { model: 'llama', tokens: size, merges: 0 };
  } else {
    let name = pre;
    if (name === undefined) {
      const regexes = [...json.matchAll(/"Regex":"((?:[^"\\]|\\.)*)"/g)].map((x) => JSON.parse(`"${x[1]}"`) as string);
      if (regexes.length === 0) name = 'gpt-2';
      else name = KNOWN_PRE.find((k) => regexes.includes(k.regex))?.pre;
      if (name === undefined)
        throw exportError(
          `${dir}/tokenizer.json: the byte-level pre-tokenizer regex is not one this export recognises (${regexes[0]}); ` +
            "pass tokenizerPre (CLI --tokenizer-pre) with llama.cpp's name for it (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_*)",
        );
    }
    kvs.push(kv('tokenizer.ggml.model', 'string', 'gpt2'));
    kvs.push(kv('tokenizer.ggml.pre', 'string', name));
    kvs.push(arr('tokenizer.ggml.tokens', 'string', tokens));
    kvs.push(arr('tokenizer.ggml.token_type', 'i32', types));
    kvs.push(arr('tokenizer.ggml.merges', 'string', merges));
    info = { model: 'gpt2', pre: name, tokens: size, merges: merges.length };
  }
  const c = model.config;
  const bos = c.bosTokenIds[0] ?? idOf(tc.bos_token);
  const eos = c.eosTokenIds[0] ?? idOf(tc.eos_token);
  const pad = idOf(tc.pad_token);
  if (bos !== undefined) kvs.push(kv('tokenizer.ggml.bos_token_id', 'u32', bos));
  if (eos !== undefined) kvs.push(kv('tokenizer.ggml.eos_token_id', 'u32', eos));
  if (unk !== undefined) kvs.push(kv('tokenizer.ggml.unknown_token_id', 'u32', unk));
  if (pad !== undefined) kvs.push(kv('tokenizer.ggml.padding_token_id', 'u32', pad));
  // As transformers: Llama-family classes take add_bos_token (default true); others add
  // what the post-processor adds.
  const bosText = bos === undefined ? undefined : tokens[bos];
  const post = JSON.stringify(tj.post_processor ?? null);
  const llamaClass = typeof tc.tokenizer_class === 'string' && /^(Code)?LlamaTokenizer(Fast)?$/.test(tc.tokenizer_class);
  const addBos =
    typeof tc.add_bos_token === 'boolean' ? tc.add_bos_token : llamaClass ? true : bosText !== undefined && post.includes(`"id":${JSON.stringify(bosText)}`);
  kvs.push(kv('tokenizer.ggml.add_bos_token', 'bool', addBos));
  kvs.push(kv('tokenizer.ggml.add_eos_token', 'bool', tc.add_eos_token === true));
  const jinja = join(dir, 'chat_template.jinja');
  let template: string | undefined;
  if (existsSync(jinja)) template = readFileSync(jinja, 'utf8');
  else if (typeof tc.chat_template === 'string') template = tc.chat_template;
  else if (Array.isArray(tc.chat_template)) {
    const def = tc.chat_template.find((e): e is { name: string; template: string } => isObject(e) && e.name === 'default' && typeof e.template === 'string');
    template = def?.template;
  }
  if (template !== undefined) kvs.push(kv('tokenizer.chat_template', 'string', template));
  return { kvs, info };
}

// ---------------------------------------------------------------------------------------
// Tensors and hyperparameters

/** Llama 3 RoPE frequency divisors, as llama.cpp's converter writes them into `rope_freqs.weight`. */
export function llama3RopeFactors(raw: Json, headDim: number, ropeTheta: number): Float32Array {
  const rs = (raw.rope_scaling ?? {}) as Json;
  const factor = typeof rs.factor === 'number' ? rs.factor : 8;
  const low = typeof rs.low_freq_factor === 'number' ? rs.low_freq_factor : 1;
  const high = typeof rs.high_freq_factor === 'number' ? rs.high_freq_factor : 4;
  const old = typeof rs.original_max_position_embeddings === 'number' ? rs.original_max_position_embeddings : 8192;
  const lowWavelen = old / low;
  const highWavelen = old / high;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    const freq = 1 / Math.pow(ropeTheta, (2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = (old / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

interface SourceShape {
  dtype: string;
  shape: number[];
}

/**
 * Plans a GGUF export of `model` with `fit` folded in. `factors` are the fold's per-layer
 * output scales (export.ts foldFactors); `src` the checkpoint's tensors.
 */
export function planGguf(
  model: Model,
  skipped: number[],
  factors: { att: number[]; mlp: number[] },
  src: Map<string, SourceShape>,
  opts: GgufPlanOptions,
): GgufPlan {
  const c = model.config;
  const architecture = ggufArchitecture(model, skipped);
  const raw = JSON.parse(readFileSync(join(model.dir, 'config.json'), 'utf8')) as Json;
  const skip = new Set(skipped);
  const srcDtype = [...src.values()].find((t) => t.shape.length === 2)?.dtype ?? 'F32';
  const tensorType: GgufTensorTypeName = opts.tensorType ?? (srcDtype === 'BF16' ? 'BF16' : srcDtype === 'F16' ? 'F16' : 'F32');
  const neox = architecture === 'qwen2' || architecture === 'qwen3';
  const tensors: GgufExportTensor[] = [];
  const f16Fallback: string[] = [];
  const add = (name: string, source: string, extra: Partial<GgufExportTensor> = {}, required = true): void => {
    const s = src.get(source);
    if (!s) {
      if (required) throw new HopscotchError(ErrorCodes.MISSING_TENSOR, `${model.dir}: tensor '${source}' is missing`);
      return;
    }
    let type: GgufTensorTypeName = 'F32';
    if (s.shape.length === 2) {
      type = tensorType;
      if (type === 'Q8_0' && s.shape[1]! % 32 !== 0) {
        type = 'F16';
        f16Fallback.push(name);
      }
    }
    tensors.push({ name, source, shape: s.shape, type, ...extra });
  };
  add('token_embd.weight', 'model.embed_tokens.weight');
  if (c.ropeType === 'llama3') {
    const values = llama3RopeFactors(raw, c.headDim, c.ropeTheta);
    tensors.push({ name: 'rope_freqs.weight', values, shape: [values.length], type: 'F32' });
  }
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const b = `blk.${l}.`;
    if (!skip.has(l)) {
      add(`${b}attn_norm.weight`, `${p}input_layernorm.weight`);
      const qPermute = neox ? {} : { permuteHeads: c.numHeads };
      const kPermute = neox ? {} : { permuteHeads: c.numKvHeads };
      add(`${b}attn_q.weight`, `${p}self_attn.q_proj.weight`, qPermute);
      add(`${b}attn_k.weight`, `${p}self_attn.k_proj.weight`, kPermute);
      add(`${b}attn_v.weight`, `${p}self_attn.v_proj.weight`);
      add(`${b}attn_output.weight`, `${p}self_attn.o_proj.weight`, { scale: factors.att[l]! });
      add(`${b}attn_q.bias`, `${p}self_attn.q_proj.bias`, qPermute, false);
      add(`${b}attn_k.bias`, `${p}self_attn.k_proj.bias`, kPermute, false);
      add(`${b}attn_v.bias`, `${p}self_attn.v_proj.bias`, {}, false);
      add(`${b}attn_output.bias`, `${p}self_attn.o_proj.bias`, { scale: factors.att[l]! }, false);
      if (c.qkNorm) {
        add(`${b}attn_q_norm.weight`, `${p}self_attn.q_norm.weight`);
        add(`${b}attn_k_norm.weight`, `${p}self_attn.k_norm.weight`);
      }
    }
    add(`${b}ffn_norm.weight`, `${p}post_attention_layernorm.weight`);
    add(`${b}ffn_gate.weight`, `${p}mlp.gate_proj.weight`);
    add(`${b}ffn_up.weight`, `${p}mlp.up_proj.weight`);
    add(`${b}ffn_down.weight`, `${p}mlp.down_proj.weight`, { scale: factors.mlp[l]! });
    add(`${b}ffn_gate.bias`, `${p}mlp.gate_proj.bias`, {}, false);
    add(`${b}ffn_up.bias`, `${p}mlp.up_proj.bias`, {}, false);
    add(`${b}ffn_down.bias`, `${p}mlp.down_proj.bias`, { scale: factors.mlp[l]! }, false);
  }
  add('output_norm.weight', 'model.norm.weight');
  if (!c.tieWordEmbeddings) add('output.weight', 'lm_head.weight');

  const a = architecture;
  const L = c.numLayers;
  const metadata: GgufKeyValue[] = [
    kv('general.architecture', 'string', a),
    kv('general.name', 'string', basename(model.dir)),
    kv('general.file_type', 'u32', FILE_TYPE[tensorType]),
  ];
  if (tensorType === 'Q8_0') metadata.push(kv('general.quantization_version', 'u32', 2));
  metadata.push(
    kv(`${a}.vocab_size`, 'u32', c.vocabSize),
    kv(`${a}.context_length`, 'u32', c.maxPositionEmbeddings),
    kv(`${a}.embedding_length`, 'u32', c.hiddenSize),
    kv(`${a}.block_count`, 'u32', L),
  );
  if (a === 'deci') {
    metadata.push(
      arr(`${a}.feed_forward_length`, 'i32', Array.from({ length: L }, () => c.intermediateSize)),
      arr(`${a}.attention.head_count`, 'i32', Array.from({ length: L }, (_, l) => (skip.has(l) ? 0 : c.numHeads))),
      arr(`${a}.attention.head_count_kv`, 'i32', Array.from({ length: L }, (_, l) => (skip.has(l) ? 0 : c.numKvHeads))),
    );
  } else {
    metadata.push(
      kv(`${a}.feed_forward_length`, 'u32', c.intermediateSize),
      kv(`${a}.attention.head_count`, 'u32', c.numHeads),
      kv(`${a}.attention.head_count_kv`, 'u32', c.numKvHeads),
    );
  }
  metadata.push(
    kv(`${a}.attention.key_length`, 'u32', c.headDim),
    kv(`${a}.attention.value_length`, 'u32', c.headDim),
    kv(`${a}.rope.dimension_count`, 'u32', c.headDim),
    kv(`${a}.rope.freq_base`, 'f32', c.ropeTheta),
    kv(`${a}.attention.layer_norm_rms_epsilon`, 'f32', c.rmsNormEps),
  );
  if (c.ropeType === 'linear') {
    const rs = (raw.rope_scaling ?? {}) as Json;
    metadata.push(kv(`${a}.rope.scaling.type`, 'string', 'linear'), kv(`${a}.rope.scaling.factor`, 'f32', Number(rs.factor)));
  }
  const tok = tokenizerMetadata(model, opts.tokenizerPre);
  metadata.push(...tok.kvs);
  return { architecture, tensorType, metadata, tensors, tokenizer: tok.info, f16Fallback };
}

// ---------------------------------------------------------------------------------------
// Reading

/** A GGUF file's header, metadata and tensor table (no tensor data is read). */
export function inspectGguf(path: string): GgufInfo {
  try {
    return binding().inspectGguf(resolve(path));
  } catch (err) {
    throw fromNative(err);
  }
}

/** One tensor of a GGUF file as f32 (F32, F16, BF16 and Q8_0 tensors; Q8_0 dequantized). */
export function readGgufTensor(path: string, name: string): Float32Array {
  try {
    return binding().readGgufTensor(resolve(path), name);
  } catch (err) {
    throw fromNative(err);
  }
}

/** A GGUF file in a few facts (what `hopscotch inspect FILE.gguf` prints). */
export interface GgufSummary {
  architecture: string;
  name?: string;
  layers: number;
  /** Layers with head_count 0 (no attention tensors, no KV cache). */
  attentionFree: number[];
  tensors: number;
  /** Tensor count per ggml type. */
  types: Record<string, number>;
  parameters: number;
  tokenizer?: string;
  vocabSize: number;
  hasChatTemplate: boolean;
  fileSize: number;
  version: number;
}

/** The facts `hopscotch inspect` prints for a GGUF file. */
export function summarizeGguf(info: GgufInfo): GgufSummary {
  const get = (k: string) => info.metadata.find((m) => m.key === k)?.value;
  const arch = String(get('general.architecture') ?? '?');
  const layers = Number(get(`${arch}.block_count`) ?? 0);
  const heads = get(`${arch}.attention.head_count`);
  const attentionFree = Array.isArray(heads) ? heads.flatMap((h, l) => (h === 0 ? [l] : [])) : [];
  const types: Record<string, number> = {};
  let parameters = 0;
  for (const t of info.tensors) {
    types[t.type] = (types[t.type] ?? 0) + 1;
    parameters += t.ne.reduce((a, b) => a * b, 1);
  }
  const tokens = get('tokenizer.ggml.tokens');
  const name = get('general.name');
  const tokenizer = get('tokenizer.ggml.model');
  return {
    architecture: arch,
    ...(typeof name === 'string' ? { name } : {}),
    layers,
    attentionFree,
    tensors: info.tensors.length,
    types,
    parameters,
    ...(typeof tokenizer === 'string' ? { tokenizer } : {}),
    vocabSize: Array.isArray(tokens) ? tokens.length : Number(get(`${arch}.vocab_size`) ?? 0),
    hasChatTemplate: typeof get('tokenizer.chat_template') === 'string',
    fileSize: info.fileSize,
    version: info.version,
  };
}

/** True when `path` is a file that starts with the GGUF magic. */
export function isGgufFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(4);
      return readSync(fd, b, 0, 4, 0) === 4 && b.toString('latin1') === 'GGUF';
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
