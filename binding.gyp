# The CPU-only source fallback, for whoever builds with node-gyp instead of CMake
# (`node-gyp rebuild`, electron-rebuild and other tools that call node-gyp): it builds the
# same addon (build/Release/hopscotch.node, the CPU engine) from the same source list as
# CMakeLists.txt (native-sources.json), and never the CUDA backend (libhopscotch_cuda.so)
# or the native test drivers. CMake through cmake-js is the build (`npm install` runs
# scripts/install.mjs, `npm run build:native`); "gypfile": false in package.json keeps npm
# from running this file on its own. scripts/check-node-gyp.sh proves it still builds and
# generates the reference tokens. More in docs/internals.md ("Build").
{
  "targets": [
    {
      "target_name": "hopscotch",
      "sources": [
        "<!@(node -p \"require('./native-sources.json').core.join(' ')\")",
        "<!@(node -p \"require('./native-sources.json').addon.join(' ')\")"
      ],
      "dependencies": ["hopscotch_avx2", "hopscotch_avx512"],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "native/core"
      ],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "libraries": ["-ldl", "-lpthread"]
    },
    {
      "target_name": "hopscotch_avx2",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./native-sources.json').core_avx2.join(' ')\")"],
      "include_dirs": ["native/core"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-mavx2", "-mfma", "-mf16c", "-fPIC", "-fexceptions"]
    },
    {
      "target_name": "hopscotch_avx512",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./native-sources.json').core_avx512.join(' ')\")"],
      "include_dirs": ["native/core"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma", "-fPIC",
                    "-fexceptions"]
    }
  ]
}
