#!/usr/bin/env node
/**
 * Writes the seed corpus of the fuzz targets into native/fuzz/corpus/<target>/ from the
 * test fixtures (scripts/make-fixtures.mjs, test/fixtures/make-malformed.mjs,
 * test/fixtures/make-malformed-gguf.mjs), the bundled
 * stories260k checkpoint, and a few hand-written edge cases. Large safetensors files are cut
 * to their header plus a little data, so seeds stay small and the fuzzer stays fast.
 *
 *   node native/fuzz/make-seeds.mjs
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const CORPUS = path.join(HERE, 'corpus');
const STORIES = new URL('../../models/stories260k', import.meta.url).pathname;
const KEEP_DATA_BYTES = 2048;

const corpus = { fuzz_json: {}, fuzz_index: {}, fuzz_config: {}, fuzz_safetensors: {}, fuzz_gguf: {} };
const add = (target, name, bytes) => {
  corpus[target][name] = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'utf8');
};

/** u64 little-endian length prefix + header text + data. */
function safetensors(header, data = Buffer.alloc(0)) {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, data]);
}

/** Header JSON text of a safetensors image. */
function headerText(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  return bytes.subarray(8, 8 + n).toString('utf8');
}

/** Header plus at most KEEP_DATA_BYTES of the data buffer. */
function truncated(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  return bytes.subarray(0, Math.min(bytes.length, 8 + n + KEEP_DATA_BYTES));
}

function bytesOf(values, width, write) {
  const b = Buffer.alloc(values.length * width);
  values.forEach((v, i) => write(b, v, i * width));
  return b;
}

const work = mkdtempSync(path.join(tmpdir(), 'hs-seeds-'));
try {
  const fx = path.join(work, 'fx');
  const mal = path.join(work, 'mal');
  execFileSync('node', [path.join(ROOT, 'scripts', 'make-fixtures.mjs'), fx], { stdio: 'ignore' });
  execFileSync('node', [path.join(ROOT, 'test', 'fixtures', 'make-malformed.mjs'), mal], { stdio: 'ignore' });

  // Checkpoint fixtures: config.json, safetensors headers, the sharded index.
  for (const name of readdirSync(fx).sort()) {
    const dir = path.join(fx, name);
    if (!statSync(dir).isDirectory()) continue;
    const config = readFileSync(path.join(dir, 'config.json'));
    add('fuzz_config', `${name}.json`, config);
    add('fuzz_json', `config-${name}.json`, config);
    for (const file of readdirSync(dir).sort()) {
      const full = path.join(dir, file);
      if (file.endsWith('.safetensors')) {
        const bytes = readFileSync(full);
        const stem = `${name}-${file.replace(/\.safetensors$/, '')}`;
        add('fuzz_safetensors', `${stem}.head.safetensors`, truncated(bytes));
        add('fuzz_json', `header-${stem}.json`, headerText(bytes));
      } else if (file.endsWith('.index.json')) {
        const text = readFileSync(full);
        add('fuzz_index', `${name}.index.json`, text);
        add('fuzz_json', `index-${name}.json`, text);
      }
    }
  }
  for (const file of readdirSync(mal).sort()) {
    if (file.endsWith('.safetensors')) add('fuzz_safetensors', `malformed-${file}`, readFileSync(path.join(mal, file)));
  }

  // The bundled real checkpoint.
  const storiesConfig = readFileSync(path.join(STORIES, 'config.json'));
  add('fuzz_config', 'stories260k.json', storiesConfig);
  add('fuzz_json', 'config-stories260k.json', storiesConfig);
  const stories = readFileSync(path.join(STORIES, 'model.safetensors'));
  add('fuzz_safetensors', 'stories260k.head.safetensors', truncated(stories));
  add('fuzz_json', 'header-stories260k.json', headerText(stories));
} finally {
  rmSync(work, { recursive: true, force: true });
}

// Small complete safetensors images: every dtype, metadata, empty tensors.
const f32 = bytesOf([1, -2.5, 0, 3.25], 4, (b, v, o) => b.writeFloatLE(v, o));
const f16 = bytesOf([0x3c00, 0xc000, 0x0001, 0x7c00, 0x7e00, 0x8000], 2, (b, v, o) => b.writeUInt16LE(v, o));
const bf16 = bytesOf([0x3f80, 0xc020, 0x0001, 0x7f80], 2, (b, v, o) => b.writeUInt16LE(v, o));
add('fuzz_safetensors', 'tiny-f32.safetensors',
    safetensors({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } }, f32));
add('fuzz_safetensors', 'tiny-f16-bf16.safetensors',
    safetensors({ __metadata__: { format: 'pt' }, a: { dtype: 'F16', shape: [6], data_offsets: [0, 12] },
                  b: { dtype: 'BF16', shape: [2, 2], data_offsets: [12, 20] } }, Buffer.concat([f16, bf16])));
