// The skip reporting itself (tests/main.cpp, support.cpp), through hidden test cases that the
// "skip_reporting" ctest (check_skips.sh) runs one by one, checking each exit status: a skip
// alone exits 77 (ctest: skipped), a skip plus a failure exits with the failure, and a missing
// shared file skips, or fails with CI=true.
#include "support/support.hpp"

#include <catch2/catch.hpp>

TEST_CASE("skip reporting: a skip alone", "[.][skip-selftest-skip]") {
  lq::test::skip("self-test of the skip exit status");
}

TEST_CASE("skip reporting: a skip and a failure", "[.][skip-selftest-fail]") {
  lq::test::skip("self-test of the skip exit status");
  CHECK(1 + 1 == 3);
}

TEST_CASE("skip reporting: a missing shared file", "[.][skip-selftest-shared]") {
  if (!lq::test::shared_file("no-such-dir/no-such-file")) return;
  FAIL("a missing file was found");
}
