#!/usr/bin/env node
// npm install hook: use a matching prebuild when the package ships one (no compiler
// needed); otherwise build the addon from source with cmake-js (CPU engine always,
// CUDA backend when nvcc is found). HOPSCOTCH_BUILD_FROM_SOURCE=1 forces a build.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const platformDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const hasPrebuild = existsSync(platformDir) && readdirSync(platformDir).some((f) => f.endsWith('.node'));

if (hasPrebuild && !process.env.HOPSCOTCH_BUILD_FROM_SOURCE) {
  console.log(`hopscotch-native: using prebuild in ${platformDir}`);
  process.exit(0);
}

const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
const cmd = existsSync(cmakeJs) ? cmakeJs : 'cmake-js';
const args = ['compile'];
if (process.env.HOPSCOTCH_CUDA) args.push(`--CDHOPSCOTCH_CUDA=${process.env.HOPSCOTCH_CUDA}`);
console.log(`hopscotch-native: building the addon from source (${cmd} ${args.join(' ')})`);
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('hopscotch-native: native build failed. It needs cmake (>= 3.19) and a C++17 compiler.');
  process.exit(r.status ?? 1);
}
