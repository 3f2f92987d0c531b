#!/bin/sh
# bench/fidelity_device.sh - one device call for issue 9's figures on a lent GPU machine (repo
# root, .devdeps carried): build dfa with CUDA (skipped when build-cuda/dfa exists), then
# bench/fidelity.sh --cuda at the given size (default full). Everything lands in $OUT/fidelity;
# a failing GPU step is retried on the CPU by fidelity.sh and named in tables.md.
#   OUT=$OUT sh bench/fidelity_device.sh [full|cpu|smoke]
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT/fidelity"
SIZE=${1:-full}
eval "$(sh scripts/device-deps.sh env)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/fidelity/device.txt" 2>&1
t0=$(date +%s)
if [ ! -x build-cuda/dfa ]; then
    cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release > "$OUT/fidelity/build.log" 2>&1 &&
        cmake --build build-cuda -j "$(nproc)" --target dfa_cli >> "$OUT/fidelity/build.log" 2>&1 ||
        { echo "build failed"; tail -30 "$OUT/fidelity/build.log"; exit 1; }
fi
echo "build $(( $(date +%s) - t0 )) s" | tee -a "$OUT/fidelity/device.txt"
bash bench/fidelity.sh --cuda --size "$SIZE" --dfa build-cuda/dfa -o "$OUT/fidelity" 2>&1 | tee "$OUT/fidelity/run.log" | tail -60
