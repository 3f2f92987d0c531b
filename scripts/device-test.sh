#!/bin/sh
# On a lent GPU machine (repo root, .devdeps carried): build everything and run the GPU tests
# (ctest label gpu; 4 at once: their time is mostly the CPU references, DFA_GPU_TEST_JOBS to change)
# logs under $OUT.
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
eval "$(sh scripts/device-deps.sh env)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
ldd --version | head -1 | tee -a "$OUT/device.txt"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 && cmake --build build -j 16 >> "$OUT/build.log" 2>&1
rc=$?; echo "build rc=$rc"; [ $rc -eq 0 ] || { tail -30 "$OUT/build.log"; exit 1; }
cd build && ctest -L gpu -j "${DFA_GPU_TEST_JOBS:-4}" --output-on-failure --timeout 600 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
