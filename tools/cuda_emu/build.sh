#!/bin/bash
# Host emulation of the CUDA side for machines without a GPU (a development aid, not a test of the
# .cu kernels): device memory is host memory, every dfa_cuops_* op follows its kernel's semantics
# with bf16 storage (tools/cuda_emu/emu.c), attention on "CUDA" tensors runs the CPU reference on
# f32 copies. Links the library's C sources (CPU build, minus the CUDA runtime / ops stubs and
# attn_gpu.c) with emu.c into one test or program, so the C engines built on ops_cuda.h (DiT, PixArt,
# SD3, FLUX) run end to end. emu.c must follow ops_cuda.h: a new op needs an emulation there.
# Also builds bench/bench_mmdit.c: `--cuda --check` then runs the CUDA engine's host logic against
# diffusers' io file (issue 5 was found that way: a device buffer overrun, not a kernel).
# Work lists are emulated as records of what they were built for: a launch handed a prepared list
# of other methods / windows / layout fails (a wrong dfa_attn_prepare index shows there), and an
# empty slot is "built" at launch as attn_gpu.c does, so dfa_attn_get_prep_stats counts as on a GPU.
# usage (repo root, bash: `jobs -r`): bash tools/cuda_emu/build.sh tests/gpu/test_dit_cuda.c /tmp/test_emu && /tmp/test_emu
# Objects go to build-emu/ of this checkout (DFA_EMU_OBJ overrides): a folder shared by several
# worktrees would link another tree's objects wherever they are newer than this tree's sources.
set -e
SRC=${1:?test or program .c}
BIN=${2:-/tmp/dfa_emu}
O=${DFA_EMU_OBJ:-$PWD/build-emu}; mkdir -p "$O"
CF="-O2 -g -std=c11 -fopenmp -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -I/usr/include/openblas -I/usr/include/cjson -DDFA_SOURCE_DIR=\"$PWD\""
for f in $(find src -name '*.c' | grep -v '/cli/' | grep -v 'core/cuda_stub.c' | grep -v 'ops_cuda_stub.c' | grep -v 'attn/attn_gpu.c'); do
    o=$O/$(echo "$f" | tr / _).o
    if [ ! -f "$o" ] || [ "$f" -nt "$o" ]; then gcc $CF -c "$f" -o "$o" & fi
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 0.2; done
done
wait
gcc $CF -c tools/cuda_emu/emu.c -o "$O/emu.o.x"
gcc $CF "$SRC" "$O/emu.o.x" "$O"/*.o -o "$BIN" -lcjson -lpng -lopenblas -lm
echo "built $BIN"
