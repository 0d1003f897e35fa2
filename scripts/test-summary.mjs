#!/usr/bin/env node
// Prints vitest's JSON results as one plain line "N passed, N failed, N skipped",
// and lists skipped tests with their reason so a skip is never silent.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'test-results.json';
const r = JSON.parse(readFileSync(file, 'utf8'));
const skipped = [];
for (const f of r.testResults ?? [])
  for (const t of f.assertionResults ?? [])
    if (t.status === 'skipped' || t.status === 'pending') skipped.push(`${t.fullName}`);
for (const s of skipped) console.log(`skipped: ${s}`);
const passed = r.numPassedTests ?? 0;
// A file that failed without a failing test (an import error, a crashed worker) counts once.
const brokenFiles = (r.testResults ?? []).filter(
  (f) => f.status === 'failed' && !(f.assertionResults ?? []).some((t) => t.status === 'failed'),
).length;
const failed = (r.numFailedTests ?? 0) + brokenFiles;
console.log(`${passed} passed, ${failed} failed, ${skipped.length} skipped`);
process.exit(failed > 0 || r.success === false ? 1 : 0);
