// Runs a fuzz target's LLVMFuzzerTestOneInput once per file named on the command
// line, for compilers without libFuzzer (GCC). Used to replay the seed corpus and
// the regression inputs under ASan/UBSan; a failing input aborts the process.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  int ran = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", argv[i]);
      return 2;
    }
    // An exact-size heap copy, so reads past the end are caught by ASan.
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::unique_ptr<uint8_t[]> input(new uint8_t[bytes.size()]);
    std::copy(bytes.begin(), bytes.end(), input.get());
    std::fprintf(stderr, "Running: %s\n", argv[i]);
    LLVMFuzzerTestOneInput(input.get(), bytes.size());
    ++ran;
  }
  std::fprintf(stderr, "Executed %d inputs\n", ran);
  return 0;
}
