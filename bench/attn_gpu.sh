#!/bin/sh
# One device call: build, GPU tests, compute-sanitizer (memcheck, racecheck) on a small shape,
# time our attention kernel variants, check dense outputs against PyTorch SDPA and time D=72, then
# the PyTorch baselines (cuDNN SDPA, FA2, FlexAttention dense and with our exact arrow block mask)
# in the same run, and print the comparison table last.
# usage (repo root, on a GPU machine): sh bench/attn_gpu.sh [iters]     logs and JSON under $OUT
#   env: DFA_NO_TESTS=1 (no full GPU test run), DFA_NO_NCU=1 (no Nsight Compute), DFA_NO_BASELINES=1,
#        DFA_INTERLEAVE=1 (then bench/attn_interleave.sh: ours vs cuDNN / Flex alternately in one process,
#        ~2 min; its output goes to bench.log + its table to summary.txt, one more file: attn_interleave.json)
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export OUT
ITERS=${1:-30}
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
# at most 8 files come back from a device call: summary, build, test (+sanitizers), bench, ncu, 2 JSON, baselines
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>&1 | tee -a "$OUT/summary.txt"
log "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 &&
    cmake --build build -j 16 --target gpu_test_attn_cuda bench_attn_gpu >> "$OUT/build.log" 2>&1
