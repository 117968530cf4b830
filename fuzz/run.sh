#!/usr/bin/env bash
# Builds the libFuzzer targets over native/header_framing.cc and native/udp_flow_table.cc (clang,
# ASan + UBSan), then fuzzes the framing for SECONDS (default 60)
# from the seed corpus and the flow table for a quarter of that (at least 5 s).
#   fuzz/run.sh [SECONDS]     0 = build only.  Exit status: 0 clean, 1 crash/property, 2 no clang.
# Findings (crash-*, leak-*, timeout-*) are written to fuzz/out/; new inputs to fuzz/out/corpus/.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
seconds=${1:-60}
out=${MMPROXY_FUZZ_OUT:-$here/out}

cxx=${CLANGXX:-}
if [[ -z $cxx ]]; then
  for c in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null; then cxx=$c; break; fi
  done
fi
if [[ -z $cxx ]]; then
  echo "fuzz/run.sh: no clang++ found; on Debian: apt-get install -y clang-14 libclang-rt-14-dev" >&2
  exit 2
fi

mkdir -p "$out/corpus"
src=(../native/header_framing.cc ../native/sock_addr.cc)
cd "$here"
"$cxx" -std=c++17 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -o "$out/framing_fuzzer" framing_fuzzer.cc "${src[@]}"
"$cxx" -std=c++17 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -o "$out/flow_table_fuzzer" flow_table_fuzzer.cc ../native/udp_flow_table.cc ../native/sock_addr.cc
[[ $seconds == 0 ]] && exit 0

# Inputs longer than 512 bytes add no coverage: framing looks at most at 107 bytes (v1) or the
# first 16 of a v2 header, and the datagram parser at its address block.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# fuzz TARGET PREFIX ARGS…: runs $out/TARGET; findings go to $out/PREFIXcrash-* and the like.
fuzz() {
  local target=$1 prefix=$2 status
  shift 2
  set +e
  "$out/$target" "$@" -artifact_prefix="$out/$prefix" -print_final_stats=1
  status=$?
  set -e
  if ((status != 0)); then
    echo "fuzz/run.sh: $target failed (exit $status); the input is in $out/ (${prefix}crash-*)" >&2
    exit 1
  fi
}
fuzz framing_fuzzer "" "$out/corpus" "$here/corpus/framing" \
  -dict="$here/framing.dict" -max_len=512 -max_total_time="$seconds"
mkdir -p "$out/flow-corpus"
fuzz flow_table_fuzzer flow- "$out/flow-corpus" -max_len=4096 \
  -max_total_time="$(((seconds + 3) / 4 > 5 ? (seconds + 3) / 4 : 5))"
