// Shared helpers for the libFuzzer targets: invariant checks that abort with a
// message (so the fuzzer records the input as a finding), and the rule that a
// parser may only fail with hs::Error carrying one of its documented codes.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "errors.h"

namespace hs::fuzz {

[[noreturn]] inline void invariant_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n", what, file, line);
  std::abort();
}

// Fails the run when `err` carries a code outside `allowed`: every rejection of
// malformed input must use one of the codes the API documents.
inline void expect_code(const Error& err, std::initializer_list<const char*> allowed) {
  for (const char* code : allowed) {
    if (std::strcmp(err.code(), code) == 0) return;
  }
  std::fprintf(stderr, "unexpected error code %s: %s\n", err.code(), err.what());
  std::abort();
}

}  // namespace hs::fuzz

#define FUZZ_CHECK(cond)                                                      \
  do {                                                                        \
    if (!(cond)) ::hs::fuzz::invariant_failed(#cond, __FILE__, __LINE__);     \
  } while (0)
