#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer in a private copy of the
# tree (build/ is left alone) and runs the integration tests against it, node preloaded with
# libasan. Any sanitizer report fails the run and is printed.
#   scripts/asan.sh [test-file-filter…]     default: the relay, proxy, hostile, fault and leak tests
# MMPROXY_ASAN_DIR sets the private tree (default .scratch/asan).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
dir=${MMPROXY_ASAN_DIR:-$root/.scratch/asan}
filters=("$@")
((${#filters[@]})) || filters=(tcp- udp- hostile faults leaks)

mkdir -p "$dir/test"
rm -rf "$dir/native" "$dir/reports"
cp -r "$root/native" "$dir/native"
cp "$root/binding.gyp" "$root/package.json" "$dir/"
cp "$root/test/run.js" "$dir/test/run.js"
ln -sfn "$root/node_modules" "$dir/node_modules"
mkdir -p "$dir/reports"

cd "$dir"
san="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
CXXFLAGS="$san" CFLAGS="$san" LDFLAGS="-fsanitize=address,undefined" \
  npx node-gyp configure build -j max >"$dir/reports/build.log" 2>&1 ||
  { cat "$dir/reports/build.log"; exit 1; }
addon="$dir/build/Release/mmproxy_native.node"
ldd "$addon" | grep -q libasan || { echo "asan.sh: $addon is not linked with libasan" >&2; exit 1; }
# The compiled TypeScript next to this build: lib/native.ts loads <dist>/../build.
(cd "$root" && npx tsc -p tsconfig.json --outDir "$dir/dist")

libasan=$(g++ -print-file-name=libasan.so)
# Node itself leaks by design at exit, so leak detection is off; every other report counts.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$dir/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$dir/reports/ubsan"
# ASan keeps freed memory in quarantine (256 MiB by default) and grows its shadow: the tests' RSS
# bounds get this much slack; their descriptor, thread and byte checks stay exact.
export MMPROXY_RSS_SLACK_MIB=${MMPROXY_RSS_SLACK_MIB:-512}
export MMPROXY_TEST_RELAY_BYTES=${MMPROXY_TEST_RELAY_BYTES:-$((64 * 1024 * 1024))}
set +e
LD_PRELOAD="$libasan" node "$dir/test/run.js" "${filters[@]}"
status=$?
set -e
reports=$(find "$dir/reports" -name 'asan.*' -o -name 'ubsan.*')
if [[ -n $reports ]]; then
  echo "asan.sh: sanitizer reports:" >&2
  for r in $reports; do echo "== $r" >&2; cat "$r" >&2; done
  exit 1
fi
if ((status != 0)); then
  echo "asan.sh: the tests failed (exit $status) with no sanitizer report" >&2
  exit "$status"
fi
echo "asan.sh: the tests passed under ASan + UBSan with no report"
