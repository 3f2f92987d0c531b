#!/bin/sh
# run.sh SECONDS - build the libFuzzer targets with clang (ASan + UBSan) straight from the
# sources they need, seed each corpus from a few valid inputs generated here, and fuzz for
# SECONDS in all (1/2 for the safetensors header parser, 1/6 each for the JSON helpers, the
# tokenizer loader + encoder, and plan files).
# Exits non-zero when a target finds a crash, a leak or undefined behaviour; the input that
# did it is left in build-fuzz/ (crash-*, leak-*, ...). Needs clang with libFuzzer
# (Debian: clang libclang-rt-14-dev) and libcjson-dev.
set -eu
secs=${1:-30}
cd "$(dirname "$0")/../.."
out=build-fuzz
CC=${CC:-clang}
mkdir -p "$out"
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer -Iinclude -Isrc
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
CORE="src/core/tensor.c src/core/error.c"
LIBS="$(pkg-config --libs libcjson 2>/dev/null || echo -lcjson) -lm"

echo "fuzz: building targets into $out/"
# shellcheck disable=SC2086
$CC $CFLAGS tests/fuzz/fuzz_safetensors.c src/io/st_header.c $CORE $LIBS -o "$out/fuzz_safetensors"
# shellcheck disable=SC2086
$CC $CFLAGS tests/fuzz/fuzz_json.c src/io/json.c $CORE $LIBS -o "$out/fuzz_json"
# shellcheck disable=SC2086
$CC $CFLAGS tests/fuzz/fuzz_tokenizer.c src/text/tok_*.c src/text/tokenizer.c src/text/unicode*.c $CORE $LIBS -o "$out/fuzz_tokenizer"
# shellcheck disable=SC2086
$CC $CFLAGS tests/fuzz/fuzz_plan.c src/plan/plan.c src/plan/plan_io.c src/io/json.c src/attn/mask.c \
    src/attn/attn_cost.c $CORE $LIBS -o "$out/fuzz_plan"

# seeds: small valid safetensors images (8-byte little-endian header length, JSON, data)
st_seed() { # FILE JSON DATA_BYTES
    n=$(printf '%s' "$2" | wc -c)
    {
        printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))"
        printf '\000\000\000\000'
        printf '%s' "$2"
        head -c "$3" /dev/zero
    } >"$1"
}
seeds="$out/seeds_safetensors"
rm -rf "$seeds" "$out/seeds_json" "$out/seeds_tokenizer" "$out/seeds_plan"
mkdir -p "$seeds" "$out/seeds_json" "$out/corpus_safetensors" "$out/corpus_json" "$out/seeds_tokenizer" \
    "$out/corpus_tokenizer" "$out/seeds_plan" "$out/corpus_plan"
st_seed "$seeds/one" '{"x.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' 24
st_seed "$seeds/meta" '{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}' 16
st_seed "$seeds/empty" '{}      ' 0
st_seed "$seeds/zero" '{"z":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]},"u":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}' 3
cp tests/fixtures/reference.safetensors "$seeds/reference"
printf '%s' '{"num_layers": 24, "eps": 1e-6, "name": "SD3Transformer2DModel", "flag": true, "a": null}' >"$out/seeds_json/config"
printf '%s' '{"weight_map": {"a": "model-00001.safetensors"}, "metadata": {"total_size": 8}}' >"$out/seeds_json/index"
printf '%s' '[1, -2.5e3, "x\u00e9", {"a": [true, false]}]' >"$out/seeds_json/array"

# tokenizer seeds: each fixture tokenizer.json, a NUL, then a prompt
for t in tests/fixtures/text/*_tok/tokenizer.json; do
    name=$(basename "$(dirname "$t")")
    { cat "$t"; printf '\000'; printf '%s' "A photo of a cat, caf\303\251 \346\227\245\346\234\254 I'm <|endoftext|> </s>  x"; } \
        >"$out/seeds_tokenizer/$name"
done

printf '%s' '{"format": "dfa-plan", "version": 1, "model": {"family": "sd3", "config": "t"}, "layout": {"n_text": 5, "text_first": false, "n_vis": 24, "grid_h": 4, "grid_w": 6, "block": 4}, "steps": 2, "layers": 1, "heads": 3, "cfg": true, "cfg_cond_index": 1, "method_set": ["full", "arrow", "arrow_rs", "cache", "asc"], "search": {"method": "v2", "delta": 0.1, "c": 1.5}, "entries": [{"step": 0, "layer": 0, "asc": false, "heads": "F F A1"}, {"step": 1, "layer": 0, "asc": true, "heads": "C R2 A0"}]}' >"$out/seeds_plan/small"
printf '%s' '{"format": "dfa-plan", "version": 1, "model": {"family": "sd3", "config": "t"}, "layout": {"n_text": 5, "text_first": false, "n_vis": 24, "grid_h": 4, "grid_w": 6, "block": 4}, "layer_layouts": [{"layer": 1, "n_text": 0, "text_first": false, "n_vis": 24, "block": 4}], "steps": 2, "layers": 2, "heads": 3, "cfg": true, "cfg_cond_index": 1, "method_set": ["full", "arrow", "arrow_rs", "cache", "asc"], "search": {"method": "v2", "delta": 0.1, "c": 1.5}, "entries": [{"step": 0, "layer": 0, "asc": false, "heads": "F F A1"}, {"step": 1, "layer": 0, "asc": true, "heads": "C R2 A0"}, {"step": 0, "layer": 1, "asc": false, "heads": "F A1 F"}, {"step": 1, "layer": 1, "asc": false, "heads": "C A0 R2"}]}' >"$out/seeds_plan/layer_layouts"
printf '%s' '{"format": "dfa-plan", "version": 1, "model": {"family": "flux", "config": "t"}, "layout": {"n_text": 5, "text_first": true, "n_vis": 24, "grid_h": 4, "grid_w": 6, "block": 4}, "band": "plain", "steps": 2, "layers": 1, "heads": 3, "cfg": false, "cfg_cond_index": 0, "method_set": ["full", "arrow", "arrow_rs", "cache"], "search": {"method": "v1", "delta": 0.1, "c": 0}, "entries": [{"step": 0, "layer": 0, "asc": false, "heads": "F F F"}, {"step": 1, "layer": 0, "asc": false, "heads": "C R1 A0"}]}' >"$out/seeds_plan/band_plain"

st_secs=$((secs / 2))
[ "$st_secs" -ge 1 ] || st_secs=1
js_secs=$((secs / 6))
[ "$js_secs" -ge 1 ] || js_secs=1
tk_secs=$((secs / 6))
[ "$tk_secs" -ge 1 ] || tk_secs=1
pl_secs=$((secs - st_secs - js_secs - tk_secs))
[ "$pl_secs" -ge 1 ] || pl_secs=1
status=0
run() { # NAME SECONDS MAX_LEN
    echo "fuzz: $1 for $2 s"
    if ! "$out/fuzz_$1" -max_total_time="$2" -max_len="$3" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/" "$out/corpus_$1" "$out/seeds_$1" >"$out/fuzz_$1.log" 2>&1; then
        echo "fuzz: $1 FAILED (see $out/fuzz_$1.log):"
        tail -n 40 "$out/fuzz_$1.log"
        status=1
    else
        grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$out/fuzz_$1.log" | sed "s/^/fuzz: $1 /" || true
    fi
}
run safetensors "$st_secs" 4096
run json "$js_secs" 2048
run tokenizer "$tk_secs" 65536
run plan "$pl_secs" 4096
[ "$status" -eq 0 ] && echo "fuzz: no crash found"
exit "$status"
