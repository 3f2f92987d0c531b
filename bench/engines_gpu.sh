#!/bin/bash
# bench/engines_gpu.sh - the device benchmarks of issues 5 and 8 in one unattended call:
#   build (Release, CUDA: bench_mmdit, bench_calibrate) once;
#   #5 FLUX-dev real size at 1024^2 and 2048^2, SD3-medium dims at 1024^2: random bf16 weights made
#      and saved by bench_mmdit_diffusers.py (diffusers, SDPA), loaded by bench_mmdit (dfa dense):
#      forward ms, N-step loop ms/step, ratio dfa/diffusers, attention share, rel L2 of the forwards,
#      loop - forward ms/step on both sides, dfa's forward with the text held, SD3's loop again with
#      a CUDA Graph forward (bit-equality to the eager loop printed);
#   #8 bench_calibrate on the FLUX-dev weights: V2 search time vs the floor at 1024^2 and 2048^2
#      (reduced prompts x steps, extrapolated to 8 x 50; V2 with the ring pass, then again without
#      it as "v2-plain"), then V1 at 1024^2 over fewer steps;
#   plan (issues 4/5, only with PHASES containing "plan"): bench_mmdit --plan-mix on the FLUX-dev
#      weights at PLAN_RES (1024,2048) with PLAN_STEPS (50,20): the dense loop and the same loop under
#      a synthetic V2-like plan (prepared before the loop), end-to-end speedup and attention shares;
#      ~2.5 min on an H100 with the weights already written (estimate, never run), ~4 min alone;
#   results.md (one table per issue, GPU name, per-phase wall times) under $OUT, printed at the end.
# Every phase has a timeout, and all end before DEADLINE seconds (default 560) after the start:
# a phase that would start with too little time left is skipped and marked so; a phase killed at
# its timeout keeps the RESULT lines it printed. Expected on an H100 (estimate, never run):
# build ~1 min, FLUX diffusers ~1.3 min (incl. writing 24 GB of weights), FLUX dfa ~1 min, SD3
# ~0.7 min, calibration ~1.8 min (V1 ~45 s of it): ~5.5-6 min; the call should use timeout_s 600.
#
# usage (repo root):
#   OUT=$OUT bash bench/engines_gpu.sh      device: carry .devdeps and .whl (diffusers 0.42.1 wheel)
#   SMOKE=1 bash bench/engines_gpu.sh       here: tiny presets on the CPU (build-cpu), same flow
#   DRY=1 bash bench/engines_gpu.sh         print the phases and commands, run nothing
# knobs: FLUX_RES (1024,2048) FLUX_STEPS (50,10) SD3_STEPS (50) CAL_RES (1024,2048) CAL_PROMPTS (2)
#        CAL_STEPS (4) V1_STEPS (2; 0: no V1) DEADLINE (560) DFA_BENCH_DIR (/tmp/dfa_engines, emptied
#        first unless KEEP_WEIGHTS=1) PHASES ("flux sd3 cal": which parts run after the build; cal
#        needs the flux weights, so alone it needs KEEP_WEIGHTS=1 on a warm machine or runs flux first;
#        "plan" likewise, e.g. PHASES=plan writes the weights itself) PLAN_RES PLAN_STEPS
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
SMOKE=${SMOKE:-0}
DRY=${DRY:-0}
DEADLINE=${DEADLINE:-560}
PHASES=" ${PHASES:-flux sd3 cal} "
want() { case "$PHASES" in *" $1 "*) return 0 ;; esac; return 1; }
W=${DFA_BENCH_DIR:-/tmp/dfa_engines}
LOG=$OUT/log.txt
J=$OUT/results.jsonl
PH=$OUT/.phases
TMP=$(mktemp /tmp/engines_phase.XXXXXX)
: > "$LOG"; : > "$J"; : > "$PH"
START=$SECONDS
export PYTHONUNBUFFERED=1
if [ "$SMOKE" = 1 ]; then
    BUILD=build-cpu; CMAKE_EXTRA="-DDFA_CUDA=OFF"; CUDA=""; PYDEV="--device cpu --dtype bfloat16"
    FLUX=flux-small; SD3=sd3-small; FLUX_RES=${FLUX_RES:-128,256}; FLUX_STEPS=${FLUX_STEPS:-3,2}
    SD3_RES=128; SD3_STEPS=${SD3_STEPS:-2}; CAL_RES=${CAL_RES:-128,256}; CAL_PROMPTS=${CAL_PROMPTS:-2}
    CAL_STEPS=${CAL_STEPS:-2}; V1_STEPS=${V1_STEPS:-2}; REPS=1; JOBS=2; THREADS="--threads 2"
    PLAN_RES=${PLAN_RES:-256}; PLAN_STEPS=${PLAN_STEPS:-4}
    W=${DFA_BENCH_DIR:-/tmp/dfa_engines_smoke}
