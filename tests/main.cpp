// The test runner. Commands the tests start inherit this environment: the importance-matrix
// cache is off, so that no test reads another's (or the user's) cached result; the cache's own
// test names a directory explicitly.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

int main(int argc, char** argv) {
  setenv("LLM_QUANTIZE_IMATRIX_CACHE", "off", 1);
  return Catch::Session().run(argc, argv);
}
