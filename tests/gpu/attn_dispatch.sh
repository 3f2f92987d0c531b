#!/bin/sh
# Build and run tests/gpu/test_attn_dispatch.c (the CUDA dispatch of dfa_attn_run_heads and
# dfa_attn_layer against the CPU reference) without CMake, for GPU machines that lack cJSON /
# libpng (plan files are not needed: dfa_plan_load is stubbed). usage, repo root: sh tests/gpu/attn_dispatch.sh
# With the full CMake build, `make test-gpu` runs the same test as gpu_test_attn_dispatch.
set -e
B=build-gd; mkdir -p $B
BLAS_INC=$(dirname $(find /usr/include -name cblas.h | head -1))
CC_="gcc -O2 -std=c11 -fopenmp -D_POSIX_C_SOURCE=200809L -DDFA_HAVE_CUDA=1 -Isrc -Iinclude -I$BLAS_INC -I/usr/local/cuda/include"
NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc -Iinclude -lineinfo -DDFA_HAVE_CUDA=1"
cat > $B/stub.c <<'X'
#include "plan/plan.h"
dfa_status dfa_plan_load(const char *path, dfa_plan *p, dfa_error *err) { (void)path; (void)p; return dfa_error_set(err, DFA_ERR_UNSUPPORTED, __FILE__, __LINE__, "no cJSON here"); }
X
for f in src/attn/*.c src/plan/plan.c src/plan/plan_make.c src/core/error.c src/core/tensor.c src/core/ctx.c src/core/log.c $B/stub.c tests/gpu/test_attn_dispatch.c; do
  $CC_ -c $f -o $B/$(basename $f).o &
done
for f in src/attn/cuda/attn_cuda.cu src/attn/cuda/attn_cuda_mma.cu src/attn/cuda/attn_cuda_wgmma.cu src/core/cuda_rt.cu; do
  $NV -c $f -o $B/$(basename $f).o &
done
wait
$NV $B/*.o -o $B/gpu_test_attn_dispatch -lopenblas -lgomp -lcublas -lcublasLt
[ "${BUILD_ONLY:-0}" = 1 ] || ./$B/gpu_test_attn_dispatch
