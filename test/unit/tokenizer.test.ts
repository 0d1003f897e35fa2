/**
 * Tokenizer tests: ids of the bundled stories260k tokenizer checked against the ids recorded when
 * the model was converted (verification.json: greedy tokens that decode to llama2.c's documented
 * output), round trips, chat templates on a synthetic tokenizer folder, and typed errors.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, HopscotchError } from '../../src/errors.js';
import { loadTokenizer } from '../../src/tokenizer.js';
import type { Tokenizer } from '../../src/types.js';

const MODEL_DIR = fileURLToPath(new URL('../../models/stories260k/', import.meta.url));
const IDS = { bosTokenIds: [1], eosTokenIds: [2] };

interface Verification {
  prompt_ids: number[];
  greedy_tokens_hf: number[];
  greedy_text: string;
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

async function expectTokenizerError(p: Promise<unknown>, mentions: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HopscotchError);
  expect((err as HopscotchError).code).toBe(ErrorCodes.TOKENIZER);
  expect((err as HopscotchError).message).toContain(mentions);
}

describe('stories260k tokenizer', () => {
  let tok: Tokenizer;
  let verification: Verification;
  let expectedText: string;

  beforeAll(async () => {
    tok = await loadTokenizer(MODEL_DIR, IDS);
    verification = await readJson<Verification>(path.join(MODEL_DIR, 'verification.json'));
    expectedText = await readFile(path.join(MODEL_DIR, 'original', 'expected_greedy_200.txt'), 'utf8');
  });

  it('encodes "Once upon a time" to BOS + the first four greedy tokens', () => {
    // The greedy sequence starts with the BOS prompt [1], then the story "Once upon a time, ...";
    // tokenizer_check.json records 5 tokens for this string.
    const greedy = verification.greedy_tokens_hf;
    expect(greedy.slice(0, 5)).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { addSpecialTokens: false })).toEqual([403, 407, 261, 378]);
    expect(tok.decode([403, 407, 261, 378])).toBe('Once upon a time');
  });

  it("decodes the greedy tokens to llama2.c's documented output and re-encodes them exactly", () => {
    const greedy = verification.greedy_tokens_hf;
    expect(greedy.length).toBe(201);
    expect(expectedText.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
    expect(tok.decode(greedy, { skipSpecialTokens: true })).toBe(expectedText);
    expect(tok.decode(greedy.slice(1))).toBe(expectedText);
    expect(tok.encode(expectedText)).toEqual(greedy);
  });

  it('keeps special tokens in decode unless asked to skip them', () => {
    expect(tok.decode([1, 403, 407])).toBe('<s> Once upon');
    expect(tok.decode([1, 403, 407], { skipSpecialTokens: true })).toBe('Once upon');
    expect(tok.decode([])).toBe('');
  });

  it.each([
    'Tim and Lily went to the park.',
    'Hello world',
    '  two  leading spaces and   runs',
    'line1\nline2\n\nend',
    'Numbers 1234567 and 3.14!',
    'Café naïve résumé — “quotes” … ™ €',
    'emoji 🙂 and 中文 fallback',
    '\t tab',
    'a',
  ])('round-trips %j', (text) => {
    const ids = tok.encode(text);
    expect(ids[0]).toBe(1);
    expect(ids.slice(1)).toEqual(tok.encode(text, { addSpecialTokens: false }));
    expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 512)).toBe(true);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
  });

  it('uses byte fallback for characters outside the vocabulary', () => {
    // "🙂" is U+1F642 = F0 9F 99 82 in UTF-8; byte tokens are ids 3 + byte.
    const ids = tok.encode('🙂', { addSpecialTokens: false });
    expect(ids.slice(-4)).toEqual([0xf0, 0x9f, 0x99, 0x82].map((b) => 3 + b));
  });

  it('reports BOS/EOS from config.json merged with generation_config.json', () => {
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenIds).toEqual([2]);
  });

  it('has no chat template, and applyChatTemplate says so', () => {
    expect(tok.hasChatTemplate).toBe(false);
    let err: unknown;
    try {
      tok.applyChatTemplate([{ role: 'user', content: 'hi' }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HopscotchError);
    expect((err as HopscotchError).code).toBe(ErrorCodes.TOKENIZER);
    expect((err as HopscotchError).message).toContain('no chat template');
  });
});

const CHATML =
  "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

describe('chat templates', () => {
  let root: string;
  let n = 0;

  /** A tokenizer folder with the stories260k tokenizer.json and the given extra files. */
  async function folder(files: Record<string, string | object>): Promise<string> {
    const dir = path.join(root, `tok${n++}`);
    await mkdir(dir);
    await copyFile(path.join(MODEL_DIR, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    for (const [name, content] of Object.entries(files))
      await writeFile(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
    return dir;
  }

  const baseConfig = { tokenizer_class: 'LlamaTokenizerFast', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };
  const messages = [
    { role: 'system', content: 'You are kind.' },
    { role: 'user', content: 'Tell me a story.' },
  ];
  const rendered =
    '<s><|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n';
  const generationPrompt = '<|im_start|>assistant\n';

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'hopscotch-tok-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('renders a ChatML template and encodes it without adding BOS again', async () => {
    const tok = await loadTokenizer(await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template: CHATML } }), IDS);
    expect(tok.hasChatTemplate).toBe(true);
    const plain = tok.applyChatTemplate(messages);
    expect(plain).toEqual(tok.encode(rendered, { addSpecialTokens: false }));
    expect(plain[0]).toBe(1);
    expect(plain[1]).not.toBe(1);
    expect(plain.filter((id) => id === 1)).toHaveLength(1);
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: false })).toEqual(plain);

    const withPrompt = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect(withPrompt).toEqual(tok.encode(rendered + generationPrompt, { addSpecialTokens: false }));
    expect(withPrompt.length).toBeGreaterThan(plain.length);
    expect(withPrompt.slice(0, plain.length)).toEqual(plain);
    expect(tok.decode(withPrompt).endsWith(generationPrompt)).toBe(true);
  });

  it('uses the "default" entry of a list of named templates', async () => {
    const chat_template = [
      { name: 'tool_use', template: 'TOOLS {{ messages[0].content }}' },
      { name: 'default', template: CHATML },
    ];
    const tok = await loadTokenizer(await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template } }), IDS);
    expect(tok.applyChatTemplate(messages)).toEqual(tok.encode(rendered, { addSpecialTokens: false }));
  });

  it('prefers chat_template.jinja over tokenizer_config.json', async () => {
    const dir = await folder({
      'tokenizer_config.json': { ...baseConfig, chat_template: 'IGNORED {{ messages[0].content }}' },
      'chat_template.jinja': CHATML,
    });
    const tok = await loadTokenizer(dir, IDS);
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: true })).toEqual(
      tok.encode(rendered + generationPrompt, { addSpecialTokens: false }),
    );
  });

  it('reports a template that cannot be parsed, naming its file', async () => {
    const dir = await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template: '{% for m in messages %}{{ m.content }' } });
    const tok = await loadTokenizer(dir, IDS);
    expect(() => tok.applyChatTemplate(messages)).toThrow(/tokenizer_config\.json/);
    try {
      tok.applyChatTemplate(messages);
    } catch (e) {
      expect((e as HopscotchError).code).toBe(ErrorCodes.TOKENIZER);
    }
  });

  it('follows add_bos_token=false of a Llama tokenizer config, as transformers does', async () => {
    const tok = await loadTokenizer(await folder({ 'tokenizer_config.json': { ...baseConfig, add_bos_token: false } }), IDS);
    expect(tok.encode('Once upon a time')).toEqual([403, 407, 261, 378]);
    const both = await loadTokenizer(
      await folder({ 'tokenizer_config.json': { ...baseConfig, add_bos_token: true, add_eos_token: true } }),
      IDS,
    );
    expect(both.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378, 2]);
  });

  it('merges EOS ids of generation_config.json with those of config.json', async () => {
    const dir = await folder({
      'tokenizer_config.json': baseConfig,
      'generation_config.json': { bos_token_id: 1, eos_token_id: [2, 1] },
    });
    const tok = await loadTokenizer(dir, IDS);
    expect(tok.eosTokenIds).toEqual([2, 1]);
    expect(tok.bosTokenId).toBe(1);
    const none = await loadTokenizer(await folder({}), { bosTokenIds: [], eosTokenIds: [] });
    expect(none.bosTokenId).toBeNull();
    expect(none.eosTokenIds).toEqual([]);
  });

  /** The stories260k tokenizer.json with ids 510 and 511 turned into special added tokens. */
  async function withSpecial(dir: string, start: string, end: string): Promise<void> {
    const file = path.join(dir, 'tokenizer.json');
    const t = JSON.parse(await readFile(file, 'utf8')) as {
      model: { vocab: Record<string, number> };
      added_tokens: object[];
    };
    for (const [piece, id] of Object.entries(t.model.vocab)) if (id === 510 || id === 511) delete t.model.vocab[piece];
    t.model.vocab[start] = 510;
    t.model.vocab[end] = 511;
    for (const [id, content] of [[510, start], [511, end]] as const)
      t.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    await writeFile(file, JSON.stringify(t));
  }

  it("stops at the chat template's end-of-turn token as well as every eos id", async () => {
    const dir = await folder({
      'tokenizer_config.json': { ...baseConfig, chat_template: CHATML },
      'generation_config.json': { eos_token_id: [2, 7] },
    });
    await withSpecial(dir, '<|im_start|>', '<|im_end|>');
    const tok = await loadTokenizer(dir, IDS);
    expect(tok.encode('<|im_end|>', { addSpecialTokens: false })).toEqual([511]);
    expect(tok.eosTokenIds).toEqual([2, 7]);
    expect(tok.stopTokenIds).toEqual([2, 7, 511]);

    // Llama 3 style: the end-of-turn token follows the content directly.
    const llama3 =
      "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    const d3 = await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template: llama3 } });
    await withSpecial(d3, '<|start_header_id|>', '<|eot_id|>');
    expect((await loadTokenizer(d3, IDS)).stopTokenIds).toEqual([2, 511]);
  });

  it('finds a well-known end-of-turn token written in a template that refuses the probe conversation', async () => {
    const strict =
      "{% if messages[-1]['role'] == 'assistant' %}{{ raise_exception('no') }}{% endif %}" +
      "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}";
    const dir = await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template: strict } });
    await withSpecial(dir, '<start_of_turn>', '<end_of_turn>');
    expect((await loadTokenizer(dir, IDS)).stopTokenIds).toEqual([2, 511]);
  });

  it('adds nothing when the template ends turns with plain text or has no template', async () => {
    const plain = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}";
    const dir = await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template: plain } });
    await withSpecial(dir, '<|im_start|>', '<|im_end|>');
    expect((await loadTokenizer(dir, IDS)).stopTokenIds).toEqual([2]);
    // ChatML written as text, but <|im_end|> is not a special token of this vocabulary.
    const tok = await loadTokenizer(await folder({ 'tokenizer_config.json': { ...baseConfig, chat_template: CHATML } }), IDS);
    expect(tok.stopTokenIds).toEqual([2]);
    expect((await loadTokenizer(await folder({ 'tokenizer_config.json': baseConfig }), IDS)).stopTokenIds).toEqual([2]);
  });

  it('throws HOPSCOTCH_ERR_TOKENIZER naming a missing or broken tokenizer.json', async () => {
    const missing = path.join(root, 'missing');
    await expectTokenizerError(loadTokenizer(missing, IDS), path.join(missing, 'tokenizer.json'));
    const broken = await folder({});
    await writeFile(path.join(broken, 'tokenizer.json'), '{"model": ');
    await expectTokenizerError(loadTokenizer(broken, IDS), path.join(broken, 'tokenizer.json'));
    const wrong = await folder({});
    await writeFile(path.join(wrong, 'tokenizer.json'), '{"model": {"type": "Nonsense"}}');
    await expectTokenizerError(loadTokenizer(wrong, IDS), path.join(wrong, 'tokenizer.json'));
    const badConfig = await folder({ 'tokenizer_config.json': '[1, 2' });
    await expectTokenizerError(loadTokenizer(badConfig, IDS), 'tokenizer_config.json');
  });
});
