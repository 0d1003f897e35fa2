/**
 * Tokenizer of a Hugging Face model folder: `tokenizer.json` run by `@huggingface/tokenizers`,
 * `tokenizer_config.json` for special tokens and decoding options, and the chat template
 * (`chat_template.jinja`, or `chat_template` in `tokenizer_config.json`) rendered by
 * `@huggingface/jinja`. Behaves as transformers does: `encode` adds the post-processor's
 * special tokens unless told not to; a rendered chat template is encoded without adding them
 * again.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ErrorCodes, HopscotchError } from './errors.js';
import type { Tokenizer } from './types.js';

export interface LoadTokenizerOptions {
  /** BOS ids from the model's config.json. */
  bosTokenIds: number[];
  /** EOS ids from the model's config.json. */
  eosTokenIds: number[];
  /** The model's vocabulary size: a tokenizer that can produce larger ids is refused. */
  vocabSize?: number;
}

/** The largest token id a tokenizer.json can produce (model vocabulary and added tokens). */
function maxTokenId(tokenizerJson: JsonObject): number {
  let max = -1;
  const model = tokenizerJson.model;
  if (isObject(model) && isObject(model.vocab))
    for (const id of Object.values(model.vocab)) if (typeof id === 'number' && id > max) max = id;
  if (isObject(model) && Array.isArray(model.vocab)) max = Math.max(max, model.vocab.length - 1);
  if (Array.isArray(tokenizerJson.added_tokens))
    for (const t of tokenizerJson.added_tokens) if (isObject(t) && typeof t.id === 'number' && t.id > max) max = t.id;
  return max;
}

type ChatMessage = { role: string; content: string };
type JsonObject = Record<string, unknown>;

/**
 * Tokenizer classes whose transformers implementation rebuilds the post-processor from
 * `add_bos_token` / `add_eos_token` when it loads (`update_post_processor`), overriding the
 * one stored in tokenizer.json.
 */
const BOS_EOS_FLAG_CLASSES = new Set([
  'LlamaTokenizer',
  'LlamaTokenizerFast',
  'CodeLlamaTokenizer',
  'CodeLlamaTokenizerFast',
  'GemmaTokenizer',
  'GemmaTokenizerFast',
]);

function tokenizerError(message: string, cause?: unknown): HopscotchError {
  return new HopscotchError(ErrorCodes.TOKENIZER, message, cause === undefined ? undefined : { cause });
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads and parses a JSON object; `undefined` when the file does not exist and is optional. */
async function readJsonObject(file: string, required: boolean): Promise<JsonObject | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw tokenizerError(`cannot read ${file}: ${(err as Error).message}`, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw tokenizerError(`${file} is not valid JSON: ${(err as Error).message}`, err);
  }
  if (!isObject(value)) throw tokenizerError(`${file} must hold a JSON object`);
  return value;
}

async function readOptionalText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw tokenizerError(`cannot read ${file}: ${(err as Error).message}`, err);
  }
}

/** A special-token entry of tokenizer_config.json: a string or an AddedToken object `{content}`. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** generation_config.json / config.json token ids: a number, a list of numbers, or null. */
function tokenIds(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x));
  return [];
}

function unique(ids: number[]): number[] {
  return [...new Set(ids)];
}

/** Picks the chat template: chat_template.jinja wins over tokenizer_config.json, as in transformers. */
function chatTemplateSource(
  jinjaFile: string,
  jinjaText: string | undefined,
  configFile: string,
  config: JsonObject,
): { source: string; text: string | null; why?: string } {
  if (jinjaText !== undefined) return { source: jinjaFile, text: jinjaText };
  const t = config.chat_template;
  if (typeof t === 'string') return { source: configFile, text: t };
  if (Array.isArray(t)) {
    const named = t.filter(
      (e): e is { name: string; template: string } => isObject(e) && typeof e.name === 'string' && typeof e.template === 'string',
    );
    const def = named.find((e) => e.name === 'default');
    if (def) return { source: `${configFile} (chat_template "default")`, text: def.template };
    return {
      source: configFile,
      text: null,
      why: `${configFile} has named chat templates (${named.map((e) => e.name).join(', ')}) but none named "default"`,
    };
  }
  return { source: configFile, text: null, why: `no chat template in ${configFile} and no ${jinjaFile}` };
}

