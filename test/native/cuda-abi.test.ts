// The ABI handshake between the addon and libhopscotch_cuda.so, without a GPU: stand-in
// backend libraries are compiled here with the system C compiler (each exports the C
// entry points of native/cuda/hopscotch_cuda.h, nothing else) and handed to the loader
// through HOPSCOTCH_CUDA_LIBRARY, one per process (the loader looks once per process).
// A library with another ABI number, or none, is refused with HOPSCOTCH_ERR_CUDA_ABI
// naming both numbers and its version; one with the addon's number passes the handshake
// (and then reports no device, as the stand-in has none).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { demoModel, expectCode, root } from '../helpers.js';

const header = readFileSync(join(root, 'native', 'cuda', 'hopscotch_cuda.h'), 'utf8');
const ABI = Number(/#define HOPSCOTCH_CUDA_ABI (\d+)/.exec(header)![1]);

function haveCc(): boolean {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const cc = haveCc();
const dir = mkdtempSync(join(tmpdir(), 'hopscotch-abi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in backend: `abi` null leaves hopscotch_cuda_abi out (a library from before the handshake). */
function stub(name: string, abi: number | null): string {
  const c = join(dir, `${name}.c`);
  const so = join(dir, `lib${name}.so`);
  writeFileSync(
    c,
    [
      '#include <stddef.h>',
      '#include <stdint.h>',
      '#include <string.h>',
      abi === null ? '' : `uint32_t hopscotch_cuda_abi(void) { return ${abi}; }`,
      `const char* hopscotch_cuda_version(void) { return "${name} 9.9.9"; }`,
      'int hopscotch_cuda_probe(char* msg, size_t n) { strncpy(msg, "{\\"devices\\":0}", n); return 0; }',
      'void* hopscotch_cuda_create(const void* model, char* err, size_t n) { strncpy(err, "HOPSCOTCH_ERR_CUDA: stub", n); return NULL; }',
      '',
    ].join('\n'),
  );
  execFileSync('cc', ['-shared', '-fPIC', '-o', so, c]);
  return so;
}

/** cudaProbe() of the raw addon in a fresh process whose loader sees `library`. */
function probeWith(library: string): { available: boolean; code?: string; message: string; library: string; version?: string } {
  const script = `const b = require('node-gyp-build')(${JSON.stringify(root)}); process.stdout.write(JSON.stringify(b.cudaProbe()));`;
  const r = spawnSync(process.execPath, ['-e', script], {
    cwd: root,
    env: { ...process.env, HOPSCOTCH_CUDA_LIBRARY: library },
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe.skipIf(!cc)('CUDA backend ABI handshake', () => {
  it('refuses a library with another ABI number, naming both numbers and its version', () => {
    const so = stub('other_abi', ABI + 41);
    const p = probeWith(so);
    expect(p.available).toBe(false);
    expect(p.code).toBe('HOPSCOTCH_ERR_CUDA_ABI');
    expect(p.message).toContain(`has ABI ${ABI + 41}`);
    expect(p.message).toContain(`this addon needs ABI ${ABI}`);
    expect(p.message).toContain('other_abi 9.9.9');
    expect(p.library).toBe('');
  });

  it('refuses a library from before the handshake (no hopscotch_cuda_abi)', () => {
    const p = probeWith(stub('no_abi', null));
    expect(p.code).toBe('HOPSCOTCH_ERR_CUDA_ABI');
    expect(p.message).toContain('predates the ABI handshake');
    expect(p.message).toContain('no_abi 9.9.9');
  });

  it("accepts the addon's own ABI number (then finds no device in the stand-in)", () => {
    const so = stub('same_abi', ABI);
    const p = probeWith(so);
    expect(p.library).toBe(so);
    expect(p.version).toBe('same_abi 9.9.9');
    expect(p.code).toBeUndefined();
    expect(p.available).toBe(false);
  });

  it("device 'cuda' is a typed HOPSCOTCH_ERR_CUDA_ABI error; 'auto' falls back to the CPU and says why", async () => {
    // This process's loader has not looked yet (vitest runs each file in its own process).
    process.env.HOPSCOTCH_CUDA_LIBRARY = stub('mismatch_in_process', ABI + 1);
    const { load, resolveDevice } = await import('../../src/model.js');
    expect(() => resolveDevice('cuda')).toThrow(/has ABI \d+ .*this addon needs ABI/);
    await expectCode(() => resolveDevice('cuda'), 'HOPSCOTCH_ERR_CUDA_ABI');
    await expectCode(load(demoModel, { device: 'cuda' }), 'HOPSCOTCH_ERR_CUDA_ABI');
    const auto = resolveDevice('auto');
    expect(auto.device).toBe('cpu');
    expect(auto.reason).toContain(`this addon needs ABI ${ABI}`);
  });
});
