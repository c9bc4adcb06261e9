#!/bin/bash
# Every out-of-line function of the public API (include/lq) must be exported by the shared
# library: liblq is built with hidden visibility, and a declaration without LQ_API links against
# the static library but not against liblq.so.
#
#   check_exports.sh LIBLQ_A LIBLQ_SO INCLUDE_DIR
#
# Functions defined in the static library, in namespace lq (the internal namespaces cpu, engine,
# cuda, ref and detail aside), count as public when their class, or for a free function its
# name, is declared in a public header. Prints each one missing from the shared library's dynamic
# symbols and exits 1 when there is any.
set -euo pipefail
a=$1 so=$2 inc=$3
defined=$(nm -C --defined-only -g "$a" 2>/dev/null | sed -n 's/^[0-9a-f]* T //p' | grep '^lq::' |
  grep -Ev '^lq::(cpu|engine|cuda|ref|detail)::' | sort -u)
exported=$(nm -C -D --defined-only "$so" | sed 's/^[0-9a-f]* [A-Za-z] //' | sort -u)
headers=$(cat "$inc"/lq/*.hpp)
missing=0
while IFS= read -r sym; do
  [ -z "$sym" ] && continue
  grep -qxF -- "$sym" <<<"$exported" && continue
  qual=${sym%%(*}             # lq::gguf::TensorInfo::n_rows
  qual=${qual%\[abi:cxx11\]}
  name=${qual##*::}
  scope=${qual%::*}
  owner=${scope##*::}
  public=0
  if grep -Eq "^(struct|class)( LQ_API)? $owner\b" <<<"$headers"; then public=1
  elif [ "$scope" = lq ] || [ "$scope" = lq::gguf ]; then
    grep -Eq "\b$name\(" <<<"$headers" && public=1
  fi
  if [ $public = 1 ]; then
    echo "not exported from $(basename "$so"): $sym"
    missing=1
  fi
done <<<"$defined"
[ $missing = 0 ] && echo "check_exports: every public function is exported"
exit $missing
