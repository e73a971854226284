#!/usr/bin/env bash
# Runs a test program under mpirun (CTest runs this; see CMakeLists.txt here).
#   run.sh NRANKS PROGRAM [ARGS...]
# Exits 77 (CTest's skip) with the reason printed only when mpirun itself
# cannot start a job here.
set -u
n=$1
shift
MPIRUN=${MPIRUN:-mpirun}
if ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "SKIP: no $MPIRUN on PATH"
    exit 77
fi
flags=(--oversubscribe)
if ! probe=$("$MPIRUN" "${flags[@]}" -n 1 true 2>&1); then
    echo "SKIP: $MPIRUN cannot start a job here:"
    printf '%s\n' "$probe"
    exit 77
fi
exec "$MPIRUN" "${flags[@]}" -n "$n" "$@"
