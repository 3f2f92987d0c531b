#!/bin/sh
# Per-item phase trace of the wgmma kernel (bench/attn_trace.py): builds the shim twice with gcc +
# nvcc directly (as bench/attn_interleave.sh does): the trace build (-DDFA_ACU_TRACE, clock64 stamps,
# src/attn/cuda/attn_trace.h) into build-trace and, unless it exists, the plain one into build-shim
# (their times side by side say how much the stamps perturb). ~1-2 min on an H100.
# usage (repo root, GPU machine): sh bench/attn_trace.sh [configs]   e.g. 128x4096:dense,128x4096:75
#   env: DFA_TRACE_VARIANT=V  the plans' variant (default 0)
#   writes $OUT/attn_trace.json and $OUT/attn_trace.log
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
CC_="gcc -O2 -std=c11 -fPIC -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wno-unused-parameter -Isrc -Iinclude -I/usr/local/cuda/include"
NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc -Iinclude -lineinfo -Xcompiler -fPIC"
build() { # dir, extra flags
    (
        set -e
        mkdir -p "$1"
        rm -f "$1"/*.o "$1/libdfa_attn_shim.so"
        for f in bench/attn_shim.c src/attn/mask.c src/attn/cuda/*.c src/core/error.c src/core/tensor.c; do
            $CC_ $2 -c "$f" -o "$1/$(basename "$f").o"
        done
        pids=""
        for f in src/attn/cuda/*.cu src/core/cuda_rt.cu; do
            $NV $2 -c "$f" -o "$1/$(basename "$f").o" & pids="$pids $!"
        done
        for p in $pids; do wait "$p"; done
        nvcc -shared -o "$1/libdfa_attn_shim.so" "$1"/*.c.o "$1"/*.cu.o
    ) > "$1.log" 2>&1
    rc=$?; echo "== attn_trace: build $1 rc=$rc"
    [ $rc -eq 0 ] || { tail -30 "$1.log"; exit 1; }
}
build build-trace -DDFA_ACU_TRACE
[ -s build-shim/libdfa_attn_shim.so ] || build build-shim ""
PYTHONUNBUFFERED=1 python3 bench/attn_trace.py --shim build-trace/libdfa_attn_shim.so \
    --plain build-shim/libdfa_attn_shim.so --out "$OUT/attn_trace${DFA_TRACE_VARIANT:+-v$DFA_TRACE_VARIANT}.json" \
    --variant "${DFA_TRACE_VARIANT:-0}" ${1:+--configs "$1"} 2>&1 |
    tee "$OUT/attn_trace${DFA_TRACE_VARIANT:+-v$DFA_TRACE_VARIANT}.log"
