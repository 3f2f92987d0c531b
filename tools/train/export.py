"""Export the trained checkpoints as a diffusers FLUX folder (bf16 safetensors) + model card.

    python3 tools/train/export.py --vae tools/train/runs/vae --dit tools/train/runs/dit --out models/dfa-shapes

Writes model_index.json, transformer/, vae/, text_encoder/, text_encoder_2/, tokenizer/,
tokenizer_2/, scheduler/ (FlowMatchEulerDiscreteScheduler, FLUX dynamic shift) through
FluxPipeline.save_pretrained, then dfa.json (the settings the model was trained for) and
MODEL_CARD.md (tools/train/MODEL_CARD.template.md filled from the checkpoints' meta.json,
log.csv and eval.csv). Checks that the folder loads back with FluxPipeline.from_pretrained and
that its tokenizer.json files agree with transformers' tokenizer classes.
"""
import argparse
import csv
import datetime
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402
import dataset  # noqa: E402
import models  # noqa: E402
import tokenizer as tok_mod  # noqa: E402

DEFAULT_STEPS = 20
DEFAULT_CFG = 4.0


def _last_loss(d):
    p = os.path.join(d, "log.csv")
    if not os.path.exists(p):
        return "n/a"
    rows = list(csv.DictReader(open(p)))
    return rows[-1]["loss"] if rows else "n/a"


def _last_eval(d):
    p = os.path.join(d, "eval.csv")
    if not os.path.exists(p):
        return {}
    rows = list(csv.DictReader(open(p)))
    if not rows:
        return {}
    last = rows[-1]["step"]
    return {f"{r['split']} {r['metric']}": r["value"] for r in rows if r["step"] == last}


def _dir_mb(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs) / 1e6


def build_pipeline(vmeta, dmeta, vae_dir, dit_dir):
    from diffusers import FluxPipeline
    cfg = dmeta["config"]
    tr = models.build_transformer(cfg)
    clip, t5 = models.build_clip(cfg), models.build_t5(cfg)
    ckpt.load_weights(dit_dir, dmeta, {"transformer": tr, "text_encoder": clip, "text_encoder_2": t5})
    vae = models.build_vae(cfg, dmeta["latent_scale"], dmeta["latent_shift"])
    ckpt.load_weights(vae_dir, vmeta, {"vae": vae})
    toks = models.load_tokenizers()
    pipe = FluxPipeline(scheduler=models.build_scheduler(), vae=vae, text_encoder=clip, tokenizer=toks[0],
                        text_encoder_2=t5, tokenizer_2=toks[1], transformer=tr)
    return pipe.to(torch.bfloat16)


