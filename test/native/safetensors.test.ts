// The addon's safetensors reader on the malformed corpus (test/fixtures/make-malformed.mjs)
// and a write/read round trip through the native writer.
import { mkdtempSync, readFileSync, readdirSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { binding } from '../../src/native/binding.js';
import { expectCode, generated } from '../helpers.js';

const malformedDir = join(generated, 'malformed');
const manifest = JSON.parse(readFileSync(join(malformedDir, 'manifest.json'), 'utf8')) as {
  file: string;
  expectedCode: string | null;
  description: string;
}[];

describe('safetensors reader on malformed files', () => {
  it('has a corpus with many malformed cases', () => {
    expect(manifest.filter((m) => m.expectedCode).length).toBeGreaterThanOrEqual(15);
  });
  for (const m of manifest) {
    it(`${m.file}: ${m.description}`, async () => {
      const path = join(malformedDir, m.file);
      if (m.expectedCode === null) {
        const info = binding().inspectSafetensors(path);
        expect(info.tensors.length).toBeGreaterThan(0);
      } else {
        await expectCode(() => binding().inspectSafetensors(path), m.expectedCode);
        // The error names the file.
        try {
          binding().inspectSafetensors(path);
        } catch (e) {
          expect((e as Error).message).toContain(m.file);
        }
      }
    });
  }
});

describe('safetensors writer', () => {
  it('round-trips F32, BF16 and F16 tensors with metadata', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hs-st-'));
    const path = join(dir, 'x.safetensors');
    const f32 = Float32Array.from({ length: 12 }, (_, i) => (i - 5) * 0.375);
    // bf16 of 1.0, -2.0, 0.5 and f16 of 1.0, -2.0, 0.5
    const bf16 = Uint16Array.from([0x3f80, 0xc000, 0x3f00]);
    const f16 = Uint16Array.from([0x3c00, 0xc000, 0x3800]);
    const bytes = await binding().writeSafetensors(
      path,
      [
        { name: 'a', dtype: 'F32', shape: [3, 4], data: f32 },
        { name: 'b', dtype: 'BF16', shape: [3], data: bf16 },
        { name: 'c', dtype: 'F16', shape: [3], data: f16 },
      ],
      { format: 'pt', note: 'round trip' },
      false,
    );
    expect(bytes).toBe(readFileSync(path).length);
    const info = binding().inspectSafetensors(path);
    expect(info.metadata).toEqual({ format: 'pt', note: 'round trip' });
    expect(info.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ['a', 'F32', [3, 4]],
      ['b', 'BF16', [3]],
      ['c', 'F16', [3]],
    ]);
    expect(Array.from(await binding().readTensor(path, 'a'))).toEqual(Array.from(f32));
    expect(Array.from(await binding().readTensor(path, 'b'))).toEqual([1, -2, 0.5]);
    expect(Array.from(await binding().readTensor(path, 'c'))).toEqual([1, -2, 0.5]);
    // The header is padded to 8 bytes, as the format recommends.
    const n = Number(readFileSync(path).readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    // No temporary files are left behind.
    expect(readdirSync(dir)).toEqual(['x.safetensors']);
  });

  it('refuses to overwrite unless told to, and leaves the old file intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hs-st-'));
    const path = join(dir, 'x.safetensors');
    writeFileSync(path, 'old');
    const t = [{ name: 'a', dtype: 'F32' as const, shape: [1], data: Float32Array.of(1) }];
    await expectCode(binding().writeSafetensors(path, t, {}, false), 'HOPSCOTCH_ERR_EXISTS');
    expect(readFileSync(path, 'utf8')).toBe('old');
    await binding().writeSafetensors(path, t, {}, true);
    expect(Array.from(await binding().readTensor(path, 'a'))).toEqual([1]);
    expect(readdirSync(dir)).toEqual(['x.safetensors']);
  });

  it('rejects data whose size does not match shape x dtype, writing nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hs-st-'));
    const path = join(dir, 'x.safetensors');
    await expectCode(
      () => binding().writeSafetensors(path, [{ name: 'a', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }], {}, false),
      'HOPSCOTCH_ERR_SHAPE',
    );
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
