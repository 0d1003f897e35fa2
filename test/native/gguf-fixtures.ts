// Test models for the GGUF tests: a copy of a fixture with a small byte-level BPE tokenizer.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { fixtureDir } from '../helpers.js';

/** GPT-2's byte-to-unicode table (bytes_to_unicode). */
export function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const out: string[] = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

/** A copy of a fixture whose tokenizer is a small byte-level BPE with `split` as its pre-tokenizer regex (or none). */
export function byteLevelModel(work: string, name: string, split: string | null): string {
  const dir = path.join(work, name);
  const from = fixtureDir('llama-gqa');
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(from, f), path.join(dir, f));
  const vocab: Record<string, number> = { '<|begin|>': 0, '<|end|>': 1, '<|pad|>': 2 };
  byteChars().forEach((c, i) => (vocab[c] = 3 + i));
  const G = byteChars()[32]!; // the byte-level space
  const merges = [[G, 't'], ['h', 'e'], [`${G}t`, 'he'], ['o', 'n']];
  for (const [a, b] of merges) vocab[a! + b!] = Object.keys(vocab).length;
  const pre = [{ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: split === null }];
  const tokenizer = {
    version: '1.0',
    added_tokens: ['<|begin|>', '<|end|>', '<|pad|>'].map((content, id) => ({ id, content, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false })),
    normalizer: null,
    pre_tokenizer: split === null ? pre[0] : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false }, ...pre] },
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<|begin|>': { id: '<|begin|>', ids: [0], tokens: ['<|begin|>'] } } },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({ bos_token: '<|begin|>', eos_token: '<|end|>', pad_token: '<|pad|>', tokenizer_class: 'PreTrainedTokenizerFast', chat_template: '{% for m in messages %}{{ m.content }}{% endfor %}' }),
  );
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, bos_token_id: 0, eos_token_id: 1 }));
  return dir;
}

export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

