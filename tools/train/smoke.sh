#!/bin/bash
# CPU smoke test of the whole tool chain with the tiny preset (64x64 images): VAE and DiT
# training (each resumed once), export, loading with FluxPipeline, one sample.
# About 5 minutes on 2 busy cores. Outputs in tools/train/out/smoke/ (ignored by git).
#   bash tools/train/smoke.sh [VAE_MINUTES] [DIT_MINUTES]
set -euo pipefail
cd "$(dirname "$0")/../.."
T=tools/train
S=$T/out/smoke
VM=${1:-1.0}
DM=${2:-1.5}
rm -rf $S
python3 $T/dataset.py --selftest
python3 $T/tokenizer.py --out $S/tokenizers    # retraining works and agrees with transformers (ids differ run to run)
common=(--preset tiny --threads 1 --log-every 25 --reserve-s 10)
python3 $T/train.py --stage vae --ckpt $S/vae --minutes "$VM" "${common[@]}"
python3 $T/train.py --stage vae --ckpt $S/vae --minutes 0.5 "${common[@]}"            # resume (full state)
python3 $T/train.py --stage dit --ckpt $S/dit --vae $S/vae --minutes "$DM" "${common[@]}"
rm $S/dit/state.pt                                                                       # resume as after a device call
python3 $T/train.py --stage dit --ckpt $S/dit --minutes 0.5 "${common[@]}"
python3 $T/export.py --vae $S/vae --dit $S/dit --out $S/export
python3 $T/sample.py --model $S/export --threads 1 --out $S/samples --grid $S/grid.png \
    --prompt "a red circle on a white background" --prompt "a large blue square in the top left corner" \
    --prompt "three small yellow stars on a black background" --prompt "a green circle to the left of a red square"
python3 - <<'PY'
import json
for s in ("vae", "dit"):
    m = json.load(open(f"tools/train/out/smoke/{s}/meta.json"))
    print(s, "step", m["step"], "train_s %.0f" % m["train_s"], [(c["resume"], c["steps"]) for c in m["calls"]])
PY
