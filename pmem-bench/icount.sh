#!/bin/bash
# icount.sh -- instructions per operation of pmem-bench workloads, counted
# by valgrind's callgrind: the same count on every run of the same binary,
# whatever else the machine does.
#
# This machine's timings drift by ±20 % from one minute to the next, which
# hides a change of a few per cent in the work an operation does. An
# instruction count does not drift, so a change to the CPU work of the
# transaction path is judged here first, and its time with ab.sh.
#
# Each workload runs twice under callgrind, with N and 2N operations, by
# default in Eadr mode (the cache is persistent: no flush, so the count is
# the work itself); the difference divided by N is the count per
# operation, with pool creation and set-up cancelled out.
# For the alloc/free programs an operation is one allocation and one free;
# for hashmap, one insert and one lookup. `-m pmem` counts the path the
# benchmarks time instead, flush loops included (valgrind runs `clwb`).
#
# What does not cancel is each program's check of its result, which grows
# with the operation count (the alloc/free programs read every slot and
# list every object, hashmap looks every key up again, tx_update reads
# every slot it wrote). The second column leaves those functions out
# (their inclusive counts, from the same callgrind runs): the library's
# own work per operation. Until the eighteenth session only the first
# column was printed, and BENCHMARKS-HISTORY.md's earlier counts are that
# one.
#
# usage (from the project root):
#   pmem-bench/icount.sh [-n N] [-m eadr|pmem] [BIN]
#     BIN   a pmem-bench binary (default target/release/pmem-bench)
#     -n N  operations of the shorter run (default 50000)
#     -m M  persistence mode (default eadr)
# example:
#   cargo build --release --bin pmem-bench && cp target/release/pmem-bench /tmp/old
#   (change the code)
#   cargo build --release --bin pmem-bench
#   pmem-bench/icount.sh /tmp/old; pmem-bench/icount.sh
set -u
n=50000
mode=eadr
while getopts "n:m:" o; do
  case $o in n) n=$OPTARG ;; m) mode=$OPTARG ;; *) exit 2 ;; esac
done
case $mode in eadr | pmem) ;; *) echo "icount.sh: -m takes eadr or pmem" >&2; exit 2 ;; esac
shift $((OPTIND - 1))
bin=${1:-target/release/pmem-bench}
[ -x "$bin" ] || { echo "icount.sh: $bin is not an executable pmem-bench" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "icount.sh: needs valgrind" >&2; exit 2; }
command -v callgrind_annotate >/dev/null || { echo "icount.sh: needs callgrind_annotate (valgrind)" >&2; exit 2; }
dir=$(mktemp -d /dev/shm/pmem-icount.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# Instructions of one run: `ir PROGRAM ARGS...` (the pool is $dir/p).
ir() {
  rm -f "$dir/p" "$dir/cg.out"
  if ! PMEM_MODE=$mode valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$bin" "$@" >"$dir/out" 2>"$dir/err"; then
    echo "icount.sh: $bin $* failed:" >&2
    tail -5 "$dir/err" >&2
    exit 1
  fi
  local total checks
  total=$(grep -o 'refs: *[0-9,]*' "$dir/err" | tr -d ', ' | cut -d: -f2)
  # The inclusive count of each result check the program ran (a function's
  # own line in the inclusive listing ends with the binary's name).
  checks=$(callgrind_annotate --inclusive=yes --threshold=100 "$dir/cg.out" 2>/dev/null |
    grep -E ':pmem_bench::(tx_update::verify|hashmap::verify|ptr_array::check_allocated|ptr_array::check_freed) \[' |
    awk '{gsub(",", "", $1); s += $1} END {print s + 0}')
  echo "$total $((total - checks))"
}

# The pool size (64 MiB) keeps callgrind's runs short; tx_update's root
# alone is 16 MiB.
# The arguments of `ir` for workload `$1` with `$2` operations: the
# words P and N of the workload become the pool and the count (whole
# words only: the pool's folder name is random and may hold either
# letter).
args() {
  local w
  for w in $1; do
    case $w in P) echo "$dir/p" ;; N) echo "$2" ;; *) echo "$w" ;; esac
  done
}

for w in "tx_update P 1 N 64" "atomic_alloc_free P 64 N 64" \
  "tx_alloc_free P N 64" "hashmap P N 64"; do
  prog=${w%% *}
  mapfile -t short < <(args "$w" "$n")
  mapfile -t long < <(args "$w" $((2 * n)))
  read -r a a_lib < <(ir "${short[@]}") || exit 1
  [ -n "$a" ] || exit 1
  read -r b b_lib < <(ir "${long[@]}") || exit 1
  [ -n "$b" ] || exit 1
  printf '%-20s %8d instructions/op, %8d without the program'"'"'s checks\n' \
    "$prog" $(((b - a) / n)) $(((b_lib - a_lib) / n))
done
