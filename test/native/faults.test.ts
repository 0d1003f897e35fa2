import { it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load } from '../../src/model.js';
import { selectBlocks } from '../../src/select.js';
import { demoModel } from '../helpers.js';
const DATA = [
  { prompt: [1, 403, 407, 261], response: [365, 287, 2] },
  { prompt: [1, 30, 79, 100, 4], response: [101, 7, 300] },
];
it('probe', async () => {
  const m = await load(demoModel, { device: 'cpu' });
  const dir = mkdtempSync(join(tmpdir(), 'hs-p-'));
  const f = join(dir, 'c.json');
  const opts = { count: 1, strategy: 'block-influence' as const, batchSize: 2 };
  await selectBlocks(m, DATA, { ...opts, checkpoint: f });
  const text = readFileSync(f, 'utf8');
  console.log(text.slice(0, 600));
  for (const [name, edit] of [
    ['sAtt short', (c: any) => (c.state.theta.sAtt = [1, 1])],
    ['inf', (c: any) => (text.length, c.state.theta.sMlp[0] = 'INF')],
    ['skipped 99', (c: any) => (c.state.skipped = [99])],
    ['skipped dup', (c: any) => (c.state.skipped = [1, 1])],
  ] as const) {
    const c = JSON.parse(text); edit(c);
    writeFileSync(f, JSON.stringify(c).replace('"INF"', '1e999'));
    try { const s = await selectBlocks(m, DATA, { ...opts, checkpoint: f }); console.log(name, 'OK', s.skipped, Array.from(s.theta.sAtt), Array.from(s.theta.sMlp)); }
    catch (e) { console.log(name, 'ERR', (e as any).code, (e as Error).message); }
    // unfinished
    c.state.stoppedBy = null;
    writeFileSync(f, JSON.stringify(c).replace('"INF"', '1e999'));
    try { const s = await selectBlocks(m, DATA, { ...opts, checkpoint: f }); console.log(name, 'unfinished OK', s.skipped, Array.from(s.theta.sAtt)); }
    catch (e) { console.log(name, 'unfinished ERR', (e as any).code, (e as Error).message); }
  }
  m.dispose();
});
