#!/usr/bin/env bash
# bench/fidelity.sh - issue 9's figures on dfa's own model (models/dfa-shapes): the V2 paper's
# Table 2 (attention compression methods compared near equal sparsity) and Table 5 (V2's head
# constraint coefficient c), measured by the fidelity harness `dfa eval` on held-out prompts.
#
#   sh bench/fidelity.sh [--cuda] [--size smoke|cpu|full] [-o OUTDIR] [--dfa BIN] [--model DIR]
#                        [--threads T] [--fresh]
#
# Makes every plan, then evaluates them all in one `dfa eval` run against the uncompressed model:
#   cache_n2          attention caching every 2 steps (dfa plan make --pattern cache --every 2):
#                     the V2 paper's "Attention Caching (N=2)" baseline
#   v1_d<D>           dfa calibrate --method v1 (DiTFastAttn: greedy per layer over AST, WA-RS,
#                     ASC, WA-RS+ASC). dfa's window attention is the arrow mask by default (text
#                     rows and columns always kept, src/attn/mask.h), so this is the paper's
#                     "DiTFastAttn with Arrow Attention"
#   v1plain_d<D>      the same with --band plain: V1's plain 1-D window over the whole
#                     [text, image] sequence (the paper's first row, "DiTFastAttn")
#   v2_d<D>_c1.5      dfa calibrate --method v2 --delta D (default methods arrow,cache; c 1.5):
#                     Table 2's V2 rows (0.2, 0.4, 0.6, 1.0) plus smaller deltas that land near
#                     the baselines' attention fractions (this model compresses far more per
#                     delta than SD3 does; "equal sparsity" needs them)
#   v2_d0.4_c<C>      Table 5: c none (--c 0), 1, 1.5 (the row above), 2 at delta 0.4
# Calibration prompts: bench/fidelity/calib.txt (train split); evaluation prompts:
# bench/fidelity/heldout.txt (held-out (colour, shape) pairs and val captions). Neither overlaps.
#
# Sizes (environment variables override each number):
#   smoke  plumbing check only: STEPS=4, 1 calibration prompt, 1 eval image
#   cpu    the model's 20 steps; N_CAL=1 (V2), N_CAL_V1=1 (V1's greedy search runs up to 4 trial
#          passes per layer and step: ~20-40x a generation), N_EVAL=2 prompts x SEEDS="0",
#          V1_DELTAS="0.1"
#   full   (GPU) N_CAL=8, N_CAL_V1=8, N_EVAL=16 prompts x SEEDS="0", V1_DELTAS="0.1 0.2 0.4"
#          (the contact sheet holds every image; a sheet over SHEET_MAX_MB=24 is moved out of
#          OUTDIR and eval_sheet/ gets one of the first 2 prompts by a second, small eval)
# Also: V2_DELTAS, V2_MATCH_DELTAS, V1_DELTAS, V1_PLAIN_DELTAS (default V1_DELTAS), T5_DELTA
# (Table 5's delta), T5_CS.
#
# --cuda: calibrate and eval on the GPU. A V2 calibration or the eval that fails with --cuda is
# retried on the CPU (V2 calibration with at most 2 prompts, eval with 2 prompts x 1 seed; a V1
# search is too slow for that and is left out) and the fallback is written in OUTDIR/tables.md,
# so one device call returns numbers even if a GPU path breaks.
# A plan whose recorded command (plans/NAME.cmd) is unchanged is reused unless --fresh.
#
# Outputs in OUTDIR (default out/fidelity): plans/*.json (+ .cmd, .log), eval/report.md,
# eval/ssim_vs_attn.png, eval/contact_sheet.png, eval.log, tables.md (Table 2 / Table 5 layout,
# with calibration times), timings.txt.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DFA=$ROOT/build/dfa
MODEL=$ROOT/models/dfa-shapes
OUTDIR=out/fidelity
SIZE=cpu
CUDA=0
THREADS=0
FRESH=0
while [ $# -gt 0 ]; do
    case "$1" in
    --cuda) CUDA=1 ;;
    --size) SIZE=$2; shift ;;
    -o|--out) OUTDIR=$2; shift ;;
    --dfa) DFA=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --fresh) FRESH=1 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fidelity.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$SIZE" in