else
    BUILD=build; CMAKE_EXTRA=""; CUDA="--cuda"; PYDEV="--device cuda --dtype bfloat16"
    FLUX=flux-dev; SD3=sd3-medium; FLUX_RES=${FLUX_RES:-1024,2048}; FLUX_STEPS=${FLUX_STEPS:-50,10}
    # one step count per resolution: a single FLUX_RES without FLUX_STEPS gets the first default
    case "$FLUX_RES" in *,*) ;; *) case "$FLUX_STEPS" in *,*) FLUX_STEPS=${FLUX_STEPS%%,*} ;; esac ;; esac
    SD3_RES=1024; SD3_STEPS=${SD3_STEPS:-50}; CAL_RES=${CAL_RES:-1024,2048}; CAL_PROMPTS=${CAL_PROMPTS:-2}
    CAL_STEPS=${CAL_STEPS:-4}; V1_STEPS=${V1_STEPS:-2}; REPS=3; JOBS=16; THREADS=""
    PLAN_RES=${PLAN_RES:-1024,2048}; PLAN_STEPS=${PLAN_STEPS:-50,20}
    case "$PLAN_RES" in *,*) ;; *) case "$PLAN_STEPS" in *,*) PLAN_STEPS=${PLAN_STEPS%%,*} ;; esac ;; esac
fi

say() { echo "[$((SECONDS - START)) s] $*" | tee -a "$LOG"; }

# phase NAME CAP CMD...: runs CMD under timeout min(CAP, time left before DEADLINE - 10 s), its
# output live on stdout and into log.txt, its RESULT lines into results.jsonl; records rc and time.
phase() {
    local name=$1 cap=$2
    shift 2
    local left=$((DEADLINE - (SECONDS - START) - 10)) t=$cap
    [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -lt 15 ]; then
        say "SKIP $name: only ${left} s left before the deadline"
        echo "| $name | skipped: no time left | - | - |" >> "$PH"
        return 99
    fi
    say "START $name (timeout ${t} s): $*"
    if [ "$DRY" = 1 ]; then
        echo "| $name | dry run | - | $t |" >> "$PH"
        return 0
    fi
    local t0=$SECONDS
    timeout -k 10 "$t" "$@" > "$TMP" 2>&1 &
    local pid=$!
    tail -n +1 -f --pid=$pid "$TMP" 2>/dev/null
    wait $pid
    local rc=$?
    cat "$TMP" >> "$LOG"
    grep '^RESULT ' "$TMP" | cut -c8- >> "$J"
    local what=ok
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && what="TIMED OUT (results printed before the kill are kept)"
    [ $rc -ne 0 ] && [ "$what" = ok ] && what="FAILED"
    say "END $name: rc $rc ($what) in $((SECONDS - t0)) s"
    echo "| $name | $what (rc $rc) | $((SECONDS - t0)) | $t |" >> "$PH"
    return $rc
}

