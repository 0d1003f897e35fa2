// docs/errors.md must document every error code the library can throw.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ErrorCodes } from '../../src/errors.js';
import { root } from '../helpers.js';

describe('docs/errors.md', () => {
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  const native = readFileSync(join(root, 'native', 'core', 'errors.h'), 'utf8');

  it('documents every TypeScript error code', () => {
    const missing = Object.values(ErrorCodes).filter((c) => !doc.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });

  it('documents every native error code, and the TypeScript list knows them all', () => {
    const codes = [...native.matchAll(/"(HOPSCOTCH_ERR_[A-Z_]+)"/g)].map((m) => m[1]);
    expect(codes.length).toBeGreaterThan(10);
    const known = new Set<string>(Object.values(ErrorCodes));
    expect(codes.filter((c) => !known.has(c))).toEqual([]);
    expect(codes.filter((c) => !doc.includes(`\`${c}\``))).toEqual([]);
  });
});
