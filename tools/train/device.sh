#!/bin/bash
# One training call on the device machine (tools/train/README.md has the plan).
#   bash tools/train/device.sh smoke             tiny model, both stages + export + sample, /tmp
#   bash tools/train/device.sh vae|dit MINUTES [train.py args...]
# Resumes from tools/train/runs/<stage> (carried from here), trains, and copies the compact
# checkpoint (meta.json, logs, preview, bf16 weight shards <= 15 MiB) + train.log to $OUT/<stage>/.
set -uo pipefail
stage=$1
shift
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
if ! python3 -c "import diffusers" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "device.sh: diffusers wheel missing: carry .whl (README.md)"; exit 2; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import torch, diffusers, transformers as t; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', t.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO GPU')"
T=tools/train
if [ "$stage" = smoke ]; then
    S=/tmp/smoke
    rm -rf $S
    python3 $T/train.py --stage vae --preset tiny --ckpt $S/vae --minutes 0.4 --reserve-s 5 --log-every 50 &&
    python3 $T/train.py --stage dit --preset tiny --ckpt $S/dit --vae $S/vae --minutes 0.5 --reserve-s 8 --log-every 50 &&
    python3 $T/export.py --vae $S/vae --dit $S/dit --out $S/export | tail -1 &&
    python3 $T/sample.py --model $S/export --prompt "a red circle on a white background" --out $S/samples
    exit $?
fi
minutes=$1
shift
args=(--stage "$stage" --ckpt "$T/runs/$stage" --minutes "$minutes" --no-full-state)
[ "$stage" = dit ] && args+=(--vae "$T/runs/vae")
python3 $T/train.py "${args[@]}" "$@" 2>&1 | tee /tmp/train-$stage.log
rc=${PIPESTATUS[0]}
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/$stage"
    for f in meta.json log.csv eval.csv preview.png; do
        [ -f "$T/runs/$stage/$f" ] && cp "$T/runs/$stage/$f" "$OUT/$stage/"
    done
    cp "$T"/runs/"$stage"/weights-*.safetensors "$OUT/$stage/" 2>/dev/null
    cp /tmp/train-$stage.log "$OUT/$stage/train.log"
    ls -la "$OUT/$stage"
fi
exit $rc
