// The command line's one convention, checked without running a model: the typed option
// parsers, the option groups, and every command's declared options (built the way
// src/cli/main.ts builds them, without parsing process.argv).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, type Option } from 'commander';
import { describe, expect, it } from 'vitest';

import { registerBench } from '../../src/cli/cmd-bench.js';
import { registerData } from '../../src/cli/cmd-data.js';
import { registerDemo } from '../../src/cli/cmd-demo.js';
import { registerEval } from '../../src/cli/cmd-eval.js';
import { registerExport } from '../../src/cli/cmd-export.js';
import { registerInspect } from '../../src/cli/cmd-inspect.js';
import { registerProbe } from '../../src/cli/cmd-probe.js';
import { registerRescale } from '../../src/cli/cmd-rescale.js';
import { registerRun } from '../../src/cli/cmd-run.js';
import { registerSelect } from '../../src/cli/cmd-select.js';
import {
  DEVICES,
  parseByteSizeArg,
  parseFractionArg,
  parseIntArg,
  parseIntListArg,
  parseLayerListArg,
  selectArgs,
  selectionOptions,
  trainingOptions,
  validationOptions,
} from '../../src/cli/shared.js';
import { HopscotchError } from '../../src/errors.js';
import { root } from '../helpers.js';

function argumentErrorOf(fn: () => unknown): HopscotchError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HopscotchError);
    expect((err as HopscotchError).code).toBe('HOPSCOTCH_ERR_ARGUMENT');
    return err as HopscotchError;
  }
  throw new Error('expected an argument error');
}

function program(): Command {
  const p = new Command().exitOverride();
  for (const register of [registerDemo, registerRun, registerSelect, registerRescale, registerData, registerProbe, registerExport, registerEval, registerBench, registerInspect])
    register(p);
  return p;
}

const longFlags = (cmd: Command) => (cmd.options as readonly Option[]).map((o) => o.long);

describe('option value parsers', () => {
  it('parse integers in range and name the flag and the value when they refuse one', () => {
    expect(parseIntArg('--n', '12', { min: 1 })).toBe(12);
    expect(parseIntArg('--n', '-3')).toBe(-3);
    expect(argumentErrorOf(() => parseIntArg('--n', '0', { min: 1 })).message).toBe("--n must be an integer >= 1, got '0'");
    expect(argumentErrorOf(() => parseIntArg('--n', '6', { min: 1, max: 5 })).message).toMatch(/in \[1, 5\]/);
    for (const bad of ['1.5', '', 'x', '1e3', '9007199254740993']) argumentErrorOf(() => parseIntArg('--n', bad));
  });

  it('parse a byte size in digits or exponent notation, and nothing that is not a whole positive number', () => {
    expect(parseByteSizeArg('--max-shard-bytes', '5e9')).toBe(5_000_000_000);
    expect(parseByteSizeArg('--max-shard-bytes', '2000000')).toBe(2_000_000);
    expect(parseByteSizeArg('--max-shard-bytes', '2.5e3')).toBe(2500);
    for (const bad of ['0', '-1', 'lots', '1.5', '1e400', '', '5GB'])
      expect(argumentErrorOf(() => parseByteSizeArg('--max-shard-bytes', bad)).message).toMatch(/^--max-shard-bytes must be a positive whole number of bytes/);
  });

  it('parse fractions, lists of integers and lists of layers', () => {
    expect(parseFractionArg('--holdout', '0')).toBe(0);
    argumentErrorOf(() => parseFractionArg('--holdout', '0', { open: true }));
    argumentErrorOf(() => parseFractionArg('--holdout', '1'));
    expect(parseIntListArg('--batch-sizes', '1, 8', { min: 1 })).toEqual([1, 8]);
    expect(argumentErrorOf(() => parseIntListArg('--batch-sizes', '1,0', { min: 1 })).message).toMatch(/list of integers >= 1/);
    expect(parseLayerListArg('--skip', '3,7')).toEqual([3, 7]);
    expect(argumentErrorOf(() => parseLayerListArg('--skip', '3,3')).message).toMatch(/without repeats/);
    argumentErrorOf(() => parseLayerListArg('--skip', '-1'));
  });
});

describe('option groups', () => {
  it('declare the selection options once and pick exactly the values given or defaulted', () => {
    const cmd = new Command().exitOverride();
    for (const g of [selectionOptions, trainingOptions, validationOptions]) g.addTo(cmd);
    cmd.parse(['-k', '3', '--exclude', '0', '--holdout', '0.25', '--probe-steps', '8'], { from: 'user' });
    expect(selectArgs(cmd.opts())).toEqual({
      count: 3,
      exclude: [0],
      strategy: 'iterative-greedy',
      probeLr: 1e-2,
      probeSteps: 8,
      rescaleLr: 3e-3,
      seed: 0,
      batchSize: 32,
      holdout: 0.25,
    });
    const none = new Command().exitOverride();
    selectionOptions.addTo(none);
    none.parse([], { from: 'user' });
    expect(argumentErrorOf(() => selectArgs(none.opts())).message).toMatch(/--count <k>/);
  });
});

describe('every command', () => {
  const commands = program().commands as Command[];

  it('offers --json, and --device only with the same choices and default', () => {
    expect(commands.map((c) => c.name()).sort()).toEqual(['bench', 'data', 'demo', 'eval', 'export', 'inspect', 'probe', 'rescale', 'run', 'select']);
    for (const c of commands) {
      expect(longFlags(c), c.name()).toContain('--json');
      const device = (c.options as readonly Option[]).find((o) => o.long === '--device');
      if (c.name() === 'inspect') expect(device).toBeUndefined();
      else {
        expect(device?.argChoices, c.name()).toEqual([...DEVICES]);
        expect(device?.defaultValue, c.name()).toBe('auto');
      }
    }
  });

  it('takes --skip only as a list of layers, and a count as -k/--count', () => {
    for (const c of commands) {
      const skip = (c.options as readonly Option[]).find((o) => o.long === '--skip');
      if (skip) expect(skip.flags, c.name()).toBe('--skip <layers>');
      const count = (c.options as readonly Option[]).find((o) => o.long === '--count');
      if (count) expect(count.short, c.name()).toBe('-k');
    }
    const names = (flag: string) => commands.filter((c) => longFlags(c).includes(flag)).map((c) => c.name());
    expect(names('--skip')).toEqual(['rescale']);
    expect(names('--count').sort()).toEqual(['demo', 'run', 'select']);
  });

  it('has no legacy flags left', () => {
    const evalFlags = longFlags(commands.find((c) => c.name() === 'eval')!);
    for (const legacy of ['--mmd', '--svd', '--gsm8k', '--report']) expect(evalFlags).not.toContain(legacy);
    const text = (commands.find((c) => c.name() === 'eval')!.options as readonly Option[]).find((o) => o.long === '--text')!;
    expect(text.required).toBe(true); // a file, not a switch that adds the task
  });

  it('lives in its own file and imports no other command', () => {
    const dir = join(root, 'src', 'cli');
    const files = readdirSync(dir).filter((f) => f.startsWith('cmd-'));
    expect(files.map((f) => f.slice(4, -3)).sort()).toEqual(commands.map((c) => c.name()).sort());
    for (const f of files) expect(readFileSync(join(dir, f), 'utf8'), f).not.toMatch(/from '\.\/cmd-/);
  });
});