smoke) d_steps=4 d_cal=1 d_cal1=1 d_eval=1 d_seeds="0" d_v1="0.1" ;;
cpu) d_steps=0 d_cal=1 d_cal1=1 d_eval=2 d_seeds="0" d_v1="0.1" ;;
full) d_steps=0 d_cal=8 d_cal1=8 d_eval=16 d_seeds="0" d_v1="0.1 0.2 0.4" ;;
*) echo "fidelity.sh: --size smoke|cpu|full (got '$SIZE')" >&2; exit 2 ;;
esac
STEPS=${STEPS:-$d_steps}
N_CAL=${N_CAL:-$d_cal}
N_CAL_V1=${N_CAL_V1:-$d_cal1}
N_EVAL=${N_EVAL:-$d_eval}
SEEDS=${SEEDS:-$d_seeds}
V2_DELTAS=${V2_DELTAS:-"0.2 0.4 0.6 1.0"}
V2_MATCH_DELTAS=${V2_MATCH_DELTAS-"0.01 0.05"}
V1_DELTAS=${V1_DELTAS-$d_v1}
V1_PLAIN_DELTAS=${V1_PLAIN_DELTAS-$V1_DELTAS}
T5_DELTA=${T5_DELTA:-0.4}
T5_CS=${T5_CS:-"0 1 2"}

DFA=$(cd "$(dirname "$DFA")" && pwd)/$(basename "$DFA")
MODEL=$(cd "$MODEL" && pwd)
[ -x "$DFA" ] || { echo "fidelity.sh: no dfa binary at $DFA (build it: make, or --dfa BIN)" >&2; exit 1; }
mkdir -p "$OUTDIR/plans" "$OUTDIR/eval"
OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$OUTDIR"
grep -v '^[[:space:]]*#' "$ROOT/bench/fidelity/heldout.txt" | grep . | head -n "$N_EVAL" > heldout.txt
cp "$ROOT/bench/fidelity/calib.txt" calib.txt
: > timings.txt
: > fallbacks.txt
common=(-m "$MODEL")
[ "$STEPS" -gt 0 ] && common+=(--steps "$STEPS")
[ "$THREADS" -gt 0 ] && common+=(-t "$THREADS")
cuda_flag=()
[ "$CUDA" = 1 ] && cuda_flag=(--cuda)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
echo "fidelity.sh: size $SIZE, steps ${STEPS/#0/model default}, V2 calibration prompts $N_CAL, V1 $N_CAL_V1," \
     "eval $N_EVAL prompts x seeds [$SEEDS], cuda $CUDA; $OUTDIR"
T0=$(now)

# calibrate NAME NPROMPTS ARGS...: plans/NAME.json, reused when plans/NAME.cmd matches
calibrate() {
    local name=$1 n=$2; shift 2
    local args=(calibrate -q "${common[@]}" --prompts calib.txt --n-prompts "$n" "$@" -o "plans/$name.json")
    local cmd="${args[*]} ${cuda_flag[*]}"
    if [ "$FRESH" = 0 ] && [ -f "plans/$name.json" ] && [ "$(cat "plans/$name.cmd" 2>/dev/null)" = "$cmd" ]; then
        echo "  $name: reused ($(grep -o 'search [0-9.]* s' "plans/$name.log" | tail -1))"
        [ -f "plans/$name.time" ] && echo "calibrate $name $(cat "plans/$name.time")" >> timings.txt
        return 0
    fi
    rm -f "plans/$name.json" "plans/$name.cmd"
    local t=$(now)
    if nice "$DFA" "${args[@]}" "${cuda_flag[@]}" > "plans/$name.log" 2>&1; then
        :
    elif [ "$CUDA" = 1 ] && [ "${name#v2_}" != "$name" ]; then
        local nc=$(( n < 2 ? n : 2 ))
        echo "  $name: calibrate --cuda failed ($(tail -1 "plans/$name.log")); CPU with $nc prompt(s)" | tee -a fallbacks.txt
        mv "plans/$name.log" "plans/$name.cuda.log"
        args=(calibrate -q "${common[@]}" --prompts calib.txt --n-prompts "$nc" "$@" -o "plans/$name.json")
        cmd="${args[*]}"
        if ! nice "$DFA" "${args[@]}" > "plans/$name.log" 2>&1; then
            echo "  $name: calibrate failed on the CPU too ($(tail -1 "plans/$name.log")); left out" | tee -a fallbacks.txt
            return 0
        fi
    else
        echo "  $name: calibrate failed ($(tail -1 "plans/$name.log")); left out" | tee -a fallbacks.txt
        return 0
    fi
    echo "$cmd" > "plans/$name.cmd"
    elapsed "$t" > "plans/$name.time"
    echo "calibrate $name $(cat "plans/$name.time") s" >> timings.txt
    echo "  $name: $(grep -o 'attention FLOPs [0-9.]*%' "plans/$name.log"); $(grep -o 'search [0-9.]* s' "plans/$name.log"); wall $(elapsed "$t") s"
}

