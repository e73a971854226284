#!/usr/bin/env bash
# Sets up, builds and runs tsnap on Debian 12 (as root, or with sudo).
#
#   bash tools/setup.sh demo   install what is missing, build, run the demo
#   bash tools/setup.sh test   install what is missing, build, run every test
#
# Each run installs only what is missing (Debian packages, the Python virtual
# environment .venv and its pip packages from tests/requirements.txt), so it
# is safe to rerun; every step says what it does or why it skips.  It needs no
# standard input (CI runs it with CI=true and none).  CUDA is optional: the
# build uses the toolkit when it finds one.
set -Eeuo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

APT_PACKAGES=(build-essential cmake pkg-config libhdf5-dev hdf5-tools libcunit1-dev
              libxxhash-dev libdeflate-dev libzstd-dev liblz4-dev libdlpack-dev zlib1g-dev
              python3-venv python3-dev
              openmpi-bin libopenmpi-dev libhdf5-openmpi-dev)
BASE_PYTHON=/usr/bin/python3   # Debian's, whatever else is first on PATH
VENV=$ROOT/.venv
REQUIREMENTS=$ROOT/tests/requirements.txt
STAMP=$VENV/.tsnap-requirements   # what pip last installed from REQUIREMENTS
BUILD=$ROOT/build
BUILD_ASAN=$ROOT/build-asan
JOBS=$(nproc)

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
skip() { printf '    skip: %s\n' "$*"; }
die()  { printf '\nsetup.sh: FAILED: %s\n' "$*" >&2; exit 1; }
fail() { printf '\nsetup.sh: %s\n' "$*" >&2; return 1; }
trap 'printf "\nsetup.sh: FAILED (exit %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

usage() {
    printf 'usage: bash tools/setup.sh demo|test\n'
    printf '  demo  install what is missing, build everything, run the demo\n'
    printf '  test  install what is missing, build everything, run every test\n'
}

# ---------------------------------------------------------------- install

package_installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null || true)
    grep -qx installed <<<"$status"
}

install_debian_packages() {
    step "Debian packages"
    command -v dpkg-query >/dev/null 2>&1 ||
        die "dpkg-query not found: this script installs packages on Debian 12 only (needs: ${APT_PACKAGES[*]})"
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        package_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        skip "all ${#APT_PACKAGES[@]} installed (${APT_PACKAGES[*]})"
        return
    fi
    note "missing: ${missing[*]}"
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "not root and no sudo: as root, run apt-get install ${missing[*]}"
        # Without a terminal sudo cannot ask for a password: fail, never hang.
        if [ -t 0 ]; then as_root=(sudo); else as_root=(sudo -n); fi
    fi
    note "apt-get update"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update
    note "apt-get install ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends "${missing[@]}" </dev/null
    for p in "${missing[@]}"; do
        package_installed "$p" || die "apt-get did not install $p"
    done
}

setup_venv() {
    step "Python virtual environment .venv (from $BASE_PYTHON)"
    [ -x "$BASE_PYTHON" ] || die "$BASE_PYTHON not found (Debian package python3)"
    local want have=""
    want=$("$BASE_PYTHON" -c 'import sys; print(sys.prefix, "%d.%d" % sys.version_info[:2])')
    if [ -x "$VENV/bin/python" ]; then
        have=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2]) if sys.prefix != sys.base_prefix else print("not a venv")' 2>/dev/null || true)
    fi
    if [ -n "$have" ] && [ "$have" = "$want" ]; then
        skip ".venv exists (python ${want#* })"
    else
        if [ -e "$VENV" ]; then
            note ".venv is broken or made from another Python (${have:-unusable}): making it anew"
            rm -rf -- "$VENV"
        fi
        note "$BASE_PYTHON -m venv .venv"
        "$BASE_PYTHON" -m venv "$VENV"
    fi

    step "pip packages from ${REQUIREMENTS#"$ROOT"/}"
    [ -f "$REQUIREMENTS" ] || die "$REQUIREMENTS not found"
    local stamp
    stamp="$(sha256sum <"$REQUIREMENTS" | cut -d' ' -f1) python $want"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp" ]; then
        skip "installed already from this exact file (stamp .venv/${STAMP##*/})"
        return
    fi
    rm -f -- "$STAMP"
    PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REQUIREMENTS"
    printf '%s\n' "$stamp" >"$STAMP"
}

# ------------------------------------------------------------------ build

# build DIR BUILD_TYPE [CMAKE_ARGS...]: configures and builds in DIR.
build() {
    local dir=$1 type=$2
    shift 2
    step "configure ${dir#"$ROOT"/}/ ($type${*:+, $*})"
    # The Python extension builds against the venv's Python and NumPy.
    cmake -S "$ROOT" -B "$dir" --no-warn-unused-cli -DCMAKE_BUILD_TYPE="$type" \
        -DTSNAP_BUILD_TESTS=ON -DTSNAP_BUILD_EXAMPLES=ON -DTSNAP_BUILD_PYTHON=ON \
        -DPython3_EXECUTABLE="$VENV/bin/python" "$@"
    step "build ${dir#"$ROOT"/}/ ($JOBS jobs)"
    cmake --build "$dir" --parallel "$JOBS"
}

