#!/bin/sh
# Where cuDNN's attention kernel and ours differ (issue 4, dense): Nsight Compute (full set) on one
# launch of each at B=1, H=24, 16384+512 tokens, D=128 and D=64, bf16, same process state (the GPU
# warmed by the earlier launches); then the per-kernel details page and the source page (SASS with
# per-instruction executed counts and stall samples) as text. ~4 min on an H100.
# usage (repo root, GPU machine): sh bench/ncu_compare.sh      files under $OUT:
#   ncu_details.txt (both kernels, both D), sass_{ours,cudnn}_d{128,64}.csv, ncu_compare.log
#   env: DFA_NCU_DIMS="128 64"  DFA_NCU_NV=16384
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
LOG="$OUT/ncu_compare.log"
NV_=${DFA_NCU_NV:-16384}
eval "$(sh scripts/device-deps.sh env)"
{ cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j 16 --target bench_attn_gpu; } > "$OUT/build.tmp" 2>&1
rc=$?; echo "build rc=$rc" | tee -a "$LOG"; [ $rc -eq 0 ] || { tail -30 "$OUT/build.tmp"; exit 1; }
rm -f "$OUT/build.tmp"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv | tee -a "$LOG"
W=$(mktemp -d)
cat > $W/sdpa_one.py <<'PY'
import sys, torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
D, N = int(sys.argv[1]), int(sys.argv[2]) + 512
g = torch.Generator(device="cuda").manual_seed(1)
q, k, v = (torch.randn(1, 24, N, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(2):
        o = F.scaled_dot_product_attention(q, k, v)
torch.cuda.synchronize()
print("sdpa ok", o.float().abs().mean().item())
PY
for D in ${DFA_NCU_DIMS:-128 64}; do
    echo "=== D=$D ours (default variant)" | tee -a "$LOG"
    timeout 240 ncu --set full --import-source yes --clock-control none --kernel-name regex:attn_ --launch-skip 1 \
        --launch-count 1 -o $W/ours$D ./build/bench_attn_gpu --one $D $NV_ 0 -1 >> "$LOG" 2>&1
    echo "ncu rc=$?" | tee -a "$LOG"
    echo "=== D=$D cuDNN" | tee -a "$LOG"
    timeout 240 ncu --set full --clock-control none --kernel-name regex:"sdpa|fmha|flash|cudnn|fprop" --launch-skip 1 \
        --launch-count 1 -o $W/cudnn$D python3 $W/sdpa_one.py $D $NV_ >> "$LOG" 2>&1
    echo "ncu rc=$?" | tee -a "$LOG"
    for k in ours cudnn; do
        [ -f $W/$k$D.ncu-rep ] || continue
        { echo "######## $k D=$D"; ncu --import $W/$k$D.ncu-rep --page details; } >> "$OUT/ncu_details.txt" 2>&1
        ncu --import $W/$k$D.ncu-rep --page source --csv --print-source sass > "$OUT/sass_${k}_d$D.csv" 2>&1
        echo "$k D=$D sass lines: $(wc -l < "$OUT/sass_${k}_d$D.csv")" | tee -a "$LOG"
    done
done
grep -E "########|Duration|Registers Per|Block Size|Grid Size|Dynamic Shared|Compute \(SM\) Throughput|Issue Slots Busy|Executed Ipc Active|Theoretical Occ" "$OUT/ncu_details.txt" | head -80
rm -rf $W