echo "calibrating (prompts: calib.txt, train split)"
plans=()
for d in $V2_DELTAS; do calibrate "v2_d${d}_c1.5" "$N_CAL" --method v2 --delta "$d" --c 1.5; done
for d in $V2_MATCH_DELTAS; do calibrate "v2_d${d}_c1.5" "$N_CAL" --method v2 --delta "$d" --c 1.5; done
for c in $T5_CS; do
    [ "$c" = 0 ] && cn=none || cn=$c
    calibrate "v2_d${T5_DELTA}_c$cn" "$N_CAL" --method v2 --delta "$T5_DELTA" --c "$c"
done
for d in $V1_DELTAS; do calibrate "v1_d$d" "$N_CAL_V1" --method v1 --delta "$d"; done
for d in $V1_PLAIN_DELTAS; do calibrate "v1plain_d$d" "$N_CAL_V1" --method v1 --band plain --delta "$d"; done

# attention caching every 2 steps, for exactly the run the calibrated plans target (model id,
# grid, text tokens, steps, layers, heads, CFG read back from one of them)
ref=plans/v2_d${T5_DELTA}_c1.5.json
[ -f "$ref" ] || ref=$(ls plans/v2_*.json | head -1)
show=$("$DFA" plan show "$ref")
cfgid=$(echo "$show" | sed -n 's|^  model *flux / \([^;]*\);.*|\1|p')
grid=$(echo "$show" | sed -n 's|^  layout *[0-9]* visual tokens (\([0-9]*\) x \([0-9]*\)).*|\1x\2|p')
ntext=$(echo "$show" | sed -n 's|^  layout.* + \([0-9]*\) text tokens.*|\1|p')
read -r psteps players pheads <<< "$(echo "$show" | sed -n 's|^  size *\([0-9]*\) steps x \([0-9]*\) layers x \([0-9]*\) heads.*|\1 \2 \3|p')"
cfg_make=()
echo "$show" | grep -q 'CFG yes' && cfg_make=(--cfg)
[ -n "$cfgid" ] && [ -n "$grid" ] && [ -n "$ntext" ] && [ -n "$pheads" ] ||
    { echo "fidelity.sh: cannot read the run's shape from '$DFA plan show $ref'" >&2; exit 1; }
"$DFA" plan make -o plans/cache_n2.json --pattern cache --every 2 --steps "$psteps" --layers "$players" \
    --heads "$pheads" --grid "$grid" --text "$ntext" "${cfg_make[@]}" --family flux --config "$cfgid" > plans/cache_n2.log

# evaluation order: Table 2's baselines, V2's deltas (ascending), Table 5's coefficients;
# plans whose calibration failed are left out
want=(plans/cache_n2.json)
for d in $V1_DELTAS; do want+=("plans/v1_d$d.json"); done
for d in $V1_PLAIN_DELTAS; do want+=("plans/v1plain_d$d.json"); done
for d in $(printf '%s\n' $V2_MATCH_DELTAS $V2_DELTAS | sort -g -u); do want+=("plans/v2_d${d}_c1.5.json"); done
for c in $T5_CS; do [ "$c" = 0 ] && want+=("plans/v2_d${T5_DELTA}_cnone.json") || want+=("plans/v2_d${T5_DELTA}_c$c.json"); done
plans=()
for p in "${want[@]}"; do [ -f "$p" ] && plans+=("$p"); done

read -r -a seeds <<< "$SEEDS"
echo "evaluating ${#plans[@]} plans on $(wc -l < heldout.txt) held-out prompts x ${#seeds[@]} seed(s)"
t=$(now)
eval_args=(eval "${common[@]}" --plans "${plans[@]}" --prompts heldout.txt --seeds "${seeds[@]}" -o eval)
if ! nice "$DFA" "${eval_args[@]}" "${cuda_flag[@]}" > eval/stdout.md 2> eval.log; then
    if [ "$CUDA" = 1 ]; then
        echo "  eval --cuda failed ($(tail -1 eval.log)); CPU with 2 prompts x 1 seed" | tee -a fallbacks.txt
        mv eval.log eval.cuda.log
        head -n 2 heldout.txt > heldout2.txt
        eval_args=(eval "${common[@]}" --plans "${plans[@]}" --prompts heldout2.txt --seeds "${seeds[0]}" -o eval)
        nice "$DFA" "${eval_args[@]}" > eval/stdout.md 2> eval.log || { tail -5 eval.log >&2; exit 1; }
    else
        tail -5 eval.log >&2
        exit 1
    fi