/**
 * The post-processor transformers builds for Llama-family tokenizers from `add_bos_token` and
 * `add_eos_token` (defaults true and false), in tokenizer.json's TemplateProcessing form.
 */
function bosEosPostProcessor(config: JsonObject, vocabId: (token: string) => number | undefined, configFile: string): JsonObject {
  const addBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : true;
  const addEos = typeof config.add_eos_token === 'boolean' ? config.add_eos_token : false;
  const special: JsonObject = {};
  const entry = (flag: string, key: string): string => {
    const tok = tokenString(config[key]);
    const id = tok === null ? undefined : vocabId(tok);
    if (tok === null || id === undefined)
      throw tokenizerError(`${configFile}: ${flag} is true but ${key} ${tok === null ? 'is not set' : `"${tok}" is not in the vocabulary`}`);
    special[tok] = { id: tok, ids: [id], tokens: [tok] };
    return tok;
  };
  const bos = addBos ? entry('add_bos_token', 'bos_token') : null;
  const eos = addEos ? entry('add_eos_token', 'eos_token') : null;
  const seq = (id: 'A' | 'B', typeId: number): JsonObject[] => [
    ...(bos === null ? [] : [{ SpecialToken: { id: bos, type_id: typeId } }]),
    { Sequence: { id, type_id: typeId } },
    ...(eos === null ? [] : [{ SpecialToken: { id: eos, type_id: typeId } }]),
  ];
  return { type: 'TemplateProcessing', single: seq('A', 0), pair: [...seq('A', 0), ...seq('B', 1)], special_tokens: special };
}

/** Finds a token's id in a tokenizer.json object (added tokens first, then the model vocabulary). */
function vocabLookup(tokenizerJson: JsonObject): (token: string) => number | undefined {
  return (token) => {
    const added = Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : [];
    for (const a of added) if (isObject(a) && a.content === token && typeof a.id === 'number') return a.id;
    const model = tokenizerJson.model;
    if (isObject(model) && isObject(model.vocab)) {
      const id = model.vocab[token];
      if (typeof id === 'number') return id;
    }
    if (isObject(model) && Array.isArray(model.vocab)) {
      const i = model.vocab.findIndex((e) => Array.isArray(e) && e[0] === token);
      if (i >= 0) return i;
    }
    return undefined;
  };
}

/** Special added tokens of a tokenizer.json (`added_tokens` with `special: true`): id by content. */
function specialAddedTokens(tokenizerJson: JsonObject): Map<string, number> {
  const out = new Map<string, number>();
  if (Array.isArray(tokenizerJson.added_tokens))
    for (const t of tokenizerJson.added_tokens)
      if (isObject(t) && t.special === true && typeof t.content === 'string' && typeof t.id === 'number') out.set(t.content, t.id);
  return out;
}

/** End-of-turn tokens of well-known chat templates, tried when rendering a turn does not tell. */
const KNOWN_END_OF_TURN = ['<|eot_id|>', '<|im_end|>', '<end_of_turn>', '<|end|>', '<|endoftext|>', '<|end_of_text|>'];

/**
 * The token a chat template ends an assistant turn with, or null. The template renders a
 * user turn and an assistant turn whose content is a marker; the first special token after
 * the marker (only whitespace between) is the end of turn. When rendering fails or shows
 * none, a well-known end-of-turn token written literally in the template source counts.
 */
export function chatEndOfTurn(
  render: (messages: ChatMessage[]) => string,
  templateText: string,
  special: ReadonlyMap<string, number>,
): { token: string; id: number } | null {
  const marker = 'HOPSCOTCHENDOFTURNMARKER';
  try {
    const text = render([
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: marker },
    ]);
    const at = text.lastIndexOf(marker);
    if (at >= 0) {
      const rest = text.slice(at + marker.length).replace(/^\s+/, '');
      const longestFirst = [...special].sort((a, b) => b[0].length - a[0].length);
      for (const [token, id] of longestFirst) if (rest.startsWith(token)) return { token, id };
    }
  } catch {
    // a template that refuses this conversation: fall back to the literal scan below
  }
  for (const token of KNOWN_END_OF_TURN) {
    const id = special.get(token);
    if (id !== undefined && templateText.includes(token)) return { token, id };
  }
  return null;
}

/**
 * Loads the tokenizer of the model folder `dir`. `opts` carries the BOS/EOS ids of config.json;
 * those of generation_config.json, if present, are merged in.
 */
