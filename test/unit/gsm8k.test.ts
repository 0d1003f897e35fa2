// GSM8K scoring and prompts against lm-evaluation-harness's gsm8k task (v3.0). Expected
// values come from running lm-eval's regex filter and exact_match normalisation (Python
// `re`) and CPython's `random.Random` on the same inputs.
import { describe, expect, it } from 'vitest';

import { buildPrompt, fewshotIndices, normalize, readGsm8k, score, type Gsm8kDoc } from '../../src/eval/gsm8k.js';
import { firstStop } from '../../src/eval/generate.js';
import { PyRandom } from '../../src/eval/pyrandom.js';
import { join } from 'node:path';
import { root } from '../helpers.js';

describe('gsm8k.score', () => {
  // [completion, answer, strictAnswer, flexibleAnswer, strict, flexible]
  const cases: [string, string, string, string, boolean, boolean][] = [
    ['She makes 9 * 2 = $18 every day.\n#### 18', 'Janet sells 9 duck eggs.\n#### 18', '18', '18', true, true],
    [' The answer is 1,234.\n#### 1,234', 'blah\n#### 1234', '1,234', '1,234', true, true],
    [' So she has $1,234.50 left.', 'x\n#### 1234.50', '[invalid]', '$1,234.50', false, true],
    [' He ends with -5 apples.\n#### -5', 'x\n#### -5', '-5', '-5', true, true],
    [' 3 + 4 = 7.', 'x\n#### 7', '[invalid]', '7.', false, true],
    [' I do not know', 'x\n#### 7', '[invalid]', '[invalid]', false, false],
    [' First 12, then 30, total 42', 'x\n#### 42', '[invalid]', '42', false, true],
    [' #### 42.\n', 'x\n#### 42', '42.', '42.', true, true],
    [' #### 5 and later #### 6', 'x\n#### 6', '5', '6', false, true],
    [' costs $5', 'x\n#### 5', '[invalid]', '$5', false, true],
    [' It is 7', 'x\n#### 7', '[invalid]', '7', false, true],
    [' result: 0.5', 'x\n#### 0.5', '[invalid]', '0.5', false, true],
    [' -3 degrees', 'x\n#### -3', '[invalid]', '-3', false, true],
    [' The total is 18.\n\n', 'x\n#### 18', '[invalid]', '18.', false, true],
    [' 1.0', 'x\n#### 1', '[invalid]', '1.0', false, false],
  ];
  it.each(cases)('%j vs %j', (completion, answer, strictAnswer, flexibleAnswer, strict, flexible) => {
    const s = score(completion, answer);
    expect(s.strictAnswer).toBe(strictAnswer);
    expect(s.flexibleAnswer).toBe(flexibleAnswer);
    expect(s.strict).toBe(strict);
    expect(s.flexible).toBe(flexible);
  });

  it('normalises like exact_match with regexes_to_ignore and ignore_case', () => {
    expect(normalize('$1,000')).toBe('1000');
    expect(normalize('Step 1\nStep 2 #### 3\n#### 72')).toBe('72');
    expect(normalize('42.')).toBe('42');
    expect(normalize('42.\n')).toBe('42\n'); // Python's `$` also matches before a final newline
    expect(normalize('4.2')).toBe('4.2');
    expect(normalize('[INVALID]')).toBe('[invalid]');
  });

  it('scores every bundled test answer as correct against itself (strict and flexible)', async () => {
    const docs = await readGsm8k(join(root, 'data', 'gsm8k', 'test.jsonl'), 200);
    expect(docs).toHaveLength(200);
    for (const d of docs) {
      const s = score(d.answer, d.answer);
      expect(s.strict, d.answer).toBe(true);
      expect(s.flexible, d.answer).toBe(true);
    }
  });
});

describe('prompt format', () => {
  const a: Gsm8kDoc = { question: 'What is 1+1?', answer: '1+1=2\n#### 2' };
  const b: Gsm8kDoc = { question: 'What is 2+3?', answer: '2+3=5\n#### 5' };
  const t: Gsm8kDoc = { question: 'What is 4+4?', answer: '#### 8' };

  it('renders few-shot turns with " " and "\\n\\n", the question with no trailing space', () => {
    expect(buildPrompt(t, [a, b])).toBe(
      'Question: What is 1+1?\nAnswer: 1+1=2\n#### 2\n\nQuestion: What is 2+3?\nAnswer: 2+3=5\n#### 5\n\nQuestion: What is 4+4?\nAnswer:',
    );
    expect(buildPrompt(t, [])).toBe('Question: What is 4+4?\nAnswer:');
  });

  it('draws few-shot examples as random.Random(1234).sample(train, 5), per question in order', () => {
    expect(fewshotIndices(7473, 3, 5)).toEqual([
      [6374, 3610, 957, 61, 742],
      [7462, 6610, 4769, 286, 5501],
      [5677, 687, 806, 6279, 2905],
    ]);
    expect(fewshotIndices(7473, 2, 0)).toEqual([[], []]);
  });

  it('cuts at the earliest stop string', () => {
    expect(firstStop(' 5 apples.\n\nQuestion: next', ['Question:', '</s>'])).toEqual({ index: 12, stop: 'Question:' });
    expect(firstStop(' a </s> b Question:', ['Question:', '</s>'])).toEqual({ index: 3, stop: '</s>' });
    expect(firstStop(' nothing here', ['Question:'])).toBeNull();
  });
});

describe('PyRandom', () => {
  it('matches CPython random.sample in both of its branches', () => {
    const r = new PyRandom(7);
    expect(r.sampleIndices(10, 4)).toEqual([5, 2, 6, 9]);
    expect(r.sampleIndices(20, 20)).toEqual([1, 2, 17, 3, 11, 9, 0, 8, 16, 13, 19, 6, 12, 10, 14, 7, 15, 4, 18, 5]);
  });

  it('seeds from integers wider than 32 bits like CPython', () => {
    const r = new PyRandom(2 ** 40 + 5);
    expect(r.getrandbits(32)).toBe(2166296868);
    expect(r.sampleIndices(100000, 8)).toEqual([67753, 35206, 87005, 3595, 69593, 99410, 99702, 6107]);
  });
});
