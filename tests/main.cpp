// The test runner. Commands the tests start inherit this environment: the importance-matrix
// cache is off, so that no test reads another's (or the user's) cached result; the cache's own
// test names a directory explicitly.
// Exit status: Catch's (the failure count, capped at 255) when anything failed; kSkipExitCode
// when nothing failed and a test called test::skip(), which ctest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support/support.hpp"

#include <cstdlib>

int main(int argc, char** argv) {
  setenv("LLM_QUANTIZE_IMATRIX_CACHE", "off", 1);
  const int status = Catch::Session().run(argc, argv);
  // 77 failures must not read as a skip.
  if (status == lq::test::kSkipExitCode) return status + 1;
  if (status == 0 && lq::test::skip_count() > 0) return lq::test::kSkipExitCode;
  return status;
}
