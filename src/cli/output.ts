/**
 * Output helpers shared by the CLI commands: results go to stdout (with `--json`, one
 * JSON object on the last line), human-facing text and logs go to stderr.
 */
import { writeFileAtomic } from '../checkpoint.js';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Writes lines of a human-readable result to stdout. */
export function printLines(lines: readonly string[]): void {
  process.stdout.write(lines.join('\n') + '\n');
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Writes `value` as pretty JSON to `file`, atomically. */
export async function saveJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** A loss or score with a fixed number of decimals (`-` when absent). */
export function formatLoss(x: number | undefined, digits = 4): string {
  return x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits);
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

/**
 * A plain-text table: the first row is the header, columns are padded to their widest
 * cell; columns listed in `right` are right-aligned (numbers).
 */
export function table(rows: readonly (readonly string[])[], right: readonly number[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => (right.includes(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const [head, ...body] = rows;
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
}

const SPARKS = '▁▂▃▄▅▆▇█';

/** One block character per value, scaled between the smallest and largest value. */
export function sparkline(values: readonly number[]): string {
  if (values.length === 0) return '';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values
    .map((v) => SPARKS[hi === lo ? 0 : Math.min(SPARKS.length - 1, Math.floor(((v - lo) / (hi - lo)) * SPARKS.length))])
    .join('');
}