add('fuzz_safetensors', 'all-dtypes.safetensors', (() => {
  const specs = [['F64', 8], ['I64', 8], ['I32', 4], ['I16', 2], ['I8', 1], ['U8', 1], ['BOOL', 1], ['F32', 4]];
  const header = {};
  let offset = 0;
  for (const [dtype, width] of specs) {
    header[`t_${dtype.toLowerCase()}`] = { dtype, shape: [2], data_offsets: [offset, offset + 2 * width] };
    offset += 2 * width;
  }
  return safetensors(header, Buffer.alloc(offset, 0x11));
})());
add('fuzz_safetensors', 'empty-tensors.safetensors',
    safetensors({ e: { dtype: 'F32', shape: [0, 4], data_offsets: [0, 0] },
                  s: { dtype: 'F32', shape: [], data_offsets: [0, 4] } }, Buffer.alloc(4)));
add('fuzz_safetensors', 'empty-header.safetensors', safetensors('{}'));
add('fuzz_safetensors', 'padded-header.safetensors',
    safetensors('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}      ', Buffer.from([7])));

// Configs the fixtures do not cover: DeciLM block_configs, Granite multipliers, llama3 rope variants.
add('fuzz_config', 'decilm.json', JSON.stringify({
  architectures: ['DeciLMForCausalLM'], model_type: 'nemotron-nas', hidden_size: 64, num_hidden_layers: 3,
  num_attention_heads: 8, vocab_size: 512, max_position_embeddings: 256, rms_norm_eps: 1e-5, hidden_act: 'silu',
  bos_token_id: 1, eos_token_id: [2, 3],
  block_configs: [
    { attention: { n_heads_in_group: 2, no_op: false, replace_with_linear: false }, ffn: { ffn_mult: 1.5 } },
    { attention: { no_op: true }, ffn: { ffn_mult: 1.5, no_op: false } },
    { attention: { n_heads_in_group: 2 }, ffn: { ffn_mult: 1.5 } },
  ],
}, null, 2));
add('fuzz_config', 'decilm-intermediate.json', JSON.stringify({
  architectures: ['DeciLMForCausalLM'], hidden_size: 96, intermediate_size: 256, num_hidden_layers: 2,
  num_attention_heads: 4, vocab_size: 100, max_position_embeddings: 64,
  block_configs: [
    { attention: { n_heads_in_group: 4 }, ffn: { ffn_mult: 1.0 } },
    { attention: { n_heads_in_group: 4 }, ffn: { ffn_mult: 2.0 } },
  ],
}));
add('fuzz_config', 'model-type-only.json', JSON.stringify({
  model_type: 'qwen3', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2,
  num_key_value_heads: 1, head_dim: 8, vocab_size: 64, max_position_embeddings: 32, use_sliding_window: false,
  sliding_window: null, rope_scaling: { type: 'linear', factor: 2.0 },
}));

// Index edge cases.
add('fuzz_index', 'tiny.index.json', '{"metadata":{},"weight_map":{"a":"model-1.safetensors","b":"model-2.safetensors"}}');
add('fuzz_index', 'escapes.index.json', '{"weight_map":{"a\\u0000b":"m\\u00e9.safetensors","\\ud83d\\ude00":"x"}}');

// JSON edge cases: numbers, escapes, nesting, unicode.
const jsonCases = {
  'numbers.json': '[0,-0,1,-1,1.5,-0.0,1e2,1E-2,1e+308,4.9e-324,1e-400,9223372036854775807,-9223372036854775808,' +
                  '9223372036854775808,18446744073709551616,123456789012345678901234567890,0.1,2.5e-5]',
  'strings.json': '["","\\"\\\\\\/\\b\\f\\n\\r\\t","\\u0000\\u001f\\u007f","\\ud83d\\ude00","é€😀","\\u00e9"]',
  'nested.json': '{"a":[{"b":[[[{"c":null}]]]},true,false],"d":{"e":{"f":{}}},"g":[]}',
  'duplicates.json': '{"k":1,"k":2,"k":{"k":[1,2]}}',
  'whitespace.json': ' \t\r\n{ "a" : [ 1 , 2 ] } \n',
};
for (const [name, text] of Object.entries(jsonCases)) add('fuzz_json', name, text);

// GGUF: the valid and malformed images of the reader's test corpus.
const { malformedGguf } = await import(path.join(ROOT, 'test', 'fixtures', 'make-malformed-gguf.mjs'));
for (const c of malformedGguf()) add('fuzz_gguf', c.file, c.bytes);

for (const [target, files] of Object.entries(corpus)) {
  const dir = path.join(CORPUS, target);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(path.join(dir, name), bytes);
  console.log(`${target}: ${Object.keys(files).length} seeds`);
}
