#!/usr/bin/env bash
# Proves the npm tarball works without a compiler: builds the prebuild with
# prebuildify (through the cmake-js shim) in a scratch copy of the tree, packs it,
# installs the tarball into an empty project and loads the addon from prebuilds/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== copy the tree to $work/src"
mkdir -p "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$work/src/")
ln -s "$root/node_modules" "$work/src/node_modules"

echo "== prebuildify (CPU engine; HOPSCOTCH_CUDA=${HOPSCOTCH_CUDA:-OFF})"
cd "$work/src"
export HOPSCOTCH_CUDA="${HOPSCOTCH_CUDA:-OFF}"
npm run --silent build:ts
npx prebuildify --napi --strip --node-gyp scripts/cmake-js-as-node-gyp.mjs
ls prebuilds/*/
rm -rf build

echo "== npm pack"
tarball="$(npm pack --ignore-scripts --silent | tail -1)"
listing="$(tar tzf "$tarball")"
grep -q 'package/prebuilds/linux-x64/.*\.node' <<<"$listing" || { echo "tarball has no prebuild"; exit 1; }
grep -q 'package/dist/index.js' <<<"$listing" || { echo "tarball has no dist/"; exit 1; }
ls -la "$tarball"

echo "== install into an empty project"
mkdir -p "$work/app" && cd "$work/app"
npm init -y >/dev/null
# CC/CXX point nowhere: any attempt to compile would fail the install.
CC=/nonexistent-cc CXX=/nonexistent-cxx npm install --no-audit --no-fund --prefer-offline "$work/src/$tarball"
test ! -e node_modules/hopscotch-native/build || { echo "the install built from source"; exit 1; }
cat > check.mjs <<'JS'
import { createRequire } from 'node:module';
import { hopscotch } from 'hopscotch-native';
const require = createRequire(import.meta.url);
const pkgDir = require.resolve('hopscotch-native/package.json').replace(/package\.json$/, '');
const path = require('node-gyp-build').resolve ? require('node-gyp-build').resolve(pkgDir) : require('node-gyp-build').path(pkgDir);
if (!path.includes('prebuilds')) throw new Error(`addon not loaded from prebuilds: ${path}`);
const model = await hopscotch.load(pkgDir + 'models/stories260k', { device: 'cpu' });
const out = await model.generate([model.tokenizer.encode('Once upon a time')], { maxNewTokens: 8, stop: [1, 2] });
console.log(`loaded ${path}; generated ${out[0].length} tokens: ${model.tokenizer.decode(out[0])}`);
model.dispose();
JS
node check.mjs
echo "pack check passed"