fi
echo "eval $(elapsed "$t") s" >> timings.txt
sheet_kb=$(du -k eval/contact_sheet.png 2>/dev/null | cut -f1)
if [ -n "$sheet_kb" ] && [ "$sheet_kb" -gt $(( ${SHEET_MAX_MB:-24} * 1024 )) ]; then
    mv eval/contact_sheet.png "${TMPDIR:-/tmp}/fidelity_contact_sheet.png"
    echo "  contact sheet of $sheet_kb KB moved to ${TMPDIR:-/tmp}/fidelity_contact_sheet.png (over SHEET_MAX_MB);" \
         "eval_sheet/ has the first 2 prompts' sheet" | tee -a fallbacks.txt
    head -n 2 heldout.txt > heldout2.txt
    nice "$DFA" eval "${common[@]}" --plans "${plans[@]}" --prompts heldout2.txt --seeds "${seeds[0]}" -o eval_sheet \
        "${cuda_flag[@]}" > eval_sheet.log 2>&1 || echo "  eval_sheet failed: $(tail -1 eval_sheet.log)" | tee -a fallbacks.txt
fi
echo "$DFA ${eval_args[*]}" > eval/command.txt

# tables.md: the report's rows in the papers' layout (sparsity = 1 - attention fraction)
awk -v t5d="$T5_DELTA" -v fb="$(cat fallbacks.txt)" '
FNR == 1 { file++ }
file == 1 { if ($1 == "calibrate") cal[$2] = $3; next }
file == 2 && /^\| [0-9-]+ \|/ {
    split($0, f, "|")
    for (i in f) gsub(/^ +| +$/, "", f[i])
    name = f[3]; sub(/^plans\//, "", name); sub(/\.json$/, "", name)
    frac = f[4]; sub(/%/, "", frac)
    row = sprintf("%.2f | %s | %s | %s | %s | %s", 1 - frac / 100, f[5], f[6], f[7], f[8], f[9])
    if (name == "uncompressed") { base = row; next }
    n++; names[n] = name; rows[name] = row
}
END {
    hdr = "| attention sparsity | SSIM | SSIM min | PSNR (dB) | latent rel L2 | s / image |"
    print "## Table 2 layout: methods at their attention sparsity\n"
    print "| method | plan | calib. s " hdr
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    print "| original | - | - | " base " |"
    for (i = 1; i <= n; i++) {
        m = names[i]
        if (m == "cache_n2") lab = "Attention caching (N=2)"
        else if (m ~ /^v1_d/) { d = m; sub(/^v1_d/, "", d); lab = "DiTFastAttn (V1 greedy; arrow-shaped window), delta=" d }
        else if (m ~ /^v1plain_d/) { d = m; sub(/^v1plain_d/, "", d); lab = "DiTFastAttn (V1 greedy; plain 1-D window over [text, image]), delta=" d }
        else if (m ~ /_c1\.5$/) { d = m; sub(/^v2_d/, "", d); sub(/_c1\.5$/, "", d); lab = "DiTFastAttnV2, delta=" d }
        else continue
        printf "| %s | %s | %s | %s |\n", lab, m, (m in cal) ? cal[m] : "-", rows[m]
    }
    print "\n## Table 5 layout: V2 head constraint coefficient c at delta " t5d "\n"
    print "| c | plan | calib. s " hdr
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) {
        m = names[i]
        if (index(m, "v2_d" t5d "_c") != 1) continue
        c = m; sub(/^.*_c/, "", c); if (c == "none") c = "- (none)"
        printf "| %s | %s | %s | %s |\n", c, m, (m in cal) ? cal[m] : "-", rows[m]
    }
    print "\ncalib. s: wall time of dfa calibrate (also for a reused plan: the run that made it). Rows from eval/report.md."
    if (fb != "") print "\nFallbacks and omissions:\n\n```\n" fb "\n```"
}' timings.txt eval/report.md > tables.md
echo "total $(elapsed "$T0") s" >> timings.txt
cat tables.md
echo
echo "fidelity.sh: done in $(elapsed "$T0") s; $OUTDIR/tables.md, eval/report.md, eval/ssim_vs_attn.png, eval/contact_sheet.png"
