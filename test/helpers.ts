import { join } from 'node:path';

export const root = join(import.meta.dirname, '..');
export const generated = join(root, 'test', 'fixtures', 'generated');
export const fixtureDir = (name: string): string => join(generated, 'models', name);
export const demoModel = join(root, 'models', 'stories260k');

/** Asserts that `p` rejects (or `fn` throws) with a given error code. */
export async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  if (!err) throw new Error(`expected an error with code ${code}, but nothing was thrown`);
  const got = (err as { code?: string }).code;
  if (got !== code) throw new Error(`expected code ${code}, got ${got}: ${(err as Error).message}`);
}