# ------------------------------------------------------------------ tests

# The test stages run even when an earlier one failed, so that one run shows
# every failure; the script fails at the end if any did.  (They run in an
# `||` list, where bash ignores `set -e`: each returns its status itself.)
FAILED=()
check() {
    local name=$1
    shift
    "$@" || FAILED+=("$name")
}

run_ctest() {
    step "ctest in ${1#"$ROOT"/}/"
    ctest --test-dir "$1" --output-on-failure --no-tests=error --parallel "$JOBS"
}

run_pytest() {
    step "pytest tests/python"
    if [ ! -d "$ROOT/tests/python" ]; then
        skip "no tests/python directory"
        return
    fi
    local have_tests=0 rc=0
    if [ -n "$(find "$ROOT/tests/python" \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit)" ]; then
        have_tests=1
    fi
    # The tests drive the C library through the helper tsnap_testio: this
    # build's, not one left in another build directory.
    local testio_path=$BUILD/tests/tools/tsnap_testio.path
    if [ -f "$testio_path" ]; then
        TSNAP_TESTIO=$(cat "$testio_path")
        export TSNAP_TESTIO
    fi
    # ... and run this build's `tsnap` command.
    if [ -x "$BUILD/tools/tsnap" ]; then
        TSNAP_CLI=$BUILD/tools/tsnap
        export TSNAP_CLI
    fi
    # `import tsnap` finds this build's package (build/python/tsnap).
    PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}" \
        "$VENV/bin/python" -m pytest -ra "$ROOT/tests/python" || rc=$?
    if [ "$rc" -eq 5 ] && [ "$have_tests" -eq 0 ]; then
        skip "tests/python has no tests yet (pytest exit 5: none collected)"
    elif [ "$rc" -ne 0 ]; then
        fail "pytest failed (exit $rc)"
    fi
}

# The sanitizer build's tests must pass with no report at all.  A report
# already fails its test (ASan and LSan exit non-zero, UBSan aborts: the build
# uses -fno-sanitize-recover), except one printed by a child process whose
# exit the test expected to be bad; so the full log is searched as well.
run_ctest_sanitized() {
    local opts="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1"
    # CUDA's runtime maps memory where ASan keeps its shadow gap.
    opts+=":protect_shadow_gap=0"
    export ASAN_OPTIONS="$opts${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    if [ -f "$ROOT/tests/lsan.supp" ]; then
        export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    fi
    rm -f "$BUILD_ASAN"/Testing/Temporary/LastTest*.log
    run_ctest "$BUILD_ASAN" || return 1
    step "sanitizer reports in the ctest log"
    local logs reports
    logs=("$BUILD_ASAN"/Testing/Temporary/LastTest*.log)
    [ -f "${logs[0]}" ] || fail "ctest wrote no log in ${BUILD_ASAN#"$ROOT"/}/Testing/Temporary" || return 1
    reports=$(grep -h -E -n 'ERROR: (Address|Leak)Sanitizer|SUMMARY: [A-Za-z]+Sanitizer|runtime error: ' "${logs[@]}" |
              grep -v -E '^[0-9]+:Command: ' || true)
    if [ -n "$reports" ]; then
        printf '%s\n' "$reports" >&2
        fail "sanitizer reports in passing tests (full output: ${logs[*]})" || return 1
    fi
    note "none"
}

# The `tsnap` command's tests again, against the sanitizer build's binary
# (its tests call it as a child process, so a report shows in its stderr,
# which tests/python/clihelpers.py checks).
run_pytest_cli_sanitized() {
    step "pytest tests/python/test_cli_*.py with build-asan/tools/tsnap"
    TSNAP_CLI=$BUILD_ASAN/tools/tsnap PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}" \
        "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT"/tests/python/test_cli_*.py \
        "$ROOT"/tests/python/test_foreign_cli.py ||
        fail "pytest of the sanitized tsnap command failed"
}

# ------------------------------------------------------------------- demo

# The number of checkpoints committed in store directory $1.
checkpoints_in() {
    local files=("$1"/step-*.h5)
    if [ -e "${files[0]}" ]; then echo "${#files[@]}"; else echo 0; fi
}

