#!/bin/bash
# ab.sh -- two pmem-bench binaries (before and after a change) and the
# libpmemobj peer, run in alternation on fresh pools, medians printed.
#
# This machine's timings drift by ±20 % from one minute to the next, the C
# side included, so a change is only measured against its old binary run
# in turn with it. The "old -> new" figures of BENCHMARKS.md and
# BENCHMARKS-HISTORY.md come from this.
#
# usage (from the project root):
#   pmem-bench/ab.sh [-n REPS] [-m pmem|msync] [-d DIR] OLD NEW PROGRAM ARGS...
#     OLD, NEW  two pmem-bench binaries
#     PROGRAM ARGS  a pmem-bench program and its arguments without the pool,
#               e.g. `tx_update 1 1000000` or `atomic_alloc_free 4096 200000`
#     -n REPS   runs of each side (default 5)
#     -m MODE   persistence mode, as compare.sh (default pmem)
#     -d DIR    where the pool goes (default /dev/shm)
# The C side runs when ../shared/peer/compare.sh has built it (in
# ${TMPDIR:-/tmp}/pmdk-peer-build); otherwise only OLD and NEW run.
#
# example:
#   cargo build --release --bin pmem-bench && cp target/release/pmem-bench /tmp/old
#   (change the code)
#   cargo build --release --bin pmem-bench
#   pmem-bench/ab.sh -n 7 /tmp/old target/release/pmem-bench tx_alloc_free 1000000
set -u
reps=5 mode=pmem dir=/dev/shm
while getopts "n:m:d:" o; do
  case $o in n) reps=$OPTARG ;; m) mode=$OPTARG ;; d) dir=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
if [ $# -lt 3 ]; then
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
old=$1 new=$2 prog=$3
shift 3
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "ab.sh: $b is not an executable pmem-bench" >&2; exit 2; }
done
case $mode in
  pmem) envs="PMEM_IS_PMEM_FORCE=1 PMEM_MODE=pmem" ;;
  msync) envs="PMEM_IS_PMEM_FORCE=0 PMEM_MODE=msync" ;;
  *) echo "ab.sh: mode must be pmem or msync" >&2; exit 2 ;;
esac
peer=${TMPDIR:-/tmp}/pmdk-peer-build/$prog
[ -x "$peer" ] || { echo "ab.sh: no C peer at $peer (run compare.sh once); timing ours only" >&2; peer=; }

out=$(mktemp -d) || exit 2
pool=$dir/ab-$$.pool
trap 'rm -rf "$out"; rm -f "$pool"' EXIT
for r in $(seq 1 "$reps"); do
  for side in old new peer; do
    # The C programs are one binary each; pmem-bench takes the program.
    case $side in old) run=("$old" "$prog") ;; new) run=("$new" "$prog") ;; peer) run=("$peer") ;; esac
    [ -n "${run[0]}" ] || continue
    rm -f "$pool"
    env $envs "${run[@]}" "$pool" "$@" >>"$out/$side" 2>&1 || {
      echo "ab.sh: $side run $r failed:" >&2; tail -3 "$out/$side" >&2; exit 1
    }
  done
done

python3 - "$out" "$(dirname "$0")" <<'EOF'
import os, statistics, sys
out = sys.argv[1]
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[2])
from results import parse
sides = {s: parse(os.path.join(out, s)) for s in ('old', 'new', 'peer')}
print(f"{'workload':30} {'old':>10} {'new':>10} {'PMDK':>10} {'unit':>10} {'new/old':>8} {'speedup':>8}")
for key, (unit, _) in sides['old'].items():
    med = {s: statistics.median(r[key][1]) if key in r else None for s, r in sides.items()}
    faster = (lambda a, b: b / a) if unit == 'MiB_per_s' else (lambda a, b: a / b)
    gain = faster(med['old'], med['new']) if med['new'] else float('nan')
    speed = f"{faster(med['peer'], med['new']):8.2f}" if med['peer'] and med['new'] else f"{'':>8}"
    peer = f"{med['peer']:10.1f}" if med['peer'] else f"{'':>10}"
    print(f"{key:30} {med['old']:10.1f} {med['new'] or float('nan'):10.1f} {peer} {unit:>10} {gain:8.2f} {speed}")
    for s in ('old', 'new', 'peer'):
        if key in sides[s]:
            print(f"  {s:5} " + " ".join(f"{v:.1f}" for v in sides[s][key][1]))
EOF
