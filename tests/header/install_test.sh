#!/usr/bin/env bash
# The installed package, as a consumer sees it (run by CTest; see
# CMakeLists.txt here).
#   install_test.sh STEP BUILD_DIR WORK_DIR CONSUMER_SRC
# with CMAKE, PKG_CONFIG, CC and CFLAGS (for the consumers) from the
# environment.
# STEP install:      `cmake --install BUILD_DIR` into WORK_DIR/prefix; the
#                    installed `tsnap` command runs on the installed library.
# STEP find_package: build CONSUMER_SRC with CMake against that prefix only
#                    (tsnap::tsnap and tsnap::tsnap_static) and run both.
# STEP pkg_config:   build CONSUMER_SRC/consumer.c with
#                    `pkg-config --cflags --libs tsnap` and run it.
set -euo pipefail

step=$1 build=$2 work=$3 src=$4
prefix=$work/prefix
CMAKE=${CMAKE:-cmake}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
cc=${CC:-cc}
cflags=${CFLAGS:-}

run() { printf '+ %s\n' "$*" >&2; "$@"; }

# The one directory of the prefix holding a file named $1.
find_one() {
    local hits
    hits=$(find "$prefix" -name "$1" -printf '%h\n')
    [ -n "$hits" ] || { echo "no $1 installed under $prefix" >&2; exit 1; }
    [ "$(wc -l <<<"$hits")" -eq 1 ] || { echo "more than one $1 under $prefix:" >&2; echo "$hits" >&2; exit 1; }
    printf '%s\n' "$hits"
}

case $step in
install)
    rm -rf -- "$work"
    mkdir -p -- "$work"
    run "$CMAKE" --install "$build" --prefix "$prefix"
    for f in tsnap.h libtsnap.so libtsnap.a tsnap.pc tsnapConfig.cmake \
             tsnapConfigVersion.cmake tsnapTargets.cmake; do
        find_one "$f" >/dev/null
    done
    # The command runs from the prefix, on the library installed beside it.
    bindir=$prefix/bin
    run "$bindir/tsnap" --version
    if command -v ldd >/dev/null 2>&1; then
        printf '+ ldd tsnap: libtsnap is the installed one\n'
        lib=$(ldd "$bindir/tsnap" | awk '/libtsnap\.so/ { print $3 }')
        [ "$(readlink -f "$lib")" = "$(readlink -f "$(find_one libtsnap.so)/libtsnap.so")" ] ||
            { echo "tsnap loads $lib, not the installed library" >&2; exit 1; }
    fi
    ;;
find_package)
    out=$work/find_package
    rm -rf -- "$out"
    mkdir -p -- "$out/data"
    # Only the prefix may supply tsnap: no package registry, no system copy
    # ahead of it; CMakeLists.txt of the consumer checks where it came from.
    run "$CMAKE" -S "$src" -B "$out/build" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
        -DTSNAP_EXPECTED_PREFIX="$prefix"
    run "$CMAKE" --build "$out/build"
    run "$out/build/consumer_shared" "$out/data"
    run "$out/build/consumer_static" "$out/data"
    # With MPI: tsnap::mpi builds, and its program saves on 2 ranks.
    if [ -n "$(find "$prefix" -name tsnapMpiTargets.cmake)" ]; then
        [ -x "$out/build/consumer_mpi" ] ||
            { echo "tsnap::mpi is installed but consumer_mpi was not built" >&2; exit 1; }
        # (Open MPI's own leaks are no concern here: tests/mpi checks ours)
        run env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
            ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            "${MPIRUN:-mpirun}" --oversubscribe -n 2 "$out/build/consumer_mpi" "$out/data"
        [ -f "$out/data/consumer_mpi.h5" ] || { echo "consumer_mpi saved nothing" >&2; exit 1; }
    fi
    # The shared consumer must have loaded the installed library.
    libdir=$(find_one libtsnap.so)
    if command -v ldd >/dev/null 2>&1; then
        printf '+ ldd consumer_shared | grep libtsnap\n'
        ldd "$out/build/consumer_shared" | grep -F "$libdir/libtsnap.so"
    fi
    ;;
pkg_config)
    out=$work/pkg_config
    rm -rf -- "$out"
    mkdir -p -- "$out/data"
    pcdir=$(find_one tsnap.pc)
    export PKG_CONFIG_PATH=$pcdir
    flags=$(run "$PKG_CONFIG" --cflags --libs tsnap)
    printf '  -> %s\n' "$flags"
    # shellcheck disable=SC2086  # the flags are words
    run "$cc" $cflags -o "$out/consumer" "$src/consumer.c" $flags
    libdir=$(find_one libtsnap.so)
    LD_LIBRARY_PATH=$libdir run "$out/consumer" "$out/data"
    ;;
*)
    echo "install_test.sh: unknown step '$step'" >&2
    exit 2
    ;;
esac
