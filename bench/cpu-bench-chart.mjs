#!/usr/bin/env node
/**
 * Draws the CPU benchmark's charts from docs/benchmarks/cpu.json with the library's own SVG
 * bar chart (src/plot): the theta-step speed of ours over each baseline per model, threads and
 * precision class, and the peak RSS of a theta step on the 1.24e9-parameter bf16 Llama.
 *
 * Run after building (npx tsc -p tsconfig.build.json):
 *   node bench/cpu-bench-chart.mjs [docs/benchmarks/cpu.json] [OUT_DIR=docs/benchmarks]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { plot } = await import(join(root, 'dist', 'index.js'));
const file = process.argv[2] ?? join(root, 'docs', 'benchmarks', 'cpu.json');
const outDir = process.argv[3] ?? join(root, 'docs', 'benchmarks');
const data = JSON.parse(readFileSync(file, 'utf8'));

// Rows the results mark as measuring the machine's load rather than the kernels are left out.
// One bar pair per measured repetition (chart_rows), or per summary row when there are none.
const train = data.results.filter((r) => r.mode === 'train' && !r.excluded_from_chart);
const ratio = (r, impl) => (r.tokens_per_s.hopscotch && r.tokens_per_s[impl] ? r.tokens_per_s.hopscotch / r.tokens_per_s[impl] : null);
const bars = data.chart_rows ?? train.map((r) => ({
  label: `${r.model} ${r.threads}t ${r.precision}`,
  vs_torch: ratio(r, 'torch'),
  vs_transformers: ratio(r, 'transformers'),
}));
writeFileSync(
  join(outDir, 'cpu-speed.svg'),
  plot.barChart({
    title: `Theta step speed, ours / baseline (${data.machine.cpu_short}; one bar pair per repetition)`,
    xLabel: 'model, threads, precision class',
    yLabel: 'ours tokens/s / baseline tokens/s',
    categories: bars.map((b) => b.label),
    series: [
      { name: 'vs PyTorch 2 eager', values: bars.map((b) => b.vs_torch) },
      { name: 'vs transformers', values: bars.map((b) => b.vs_transformers) },
    ],
  }),
);

const mem = data.memory_1b;
if (mem) {
  writeFileSync(
    join(outDir, 'cpu-memory.svg'),
    plot.barChart({
      title: `Peak RSS of a theta step, ${mem.model} (${(mem.checkpoint_mib / 1024).toFixed(2)} GiB bf16 checkpoint)`,
      xLabel: 'implementation',
      yLabel: 'peak RSS, MiB',
      categories: mem.rows.map((r) => r.label),
      series: [{ name: 'peak RSS (MiB)', values: mem.rows.map((r) => r.peak_rss_mib) }],
    }),
  );
}
process.stderr.write(`wrote ${join(outDir, 'cpu-speed.svg')}${mem ? ' and cpu-memory.svg' : ''}\n`);