def card(args, vmeta, dmeta, pipe):
    cfg = dmeta["config"]
    t = cfg["transformer"]
    devices = sorted({c.get("device", "?") for m in (vmeta, dmeta) for c in m.get("calls", [])})
    ve, de = _last_eval(args.vae), _last_eval(args.dit)
    fields = {
        "name": os.path.basename(os.path.normpath(args.out)), "out": args.out,
        "exported": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "vae_dir": args.vae, "dit_dir": args.dit, "vae_step": vmeta["step"], "dit_step": dmeta["step"],
        "size": cfg["image_size"], "t5_len": cfg["t5_max_length"], "cfg": DEFAULT_CFG, "steps": DEFAULT_STEPS,
        "p_transformer": f"{models.count(pipe.transformer) / 1e6:.2f} M", "p_vae": f"{models.count(pipe.vae) / 1e6:.2f} M",
        "p_clip": f"{models.count(pipe.text_encoder) / 1e6:.2f} M",
        "p_t5": f"{models.count(pipe.text_encoder_2) / 1e6:.2f} M",
        "n_double": t["num_layers"], "n_single": t["num_single_layers"], "heads": t["num_attention_heads"],
        "hidden": t["num_attention_heads"] * t["attention_head_dim"], "rope": t["axes_dims_rope"],
        "vae_boc": cfg["vae"]["block_out_channels"], "vae_lpb": cfg["vae"]["layers_per_block"],
        "scale": dmeta["latent_scale"], "shift": dmeta["latent_shift"],
        "clip_hidden": cfg["clip"]["hidden_size"], "clip_layers": cfg["clip"]["num_hidden_layers"],
        "clip_eos": pipe.text_encoder.config.eos_token_id, "t5_d": cfg["t5"]["d_model"],
        "t5_layers": cfg["t5"]["num_layers"], "clip_vocab": pipe.text_encoder.config.vocab_size,
        "t5_vocab": pipe.text_encoder_2.config.vocab_size, "size_mb": _dir_mb(args.out),
        "heldout": ", ".join(f"{c} {s}" for c, s in sorted(dataset.HELDOUT_PAIRS)), "val_mod": dataset.VAL_MOD,
        "vae_batch": vmeta["hparams"]["batch"], "vae_crop": vmeta["hparams"]["crop"],
        "vae_samples": vmeta["step"] * vmeta["hparams"]["batch"], "vae_min": vmeta["train_s"] / 60,
        "vae_calls": len(vmeta.get("calls", [])), "vae_loss": _last_loss(args.vae),
        "dit_batch": dmeta["hparams"]["batch"], "dit_samples": dmeta["step"] * dmeta["hparams"]["batch"],
        "dit_min": dmeta["train_s"] / 60, "dit_calls": len(dmeta.get("calls", [])), "dit_loss": _last_loss(args.dit),
        "devices": ", ".join(devices) or "n/a",
        "vae_eval": ", ".join(f"{k} {v}" for k, v in ve.items()) or "n/a",
        "dit_eval": "\n".join(f"- {k}: {v}" for k, v in de.items()) or "n/a",
    }
    tpl = open(os.path.join(models.HERE, "MODEL_CARD.template.md")).read()
    return tpl.format(**fields)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--dit", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-mb", type=float, default=60.0, help="fail if the folder is bigger")
    a = ap.parse_args()
    vmeta, dmeta = ckpt.read_meta(a.vae), ckpt.read_meta(a.dit)
    if not vmeta or not dmeta or vmeta["stage"] != "vae" or dmeta["stage"] != "dit":
        raise SystemExit("--vae / --dit must be vae / dit checkpoint folders (meta.json)")
    if dmeta["vae_step"] != vmeta["step"]:
        raise SystemExit(f"{a.dit} was trained on the VAE at step {dmeta['vae_step']}, {a.vae} is at {vmeta['step']}")
    pipe = build_pipeline(vmeta, dmeta, a.vae, a.dit)
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    pipe.save_pretrained(a.out, safe_serialization=True)
    # name the tokenizer classes as FLUX.1's model_index.json does (T5TokenizerFast is an alias
    # of T5Tokenizer in transformers v5, but the fast class in v4 loads tokenizer.json alone)
    mi_path = os.path.join(a.out, "model_index.json")
    mi = json.load(open(mi_path))
    mi["tokenizer_2"] = ["transformers", "T5TokenizerFast"]
    with open(mi_path, "w") as f:
        json.dump(mi, f, indent=2)
        f.write("\n")
    cfg = dmeta["config"]
    with open(os.path.join(a.out, "dfa.json"), "w") as f:
        json.dump({"height": cfg["image_size"], "width": cfg["image_size"],
                   "max_sequence_length": cfg["t5_max_length"], "num_inference_steps": DEFAULT_STEPS,
                   "true_cfg_scale": DEFAULT_CFG, "negative_prompt": "", "guidance_embeds": False}, f, indent=2)
        f.write("\n")
    tok_mod.check(a.out)
    with open(os.path.join(a.out, "MODEL_CARD.md"), "w") as f:
        f.write(card(a, vmeta, dmeta, pipe))
    # it must load back, as the engine's reference does
    from diffusers import FluxPipeline
    FluxPipeline.from_pretrained(a.out, torch_dtype=torch.float32)
    mb = _dir_mb(a.out)
    for r, _, fs in sorted(os.walk(a.out)):
        for fn in sorted(fs):
            p = os.path.join(r, fn)
            print(f"{os.path.getsize(p) / 1e6:9.3f} MB  {os.path.relpath(p, a.out)}")
    print(f"exported {a.out}: {mb:.1f} MB")
    if mb > a.max_mb:
        raise SystemExit(f"{a.out} is {mb:.1f} MB, over --max-mb {a.max_mb}")


if __name__ == "__main__":
    main()