run_demo() {
    step "demo: examples/every_dtype"
    local out="$BUILD/demo"
    mkdir -p "$out"
    "$BUILD/examples/every_dtype" "$out/every_dtype.h5"
    note "the snapshot is $out/every_dtype.h5; h5dump -A shows its attributes"

    step "demo: a simulation that checkpoints, is killed, restarts, and is analysed"
    # heat_cuda, the GPU build of the simulation, where it was built and
    # finds a device (its --probe exits 0, or 77 saying why not); else heat.
    local run="$out/heat" heat="$BUILD/examples/heat" cuda="$BUILD/examples/heat_cuda"
    local args=(--size 512 --steps 3000 --every 100) why rc pid waited=0
    if [ ! -x "$cuda" ]; then
        note "examples/heat, the field in host memory: heat_cuda is not built (no usable CUDA toolkit)"
    elif why=$("$cuda" --probe 2>&1); then
        heat=$cuda
        note "examples/heat_cuda: ${why#heat_cuda: }"
    else
        rc=$?
        note "examples/heat, the field in host memory: heat_cuda cannot run here (exit $rc): ${why#heat_cuda: }"
    fi
    rm -rf "$run"
    "$heat" "$run" "${args[@]}" &
    pid=$!
    # Killed once 10 of its 31 checkpoints are committed, however fast it runs.
    while kill -0 "$pid" 2>/dev/null && [ "$(checkpoints_in "$run")" -lt 10 ] && [ "$waited" -lt 6000 ]; do
        sleep 0.01
        waited=$((waited + 1))
    done
    if kill -KILL "$pid" 2>/dev/null; then
        note "killed the simulation part way (pid $pid)"
    else
        note "the simulation finished before the kill"
    fi
    wait "$pid" 2>/dev/null || true
    note "checkpoints on disk: $(checkpoints_in "$run")"
    "$heat" "$run" "${args[@]}"
    PYTHONPATH="$BUILD/python" "$VENV/bin/python" "$ROOT/examples/analyse_heat.py" \
        "$run" "$out/heat.png"
    note "the plot is $out/heat.png"
    run_demo_mpi "$out" "$run" "${args[@]}"
}

# The same simulation as an MPI job (examples/heat_mpi): 4 ranks, killed
# part way, resumed on 2, compared with the serial run ($2) and analysed;
# skipped, saying why, where heat_mpi is not built or mpirun cannot start.
run_demo_mpi() {
    local out=$1 serial=$2
    shift 2
    local args=("$@") run="$out/heat_mpi" heat_mpi="$BUILD/examples/heat_mpi" why pid waited=0
    local mpirun=(mpirun --oversubscribe)
    step "demo: the simulation as an MPI job: 4 ranks, killed, resumed on 2 ranks, analysed"
    if [ ! -x "$heat_mpi" ]; then
        skip "examples/heat_mpi is not built (CMake found no MPI)"
        return
    fi
    if [ "$(id -u)" -eq 0 ]; then # Open MPI refuses root without both
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
    if ! why=$("${mpirun[@]}" -n 2 true 2>&1); then
        skip "mpirun cannot start a job here: ${why:-no reason given}"
        return
    fi
    rm -rf "$run"
    # A session of its own: mpirun puts each rank into a process group of
    # its own, but all stay in its session, which the kill then empties.
    setsid "${mpirun[@]}" -n 4 "$heat_mpi" "$run" "${args[@]}" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && [ "$(checkpoints_in "$run")" -lt 10 ] && [ "$waited" -lt 6000 ]; do
        sleep 0.01
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        waited=0
        while ps -o stat= -s "$pid" | grep -qv '^Z' && [ "$waited" -lt 1000 ]; do
            pkill -KILL -s "$pid" || true
            sleep 0.01
            waited=$((waited + 1))
        done
        note "killed mpirun and its 4 ranks part way (session $pid)"
    else
        note "the 4-rank job finished before the kill"
    fi
    wait "$pid" 2>/dev/null || true
    note "checkpoints on disk: $(checkpoints_in "$run"), each one HDF5 file over the ranks' parts"
    "${mpirun[@]}" -n 2 "$heat_mpi" "$run" "${args[@]}"
    if "$BUILD/tools/tsnap" diff "$serial" "$run"; then
        note "its last checkpoint holds the serial run's field, value for value (tsnap diff)"
    else
        fail "the MPI job ended with another field than the serial run's" || return 1
    fi
    PYTHONPATH="$BUILD/python" "$VENV/bin/python" "$ROOT/examples/analyse_heat.py" \
        "$run" "$out/heat_mpi.png"
    note "the plot is $out/heat_mpi.png"
}

# ------------------------------------------------------------------- main

[ $# -eq 1 ] || { usage >&2; exit 2; }
case $1 in
    demo)
        install_debian_packages
        setup_venv
        build "$BUILD" RelWithDebInfo
        run_demo
        ;;
    test)
        install_debian_packages
        setup_venv
        build "$BUILD" RelWithDebInfo
        check "ctest in build/" run_ctest "$BUILD"
        check "pytest" run_pytest
        build "$BUILD_ASAN" Debug -DTSNAP_SANITIZE=ON
        check "ctest in build-asan/ (ASan, UBSan)" run_ctest_sanitized
        check "the tsnap command under ASan, UBSan" run_pytest_cli_sanitized
        if [ ${#FAILED[@]} -gt 0 ]; then
            die "$(printf '%s; ' "${FAILED[@]}")see the output above"
        fi
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
step "setup.sh $1: done in ${SECONDS}s"