say "engines_gpu.sh: SMOKE=$SMOKE DRY=$DRY deadline ${DEADLINE} s, weights in $W"
GPU="(no GPU: CPU smoke run)"
PY_LD=${LD_LIBRARY_PATH:-}
if [ "$SMOKE" != 1 ] && [ "$DRY" != 1 ]; then
    GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { say "diffusers wheel missing: carry .whl"; exit 2; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    PY_LD=${LD_LIBRARY_PATH:-} # python keeps the machine's libraries; the deps are for dfa's binaries
    eval "$(sh scripts/device-deps.sh env)"
fi
say "GPU: $GPU"
[ "${KEEP_WEIGHTS:-0}" = 1 ] || [ "$DRY" = 1 ] || rm -rf "$W" # fresh weights and io files each run
mkdir -p "$W"

# ---- build ----
build() {
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release $CMAKE_EXTRA > "$OUT/build.log" 2>&1 || return 1
    if [ "$SMOKE" != 1 ] && ! grep -q "dfa: CUDA ON" "$OUT/build.log"; then
        echo "CUDA is OFF in this build (no nvcc?)"; return 1
    fi
    cmake --build "$BUILD" -j "$JOBS" --target bench_mmdit bench_calibrate >> "$OUT/build.log" 2>&1
    local rc=$?
    grep -E "warning|error" "$OUT/build.log" | head -20
    return $rc
}
export -f build
export BUILD CMAKE_EXTRA SMOKE OUT JOBS
phase build 300 bash -c build || { [ "$DRY" = 1 ] || { tail -30 "$OUT/build.log"; say "build failed: stop"; exit 1; }; }

# ---- issue 5: dfa dense vs diffusers, same weights and inputs ----
PY="env LD_LIBRARY_PATH=$PY_LD python3 bench/bench_mmdit_diffusers.py $PYDEV --reps $REPS --save-io"
if want flux; then
    phase "5: $FLUX diffusers" 200 $PY --preset $FLUX --dir "$W/flux" --res "$FLUX_RES" --steps "$FLUX_STEPS" \
        --f32-ref "${FLUX_RES%%,*}"
    CHK=""; [ -f "$W/flux/io_${FLUX_RES%%,*}.safetensors" ] || [ "$DRY" = 1 ] && CHK="--check"
    phase "5: $FLUX dfa" 200 ./$BUILD/bench_mmdit --preset $FLUX --dir "$W/flux" --res "$FLUX_RES" --steps "$FLUX_STEPS" \
        --reps $REPS $CUDA $CHK $THREADS
fi
if want sd3; then
    phase "5: $SD3 diffusers" 90 $PY --preset $SD3 --dir "$W/sd3" --res $SD3_RES --steps "$SD3_STEPS" --f32-ref $SD3_RES
    CHK=""; [ -f "$W/sd3/io_${SD3_RES}.safetensors" ] || [ "$DRY" = 1 ] && CHK="--check"
    GRAPH=""; [ -n "$CUDA" ] && GRAPH="--graph" # + the loop with a CUDA Graph forward (SD3 only)
    phase "5: $SD3 dfa" 120 ./$BUILD/bench_mmdit --preset $SD3 --dir "$W/sd3" --res $SD3_RES --steps "$SD3_STEPS" \
        --reps $REPS $CUDA $CHK $GRAPH $THREADS
fi

# ---- issue 8: calibration search time vs the floor (V2 at every CAL_RES, then V1 at the first) ----
if want cal; then
    [ -f "$W/flux/transformer/diffusion_pytorch_model.safetensors" ] || [ "$DRY" = 1 ] ||
        phase "8: $FLUX weights (no flux phase ran)" 150 $PY --preset $FLUX --dir "$W/flux" --res "${CAL_RES%%,*}" --reps 1
    V1=""; [ "$V1_STEPS" -gt 0 ] && V1="--v1 --v1-res ${CAL_RES%%,*} --v1-steps $V1_STEPS"
    phase "8: calibrate V2 (+V1)" 300 ./$BUILD/bench_calibrate --dir "$W/flux" --res "$CAL_RES" --prompts "$CAL_PROMPTS" \
        --steps "$CAL_STEPS" --target-prompts 8 --target-steps 50 $CUDA $V1 $THREADS
fi

# ---- issues 4/5: planned vs dense loop end to end (CUDA only: --plan-mix needs the device) ----
if want plan; then
    [ -f "$W/flux/transformer/diffusion_pytorch_model.safetensors" ] || [ "$DRY" = 1 ] ||
        phase "plan: $FLUX weights (no flux phase ran)" 150 $PY --preset $FLUX --dir "$W/flux" --res "${PLAN_RES%%,*}" \
            --reps 1
    phase "plan: $FLUX dense vs planned loop" 240 ./$BUILD/bench_mmdit --preset $FLUX --dir "$W/flux" --res "$PLAN_RES" \
        --steps "$PLAN_STEPS" --reps 1 $CUDA --plan-mix $THREADS
fi

# ---- tables ----
{
    echo "# engines_gpu.sh results ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "GPU: $GPU. Mode: $([ "$SMOKE" = 1 ] && echo 'CPU smoke (tiny presets)' || echo 'device'). Total wall $((SECONDS - START)) s."
    echo
    echo "| phase | outcome | wall s | timeout s |"
    echo "|---|---|---|---|"
    cat "$PH"
} > "$OUT/header.md"
if [ "$DRY" = 1 ]; then
    cat "$OUT/header.md"
else
    python3 bench/engines_table.py "$J" "$OUT/header.md" > "$OUT/results.md" 2>&1
    echo; cat "$OUT/results.md"
fi
rm -f "$TMP" "$PH" "$OUT/header.md"
say "done"
