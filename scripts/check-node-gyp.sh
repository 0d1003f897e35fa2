#!/usr/bin/env bash
# Proves the node-gyp build (binding.gyp, the node-gyp-build source fallback) still
# works from the one source list: builds it in a scratch copy of the tree and runs
# greedy generation on the bundled model against its recorded reference tokens.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$work/")
ln -s "$root/node_modules" "$work/node_modules"
cd "$work"
npm exec --yes -- node-gyp rebuild -j "$(nproc)" >"$work/node-gyp.log" 2>&1 || { tail -40 "$work/node-gyp.log"; exit 1; }
node --input-type=module -e "
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const require = createRequire(process.cwd() + '/');
const gyp = require('node-gyp-build');
const path = gyp.resolve(process.cwd());
if (!path.includes('build/Release')) throw new Error('node-gyp build not found: ' + path);
const b = gyp(process.cwd());
const ones = () => new Float32Array(5).fill(1);
const m = await b.Model.load(process.cwd() + '/models/stories260k', { device: 'cpu' });
const [out] = await m.generate([[1]], { bAtt: ones(), sAtt: ones(), bMlp: ones(), sMlp: ones() }, { maxNewTokens: 32, stop: [] });
const want = JSON.parse(readFileSync('models/stories260k/verification.json', 'utf8')).greedy_tokens_hf.slice(1, 33);
if (JSON.stringify(out) !== JSON.stringify(want)) throw new Error('node-gyp build generates ' + out + ', expected ' + want);
console.log('node-gyp build ok: ' + path + ' (' + b.gemmKernel + '), 32 reference tokens reproduced');
m.dispose();
"
