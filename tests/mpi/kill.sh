#!/usr/bin/env bash
# Ranks killed (SIGKILL) at random moments during repeated collective saves
# into a distributed store (CTest runs this; see CMakeLists.txt here):
#   kill.sh PROGRAM [REPEATS]
# Each round starts 3 ranks saving steps, kills one of them at a random
# moment (mpirun then ends the others), checks on one process that every
# listed step is whole and holds its data, and reopens the store on 2 ranks,
# which must find nothing left of the killed save and save on.
set -u
prog=$1
repeats=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
run() { bash "$here/run.sh" "$@"; }

run 1 true >/dev/null || exit $?   # 77: mpirun cannot start here
dir=$(mktemp -d "${TMPDIR:-/tmp}/tsnap-mpi-kill-XXXXXX")
trap 'rm -rf -- "$dir"' EXIT
export TSNAP_TEST_SEED=${TSNAP_TEST_SEED:-$RANDOM$RANDOM}
echo "kill.sh: seed $TSNAP_TEST_SEED (TSNAP_TEST_SEED), $repeats rounds in $dir"
for round in $(seq 1 "$repeats"); do
    rm -f -- "$dir"/pid-*
    run 3 "$prog" store_loop "$dir" >"$dir.log" 2>&1 &
    launcher=$!
    for _ in $(seq 1 200); do
        [ "$(ls "$dir"/pid-* 2>/dev/null | wc -l)" -eq 3 ] && break
        sleep 0.05
    done
    victim=$((RANDOM % 3))
    delay=$(printf '0.%03d' $((RANDOM % 900 + 50)))
    sleep "$delay"
    pid=$(cat "$dir/pid-$victim" 2>/dev/null)
    if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
        echo "round $round: killed rank $victim after ${delay}s"
    else
        echo "round $round: the saves ended before the kill"
    fi
    wait "$launcher"
    run 1 "$prog" store_check "$dir" || { cat "$dir.log"; exit 1; }
    run 2 "$prog" store_reopen "$dir" || exit 1
done
rm -f -- "$dir.log"
echo "kill.sh: every committed step whole, no torn step listed, leftovers cleaned"
