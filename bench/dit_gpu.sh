#!/bin/sh
# Issue #7 on one GPU machine: DiT-XL-2 (512^2) and PixArt-Sigma-XL (1024^2, 2048^2), dense, dfa's
# CUDA engines vs diffusers (bf16, SDPA) on the same random weights: one transformer forward of the
# CFG batch 2 and a 50-step DPM-Solver++ loop each, dfa's attention share, and how far dfa's
# outputs are from diffusers'. About 2 minutes on an H100 (model init + save ~15 s, diffusers ~45 s,
# dfa load + runs ~45 s). Table: $OUT/dit_gpu.md; logs: $OUT/dit_gpu.log.
# usage (repo root, on the device; .devdeps and .whl carried): OUT=$OUT sh bench/dit_gpu.sh [steps]
# (The scripts' plumbing can be smoke-tested on a CPU machine without the GPU engines:
#  DFA_BENCH_DEVICE=cpu DFA_BENCH_TINY=1 python3 bench/dit_gpu.py /tmp/x 3 writes tiny cases.)
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
STEPS=${1:-50}
DIR=${DFA_DIT_DIR:-/tmp/dfa_dit_gpu}
LOG="$OUT/dit_gpu.log"
[ -f scripts/device-deps.sh ] && eval "$(sh scripts/device-deps.sh env)"
if ! python3 -c "import diffusers" 2> /dev/null && ls .whl/diffusers-*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>&1 | tee "$LOG"
t0=$(date +%s)
{ cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j 16 --target bench_dit_gpu; } \
    > "$OUT/dit_gpu_build.log" 2>&1
rc=$?; echo "== build rc=$rc ($(($(date +%s) - t0)) s)" | tee -a "$LOG"
[ $rc -eq 0 ] || { tail -30 "$OUT/dit_gpu_build.log"; exit 1; }
t0=$(date +%s)
PYTHONUNBUFFERED=1 python3 bench/dit_gpu.py "$DIR" "$STEPS" 2>&1 | tee -a "$LOG"
echo "== diffusers side done ($(($(date +%s) - t0)) s)" | tee -a "$LOG"
t0=$(date +%s)
./build/bench_dit_gpu "$DIR" "$OUT/dit_gpu.md" 2>&1 | tee -a "$LOG"
echo "== dfa side done ($(($(date +%s) - t0)) s)" | tee -a "$LOG"
rm -rf "$DIR"
