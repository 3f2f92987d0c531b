#!/bin/sh
# Interleaved benchmark (issue 4's bars side by side in ONE process): builds bench/attn_shim.c and
# the attention kernel sources into a shared library with gcc + nvcc directly (no CMake, no cJSON /
# libpng / OpenBLAS: works on the lent GPU machines), then runs bench/attn_interleave.py, which
# times our kernel and cuDNN SDPA / FlexAttention alternately on the same tensors (~2 min on an H100,
# most of it the shim build and FlexAttention's compiles). Table printed last.
# usage (repo root, GPU machine): sh bench/attn_interleave.sh [budget_s_per_pair]
#   (dense, arrow at 25/50/75 %, and the mixed V2-like plan of bench_attn_gpu against its own dense + copy)
#   writes $OUT/attn_interleave.json and $OUT/interleave.log (2 files; the build log stays in the
#   build directory, its tail printed on failure)
#   env: DFA_ATTN_JSON=path    take the arrow windows from bench_attn_gpu's JSON (else the same rule)
#        DFA_INTERLEAVE_LOG=f  append the run's output to f instead of $OUT/interleave.log
#        DFA_SHIM_DIR=dir      build directory (default build-shim)
#        DFA_SHIM_JOBS=1       compile the .cu files one after the other (2-core machines)
#        DFA_SHIM_CPU=1        build only the mask part (no CUDA) and run the CPU self-test
#        DFA_INTERLEAVE_VARIANT=V  our variant (default 0: the default variant)
#        DFA_INTERLEAVE_ALT=V2     also time variant V2 of ours in every dense and arrow pair's rounds (A/B in one process)
#        DFA_INTERLEAVE_SHAPES=128x4096,128x16384   only these (D x visual tokens) shapes
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
BUDGET=${1:-5}
BIN=${DFA_SHIM_DIR:-build-shim}
mkdir -p "$BIN"
BLOG="$BIN/build.log"
CC_="gcc -O2 -std=c11 -fPIC -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wno-unused-parameter -Isrc -Iinclude"
if [ "${DFA_SHIM_CPU:-0}" = 1 ]; then
    $CC_ -DSHIM_MASK_ONLY -shared bench/attn_shim.c src/attn/mask.c src/core/error.c \
        -o "$BIN/libdfa_attn_shim_cpu.so" > "$BLOG" 2>&1
    rc=$?; echo "== shim (mask only) build rc=$rc"; [ $rc -eq 0 ] || { cat "$BLOG"; exit 1; }
    PYTHONUNBUFFERED=1 python3 bench/attn_interleave.py --selftest --shim "$BIN/libdfa_attn_shim_cpu.so"
    exit $?
fi
LOGF=${DFA_INTERLEAVE_LOG:-$OUT/interleave.log}
NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90 -Isrc -Iinclude -lineinfo -Xcompiler -fPIC"
t0=$(date +%s)
(
    set -e
    rm -f "$BIN"/*.o "$BIN/libdfa_attn_shim.so"
    for f in bench/attn_shim.c src/attn/mask.c src/attn/cuda/*.c src/core/error.c src/core/tensor.c; do
        $CC_ -I/usr/local/cuda/include -c "$f" -o "$BIN/$(basename "$f").o"
    done
    # the .cu objects: in parallel (DFA_SHIM_JOBS=1: one after the other)
    pids=""
    for f in src/attn/cuda/*.cu src/core/cuda_rt.cu; do
        if [ "${DFA_SHIM_JOBS:-0}" = 1 ]; then $NV -c "$f" -o "$BIN/$(basename "$f").o"
        else $NV -c "$f" -o "$BIN/$(basename "$f").o" & pids="$pids $!"; fi
    done
    for p in $pids; do wait "$p"; done
    nvcc -shared -o "$BIN/libdfa_attn_shim.so" "$BIN"/*.c.o "$BIN"/*.cu.o
) > "$BLOG" 2>&1
rc=$?; echo "== interleave: shim build rc=$rc ($(( $(date +%s) - t0 )) s)" | tee -a "$LOGF"
[ $rc -eq 0 ] && [ -s "$BIN/libdfa_attn_shim.so" ] || { tail -40 "$BLOG" | tee -a "$LOGF"; exit 1; }
# the host-side self-test first (mask_mod vs dfa_mask_keep, flex block masks, windows; ~2 s), log only:
# the arrow pairs check the same things on the GPU before they are timed
python3 bench/attn_interleave.py --selftest --no-flex --shim "$BIN/libdfa_attn_shim.so" 2>&1 |
    grep -E "^selftest" | tee -a "$LOGF"
{ PYTHONUNBUFFERED=1 python3 bench/attn_interleave.py --shim "$BIN/libdfa_attn_shim.so" --budget "$BUDGET" \
    --out "$OUT/attn_interleave.json" ${DFA_ATTN_JSON:+--windows "$DFA_ATTN_JSON"} 2>&1; echo $? > "$BIN/py.rc"; } |
    tee -a "$LOGF"
rc=$(cat "$BIN/py.rc"); echo "== interleave rc=$rc ($(( $(date +%s) - t0 )) s in all)" | tee -a "$LOGF"
exit "$rc"