export async function loadTokenizer(dir: string, opts: LoadTokenizerOptions): Promise<Tokenizer> {
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  const generationFile = path.join(dir, 'generation_config.json');

  const tokenizerJson = await readJsonObject(tokenizerFile, true);
  if (tokenizerJson === undefined) throw tokenizerError(`cannot read ${tokenizerFile}`);
  if (opts.vocabSize !== undefined) {
    const max = maxTokenId(tokenizerJson);
    if (max >= opts.vocabSize)
      throw tokenizerError(
        `${tokenizerFile} has token ids up to ${max}, but the model's vocab_size is ${opts.vocabSize}: the tokenizer does not belong to these weights`,
      );
  }
  const config = (await readJsonObject(configFile, false)) ?? {};
  const generation = (await readJsonObject(generationFile, false)) ?? {};
  const jinjaText = await readOptionalText(jinjaFile);

  if (typeof config.tokenizer_class === 'string' && BOS_EOS_FLAG_CLASSES.has(config.tokenizer_class)) {
    tokenizerJson.post_processor = bosEosPostProcessor(config, vocabLookup(tokenizerJson), configFile);
  }

  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(tokenizerJson, {
      ...config,
      clean_up_tokenization_spaces: config.clean_up_tokenization_spaces === true,
    });
  } catch (err) {
    throw tokenizerError(`${tokenizerFile} is not a tokenizer this library can run: ${(err as Error).message}`, err);
  }

  const specialTokens: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const s = tokenString(config[key]);
    if (s !== null) specialTokens[key] = s;
  }

  const bosIds = unique([...opts.bosTokenIds, ...tokenIds(generation.bos_token_id)]);
  const eosIds = unique([...opts.eosTokenIds, ...tokenIds(generation.eos_token_id)]);
  const chat = chatTemplateSource(jinjaFile, jinjaText, configFile, config);
  const specialIds = specialAddedTokens(tokenizerJson);
  for (const [t, i] of [...specialIds]) if (bosIds.includes(i)) specialIds.delete(t); // a turn never ends with BOS
  let compiled: Template | undefined;

  const encode = (text: string, o?: { addSpecialTokens?: boolean }): number[] => {
    if (typeof text !== 'string') throw new HopscotchError(ErrorCodes.ARGUMENT, 'encode: text must be a string');
    return hf.encode(text, { add_special_tokens: o?.addSpecialTokens ?? true }).ids;
  };

  const render = (messages: ChatMessage[], addGenerationPrompt: boolean): string => {
    if (chat.text === null) throw tokenizerError(`the tokenizer in ${dir} has no chat template: ${chat.why}`);
    if (compiled === undefined) {
      try {
        compiled = new Template(chat.text);
      } catch (err) {
        throw tokenizerError(`cannot parse the chat template of ${chat.source}: ${(err as Error).message}`, err);
      }
    }
    try {
      return compiled.render({ ...specialTokens, messages, add_generation_prompt: addGenerationPrompt });
    } catch (err) {
      throw tokenizerError(`cannot render the chat template of ${chat.source}: ${(err as Error).message}`, err);
    }
  };
  const endOfTurn = chat.text === null ? null : chatEndOfTurn((m) => render(m, false), chat.text, specialIds);
  const stopIds = unique([...eosIds, ...(endOfTurn === null ? [] : [endOfTurn.id])]);

  return {
    encode,
    decode(ids: number[], o?: { skipSpecialTokens?: boolean }): string {
      if (!Array.isArray(ids)) throw new HopscotchError(ErrorCodes.ARGUMENT, 'decode: ids must be an array of token ids');
      if (ids.length === 0) return '';
      return hf.decode(ids, { skip_special_tokens: o?.skipSpecialTokens ?? false });
    },
    applyChatTemplate(messages: ChatMessage[], o?: { addGenerationPrompt?: boolean }): number[] {
      if (chat.text === null) throw tokenizerError(`the tokenizer in ${dir} has no chat template: ${chat.why}`);
      if (!Array.isArray(messages)) throw new HopscotchError(ErrorCodes.ARGUMENT, 'applyChatTemplate: messages must be an array');
      return encode(render(messages, o?.addGenerationPrompt ?? false), { addSpecialTokens: false });
    },
    hasChatTemplate: chat.text !== null,
    eosTokenIds: eosIds,
    stopTokenIds: stopIds,
    bosTokenId: bosIds.length > 0 ? bosIds[0]! : null,
  };
}