rc=$?; log "cmake build rc=$rc"
BIN=build
if [ $rc -ne 0 ]; then
    # The GPU machine may lack the CPU-side libraries (cJSON, libpng, OpenBLAS) that CMake
    # requires: build just the attention kernel, its test and bench with gcc + nvcc.
    tail -5 "$OUT/build.log"
    BIN=build-gpu; mkdir -p $BIN
    NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90 -Isrc -Iinclude -lineinfo"
    CC_="gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Isrc -Iinclude -I/usr/local/cuda/include"
    { for f in src/attn/mask.c src/attn/cuda/*.c src/core/error.c src/core/tensor.c; do $CC_ -c $f -o $BIN/$(basename $f).o || exit 1; done
      for f in src/attn/cuda/*.cu src/core/cuda_rt.cu; do
          $NV -c $f -o $BIN/$(basename $f).o || exit 1; done
      $CC_ -c tests/gpu/test_attn_cuda.c -o $BIN/test.o &&
      $NV $BIN/*.c.o $BIN/*.cu.o $BIN/test.o -o $BIN/gpu_test_attn_cuda &&
      $NV bench/bench_attn_gpu.cu $BIN/*.c.o $BIN/*.cu.o -o $BIN/bench_attn_gpu; } >> "$OUT/build.log" 2>&1
    rc=$?; log "direct nvcc build rc=$rc"; [ $rc -eq 0 ] || { tail -40 "$OUT/build.log"; exit 1; }
fi
command -v cuobjdump > /dev/null && for k in HGMMA HMMA UTMALDG; do
    echo "SASS $k: $(cuobjdump -sass ./$BIN/bench_attn_gpu | grep -c $k)"; done | tee -a "$OUT/summary.txt"
# DFA_NO_TESTS=1: skip the full gpu_test_attn_cuda run (scripts/device-test.sh ran it in an earlier
# call); the compute-sanitizer runs of its quick list below still run
if [ "${DFA_NO_TESTS:-0}" != 1 ]; then
    log "gpu tests"
    ./$BIN/gpu_test_attn_cuda > "$OUT/test.log" 2>&1; rc=$?
    tail -5 "$OUT/test.log"; grep -E "CHECK failed|FAIL" "$OUT/test.log" | head -20; log "gpu tests rc=$rc"
fi
if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck; do
        DFA_TEST_QUICK=1 compute-sanitizer --tool $tool --error-exitcode 9 ./$BIN/gpu_test_attn_cuda \
            > "$OUT/san.tmp" 2>&1
        rc=$?; cat "$OUT/san.tmp" >> "$OUT/test.log"; tail -3 "$OUT/san.tmp"; rm -f "$OUT/san.tmp"; log "compute-sanitizer $tool rc=$rc"
    done
fi
log "timing our variants"
./$BIN/bench_attn_gpu "$OUT/attn_gpu.json" "$ITERS" 2>&1 | tee "$OUT/bench.log"
# Version 10: tail-balanced work lists vs the lists' own order, same run (~20 s; bench/RESULTS.md)
log "tail-balanced lists"
./$BIN/bench_attn_gpu --balance "$OUT/attn_gpu.json" "$ITERS" 2>&1 | tee -a "$OUT/bench.log" | tail -1 | tee -a "$OUT/summary.txt"
# head dims beyond 64/128 (D=72: DiT-XL-2, PixArt-Sigma) and the dense check against PyTorch SDPA
# (issue #4): our dense outputs (D 64, 128, 72, 24, every variant) dumped to a scratch folder and
# compared there with SDPA; D=72 dense timed next to cuDNN / FA2 at the same shapes (~30 s)
log "head dims + dense check vs PyTorch SDPA"
CHK=$(mktemp -d)
./$BIN/bench_attn_gpu --extra "$CHK" "$OUT/attn_gpu.json" "$ITERS" 2>&1 | tee -a "$OUT/bench.log"
PYTHONUNBUFFERED=1 python3 bench/attn_sdpa.py "$CHK" "$OUT/attn_gpu.json" 2>&1 | tee -a "$OUT/bench.log" | tail -14
rc=$(grep -c "SDPA checks: 0 failed" "$OUT/bench.log"); rm -rf "$CHK"
[ "$rc" = 1 ] && log "SDPA dense check ok" || log "SDPA dense check FAILED or did not run (bench.log)"
# where the time goes: Nsight Compute on single launches (dense D=128/64 at 16k, D=64 also on the
# 3-consumer variant 5; arrow w=0 at 4k on variants 2 and 5)
if command -v ncu > /dev/null && [ "${DFA_NO_NCU:-0}" != 1 ]; then
    log "ncu"
    for cfg in "128 16384 2 -1" "64 16384 2 -1" "64 16384 5 -1" "128 4096 2 0" "64 4096 5 0"; do
        echo "=== ncu D NV variant window = $cfg" >> "$OUT/ncu.log"
        timeout 60 ncu --clock-control none --kernel-name regex:attn_ --launch-skip 1 --launch-count 1 \
            --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
            --section Occupancy --section WarpStateStats --section LaunchStats \
            ./$BIN/bench_attn_gpu --one $cfg >> "$OUT/ncu.log" 2>&1
        echo "ncu rc=$?" >> "$OUT/ncu.log"
    done
    grep -E "===|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Issue Slots Busy|Executed Ipc Active|highest-utilized|ncu rc" "$OUT/ncu.log" | head -130
fi
[ "${DFA_NO_BASELINES:-0}" = 1 ] || {
log "baselines (same run)"
DFA_ATTN_JSON="$OUT/attn_gpu.json" PYTHONUNBUFFERED=1 python3 bench/attn_baselines.py 128x24 64x24 \
    > "$OUT/baselines.log" 2>&1; rc=$?
tail -30 "$OUT/baselines.log"; log "baselines rc=$rc"
}
python3 bench/attn_gpu_table.py | tee -a "$OUT/summary.txt"
if [ "${DFA_INTERLEAVE:-0}" = 1 ]; then
    log "interleaved: ours vs cuDNN / Flex alternately in one process (bench/attn_interleave.sh)"
    DFA_ATTN_JSON="$OUT/attn_gpu.json" DFA_INTERLEAVE_LOG="$OUT/bench.log" sh bench/attn_interleave.sh > /dev/null 2>&1
    rc=$?; sed -n '/^== interleaved in one process/,$p' "$OUT/bench.log" | grep -v "^INTERLEAVE_JSON" | tee -a "$OUT/summary.txt"
    [ $rc -eq 0 ] || tail -20 "$OUT/bench.log"; log "interleave rc=$rc"
fi
