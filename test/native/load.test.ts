// Loading checkpoints: config parsing, tensor checks, typed errors, dispose.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { inspect, load } from '../../src/model.js';
import { binding } from '../../src/native/binding.js';
import { demoModel, expectCode, fixtureDir, generated } from '../helpers.js';

function copyFixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hs-${name}-`));
  cpSync(fixtureDir(name), dir, { recursive: true });
  return dir;
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  edit(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
}

describe('inspect', () => {
  it('summarises the bundled model without loading weights', () => {
    const info = inspect(demoModel);
    expect(info.config.arch).toBe('LlamaForCausalLM');
    expect(info.config.numLayers).toBe(5);
    expect(info.config.numHeads).toBe(8);
    expect(info.config.numKvHeads).toBe(4);
    expect(info.config.headDim).toBe(8);
    expect(info.config.vocabSize).toBe(512);
    expect(info.config.tieWordEmbeddings).toBe(true);
    expect(info.config.parameters).toBe(260032);
    expect(info.config.dtype).toBe('F32');
    expect(info.tensors).toBe(47);
    expect(info.fingerprint).toMatch(/^[0-9a-f]{16,}$/);
  });

  it('reads every fixture architecture', () => {
    const fixtures = JSON.parse(readFileSync(join(generated, 'models', 'fixtures.json'), 'utf8'));
    const names: string[] = (Array.isArray(fixtures) ? fixtures : fixtures.fixtures).map((f: { name: string }) => f.name);
    expect(names.length).toBeGreaterThanOrEqual(8);
    for (const name of names) {
      const info = inspect(fixtureDir(name));
      const cfg = JSON.parse(readFileSync(join(fixtureDir(name), 'config.json'), 'utf8'));
      expect(info.config.arch).toBe(cfg.architectures[0]);
      expect(info.config.numLayers).toBe(cfg.num_hidden_layers);
    }
  });
});

describe('load', () => {
  it('loads the bundled model on the CPU with its tokenizer', async () => {
    const model = await load(demoModel, { device: 'cpu', threads: 1 });
    expect(model.device).toBe('cpu');
    expect(model.config.numLayers).toBe(5);
    expect(model.tokenizer.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(model.fingerprint).toBe(inspect(demoModel).fingerprint);
    model.dispose();
  });

  it('auto picks the CPU here and says why', async () => {
    const lines: string[] = [];
    const model = await load(demoModel, { log: (m) => lines.push(m) });
    const probe = binding().cudaProbe();
    expect(model.device).toBe(probe.available ? 'cuda' : 'cpu');
    expect(lines.join('\n')).toMatch(/using (cpu|cuda)/);
    model.dispose();
  });

  it('refuses an unsupported architecture with a typed error', async () => {
    const dir = copyFixture('llama-gqa');
    editConfig(dir, (c) => {
      c.architectures = ['GPT2LMHeadModel'];
      c.model_type = 'gpt2';
    });
    await expectCode(load(dir, { device: 'cpu' }), 'HOPSCOTCH_ERR_CONFIG_UNSUPPORTED');
  });

  it('refuses an unsupported rope type', async () => {
    const dir = copyFixture('llama-gqa');
    editConfig(dir, (c) => {
      c.rope_scaling = { rope_type: 'yarn', factor: 4 };
    });
    await expectCode(load(dir, { device: 'cpu' }), 'HOPSCOTCH_ERR_CONFIG_UNSUPPORTED');
  });

  it('reports every missing tensor at once', async () => {
    const dir = copyFixture('llama-gqa');
    const path = join(dir, 'model.safetensors');
    const info = binding().inspectSafetensors(path);
    const drop = new Set(['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.weight']);
    const kept = info.tensors.filter((t) => !drop.has(t.name));
    const tensors = await Promise.all(
      kept.map(async (t) => ({
        name: t.name,
        dtype: 'F32' as const,
        shape: t.shape,
        data: await binding().readTensor(path, t.name),
      })),
    );
    await binding().writeSafetensors(path, tensors, {}, true);
    let message = '';
    try {
      await load(dir, { device: 'cpu' });
    } catch (e) {
      message = (e as Error).message;
      expect((e as { code: string }).code).toBe('HOPSCOTCH_ERR_MISSING_TENSOR');
    }
    for (const name of drop) expect(message).toContain(name);
  });

  it('refuses a tensor with the wrong shape (config disagrees with weights)', async () => {
    const dir = copyFixture('llama-gqa');
    editConfig(dir, (c) => {
      c.intermediate_size = (c.intermediate_size as number) + 1;
    });
    await expectCode(load(dir, { device: 'cpu' }), 'HOPSCOTCH_ERR_SHAPE');
  });

  it('refuses a shard index that points outside the model folder', async () => {
    const dir = copyFixture('llama-sharded');
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    const first = Object.keys(index.weight_map)[0];
    index.weight_map[first] = '../outside.safetensors';
    writeFileSync(indexPath, JSON.stringify(index));
    await expectCode(load(dir, { device: 'cpu' }), 'HOPSCOTCH_ERR_SAFETENSORS_INDEX');
  });

  it('gives a typed error for a missing folder and for a folder without config.json', async () => {
    await expectCode(load(join(tmpdir(), 'does-not-exist-hs'), { device: 'cpu' }), 'HOPSCOTCH_ERR_IO');
    const empty = mkdtempSync(join(tmpdir(), 'hs-empty-'));
    await expectCode(load(empty, { device: 'cpu' }), 'HOPSCOTCH_ERR_IO');
  });

  it('rejects calls after dispose with HOPSCOTCH_ERR_DISPOSED', async () => {
    const model = await load(fixtureDir('llama-gqa'), { device: 'cpu' });
    model.dispose();
    await expectCode(model.loss([{ prompt: [1, 2], response: [3] }], undefined as never), 'HOPSCOTCH_ERR_DISPOSED');
    model.dispose(); // idempotent
  });

  it('disposes through Symbol.asyncDispose', async () => {
    const model = await load(fixtureDir('llama-gqa'), { device: 'cpu' });
    await model[Symbol.asyncDispose]();
    await expectCode(model.generate([[1]]), 'HOPSCOTCH_ERR_DISPOSED');
  });
});
