#!/usr/bin/env bash
# Checks the skip reporting of the test runner (tests/main.cpp, support.cpp) through the hidden
# test cases of skip_test.cpp: a skip alone exits 77 (ctest's SKIP_RETURN_CODE), a skip plus a
# failure exits 1, a missing shared file exits 77, and 1 with CI=true.
# Usage: check_skips.sh path/to/lq_tests
set -u
t=$1
"$t" '[skip-selftest-skip]' >/dev/null; a=$?
"$t" '[skip-selftest-fail]' >/dev/null; b=$?
env -u CI "$t" '[skip-selftest-shared]' >/dev/null; c=$?
CI=true "$t" '[skip-selftest-shared]' >/dev/null; d=$?
echo "exit statuses: skip $a, skip and failure $b, missing shared file $c, the same with CI=true $d"
[ "$a" = 77 ] && [ "$b" = 1 ] && [ "$c" = 77 ] && [ "$d" = 1 ]
