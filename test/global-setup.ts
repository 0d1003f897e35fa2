// Writes the deterministic fixture checkpoints and the malformed safetensors and GGUF corpora
// once per test run (they are generated, never committed).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  const out = join(root, 'test', 'fixtures', 'generated');
  execFileSync(process.execPath, [join(root, 'scripts', 'make-fixtures.mjs'), join(out, 'models')], { stdio: 'inherit' });
  execFileSync(process.execPath, [join(root, 'test', 'fixtures', 'make-malformed.mjs'), join(out, 'malformed')], {
    stdio: 'inherit',
  });
  execFileSync(process.execPath, [join(root, 'test', 'fixtures', 'make-malformed-gguf.mjs'), join(out, 'malformed-gguf')], {
    stdio: 'inherit',
  });
}
