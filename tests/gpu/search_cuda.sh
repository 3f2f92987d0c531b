#!/bin/sh
# Build and run tests/gpu/test_search_cuda.c (the plan searches' CUDA backend) without CMake, for
# GPU machines that lack cJSON / libpng (dfa_plan_load is stubbed: plan files are not needed).
# usage, repo root: sh tests/gpu/search_cuda.sh   (BUILD_ONLY=1: build only)
# With the full CMake build, `make test-gpu` runs the same test as gpu_test_search_cuda.
set -e
B=build-gs; mkdir -p $B
BLAS_INC=$(dirname $(find /usr/include -name cblas.h | head -1))
CUDA_INC=$(dirname $(command -v nvcc))/../include
CC_="gcc -O2 -std=c11 -fopenmp -D_POSIX_C_SOURCE=200809L -DDFA_HAVE_CUDA=1 -Isrc -Iinclude -I$BLAS_INC -I$CUDA_INC"
NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc -Iinclude -lineinfo -DDFA_HAVE_CUDA=1"
cat > $B/stub.c <<'X'
#include "plan/plan.h"
dfa_status dfa_plan_load(const char *path, dfa_plan *p, dfa_error *err) { (void)path; (void)p; return dfa_error_set(err, DFA_ERR_UNSUPPORTED, __FILE__, __LINE__, "no cJSON here"); }
X
for f in src/attn/*.c src/attn/cuda/*.c src/plan/plan.c \
         src/plan/plan_make.c src/plan/mckp.c src/plan/metrics.c src/plan/cost.c src/plan/search_common.c \
         src/plan/search_cpu.c src/plan/search_cuda_be.c src/plan/search_v1.c src/plan/search_v2.c \
         src/core/error.c src/core/tensor.c src/core/ctx.c src/core/log.c src/models/ops.c $B/stub.c \
         tests/gpu/test_search_cuda.c; do
  $CC_ -c $f -o $B/$(basename $f).o &
done
for f in src/attn/cuda/*.cu src/core/cuda_rt.cu src/plan/cuda/search_cuda.cu; do
  $NV -c $f -o $B/$(basename $f).o &
done
wait
$NV $B/*.o -o $B/gpu_test_search_cuda -lopenblas -lgomp -lcublas -lcublasLt
[ "${BUILD_ONLY:-0}" = 1 ] || ./$B/gpu_test_search_cuda
