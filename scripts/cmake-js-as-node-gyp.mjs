#!/usr/bin/env node
// prebuildify always drives node-gyp; this shim stands in for it and runs the CMake
// build instead (prebuildify then copies build/Release/hopscotch.node). The CUDA
// backend library, when built, is copied next to the prebuild so it ships too.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const verb = process.argv[2];
if (verb !== 'rebuild' && verb !== 'build') process.exit(0);
const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
const args = ['rebuild'];
if (process.env.HOPSCOTCH_CUDA) args.push(`--CDHOPSCOTCH_CUDA=${process.env.HOPSCOTCH_CUDA}`);
const r = spawnSync(cmakeJs, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
const cudaLib = join(root, 'build', 'Release', 'libhopscotch_cuda.so');
if (existsSync(cudaLib)) {
  const dest = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  mkdirSync(dest, { recursive: true });
  copyFileSync(cudaLib, join(dest, 'libhopscotch_cuda.so'));
}
