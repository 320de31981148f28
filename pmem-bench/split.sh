#!/bin/bash
# split.sh -- each workload's time split into the CPU's work and the
# persistence's, for libpmemobj and for us, run in alternation.
#
# A row of compare.sh is one number per library. This runs each side twice
# more in the same round: once as compare.sh does (flushes and fences
# reach the media), once with the cache counted as persistent (ours in
# Eadr mode: no write-back, no streaming store, the fences kept;
# libpmemobj with PMEM_NO_FLUSH=1: no flush, its eADR copy routines, the
# fences kept). The second run is the work each library does on the CPU;
# the difference is what waiting for the media costs it. A target a row
# misses then says which of the two it misses on.
#
# usage (from the project root):
#   pmem-bench/split.sh [-n REPS] [-d DIR] [WORKLOAD...]
#     WORKLOAD  compare.sh's names: tx_update_1 tx_update_2 tx_alloc_free
#               atomic_64 atomic_256 atomic_4096 hashmap (default: all)
#     -n REPS   rounds (default 5); each round runs the four sides once
#     -d DIR    where the pool goes (default /dev/shm)
# The C side is the one ../shared/peer/compare.sh builds (in
# ${TMPDIR:-/tmp}/pmdk-peer-build): run compare.sh once first.
#
# example:
#   TMPDIR=/tmp/t pmem-bench/split.sh -n 5 -d /dev/shm/t atomic_64 tx_alloc_free
set -u
reps=5 dir=/dev/shm
while getopts "n:d:" o; do
  case $o in n) reps=$OPTARG ;; d) dir=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
peer=${TMPDIR:-/tmp}/pmdk-peer-build
[ -d "$peer" ] || {
  echo "split.sh: no C peer in $peer: run ../shared/peer/compare.sh once (same TMPDIR)" >&2
  exit 2
}
cargo build --release -q --bin pmem-bench || { echo "split.sh: cargo build failed" >&2; exit 2; }
ours=$PWD/target/release/pmem-bench

# The arguments of compare.sh's table (pool first).
declare -A cmd=(
  [tx_update_1]="tx_update POOL 1 1000000"
  [tx_update_2]="tx_update POOL 2 1000000"
  [tx_alloc_free]="tx_alloc_free POOL 1000000"
  [atomic_64]="atomic_alloc_free POOL 64 1000000"
  [atomic_256]="atomic_alloc_free POOL 256 1000000"
  [atomic_4096]="atomic_alloc_free POOL 4096 200000"
  [hashmap]="hashmap POOL 1000000"
)
order="tx_update_1 tx_update_2 tx_alloc_free atomic_64 atomic_256 atomic_4096 hashmap"
[ $# -gt 0 ] && order="$*"
for w in $order; do
  [ -n "${cmd[$w]:-}" ] || { echo "split.sh: unknown workload $w (one of: ${!cmd[*]})" >&2; exit 2; }
  prog=${cmd[$w]%% *}
  [ -x "$peer/$prog" ] || { echo "split.sh: no $peer/$prog: run compare.sh once" >&2; exit 2; }
done

out=$(mktemp -d) || exit 2
pool=$dir/split-$$.pool
trap 'rm -rf "$out"; rm -f "$pool"' EXIT
for w in $order; do
  args=${cmd[$w]//POOL/$pool}
  for r in $(seq 1 "$reps"); do
    for side in pmdk pmdk_cache ours ours_cache; do
      case $side in
        pmdk) run="env PMEM_IS_PMEM_FORCE=1 $peer/$args" ;;
        pmdk_cache) run="env PMEM_IS_PMEM_FORCE=1 PMEM_NO_FLUSH=1 $peer/$args" ;;
        ours) run="env PMEM_MODE=pmem $ours $args" ;;
        ours_cache) run="env PMEM_MODE=eadr $ours $args" ;;
      esac
      rm -f "$pool"
      $run >>"$out/$side.$w" 2>&1 || {
        echo "split.sh: $side $w run $r failed:" >&2; tail -3 "$out/$side.$w" >&2; exit 1
      }
    done
  done
done
rm -f "$pool"

python3 - "$(dirname "$0")" "$out" $order <<'EOF'
import statistics, sys
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
from results import parse
out, order = sys.argv[2], sys.argv[3:]
def ratio(a, b):
    return f"{a / b:6.2f}" if b > 0 else "     -"
print("ns per operation, medians; 'cpu' = the cache counted as persistent,")
print("'wait' = total - cpu; ratios are libpmemobj / ours")
print(f"{'workload':20} {'PMDK':>7} {'cpu':>6} {'wait':>6}   {'ours':>6} {'cpu':>6} {'wait':>6}"
      f"   {'total':>6} {'cpu':>6} {'wait':>6}")
for w in order:
    # Every workload of this script reports ns per operation.
    sides = {s: {k: v for k, (unit, v) in parse(f"{out}/{s}.{w}").items() if unit == 'ns_per_op'}
             for s in ('pmdk', 'pmdk_cache', 'ours', 'ours_cache')}
    for key in sides['pmdk']:
        if not all(key in sides[s] for s in sides):
            print(f"{key:20} missing on one side"); continue
        m = {s: statistics.median(sides[s][key]) for s in sides}
        pw, ow = m['pmdk'] - m['pmdk_cache'], m['ours'] - m['ours_cache']
        print(f"{key:20} {m['pmdk']:7.1f} {m['pmdk_cache']:6.1f} {pw:6.1f}   "
              f"{m['ours']:6.1f} {m['ours_cache']:6.1f} {ow:6.1f}   "
              f"{ratio(m['pmdk'], m['ours'])} {ratio(m['pmdk_cache'], m['ours_cache'])} {ratio(pw, ow)}")
EOF
