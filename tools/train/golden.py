"""Golden reference of an exported model for the C engine: diffusers' FluxPipeline, float32, CPU.

    python3 tools/train/golden.py --model models/dfa-shapes --out tests/fixtures/dfa-shapes/golden.safetensors

For each prompt (default: two val prompts of tools/train/dataset.py), at --size pixels and
--steps Euler steps with true_cfg_scale --cfg and negative prompt "" (the model's dfa.json
settings otherwise), one safetensors file holds, with i the prompt's index:

  clip_ids_i     (1, 77) int64   CLIP token ids (padded with <|endoftext|>, as the pipeline does)
  t5_ids_i       (1, L) int64    T5 token ids (padded with <pad> to max_sequence_length L)
  pooled_i       (1, 128)        CLIP pooled output (the transformer's pooled_projections)
  embeds_i       (1, L, 128)     T5 last hidden state (the transformer's encoder_hidden_states)
  neg_pooled, neg_embeds         the same for the negative prompt "" (present when cfg > 1)
  noise_i        (1, N, 64)      initial packed latents: torch.Generator(cpu).manual_seed(seed + i),
                                 randn (1, 16, H/8, W/8) float32, packed as FluxPipeline packs
  latents_i      (1, N, 64)      final packed latents after the last step
  image_i        (3, H, W) f16   decoded image in [0, 1] (before 8-bit rounding; float16 keeps
                                 the file small: 2^-11 relative, far below one 8-bit level)
  sigmas         (steps + 1,)    the scheduler's sigmas (FLUX shift for N image tokens)

Metadata: the prompts, steps, cfg, size, max_sequence_length, seed. Other tensors are float32
(about 1.2 MB in all at 256x256): the C engine should match to float32 round-off per step.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt", action="append", default=[])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cfg", type=float, help="true_cfg_scale (default: dfa.json's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from diffusers import FluxPipeline
    from safetensors.torch import save_file
    import dataset

    cfg = {}
    p = os.path.join(a.model, "dfa.json")
    if os.path.exists(p):
        cfg = json.load(open(p))
    scale = a.cfg if a.cfg is not None else cfg.get("true_cfg_scale", 4.0)
    msl = cfg.get("max_sequence_length", 64)
    prompts = a.prompt or [s.caption for s in dataset.sample_scenes(0, 0, 2, "val")]
    pipe = FluxPipeline.from_pretrained(a.model, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    size, lat = a.size, a.size // 8
    out = {}

    def enc(prompt):
        c = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                           truncation=True, return_tensors="pt").input_ids
        t = pipe.tokenizer_2(prompt, padding="max_length", max_length=msl, truncation=True,
                             return_tensors="pt").input_ids
        embeds, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, max_sequence_length=msl)
        return c, t, embeds, pooled

    with torch.no_grad():
        if scale > 1:
            _, _, out["neg_embeds"], out["neg_pooled"] = enc("")
        for i, prompt in enumerate(prompts):
            c, t, embeds, pooled = enc(prompt)
            g = torch.Generator("cpu").manual_seed(a.seed + i)
            noise = torch.randn(1, 16, lat, lat, generator=g, dtype=torch.float32)
            packed = FluxPipeline._pack_latents(noise, 1, 16, lat, lat)
            kw = dict(negative_prompt_embeds=out["neg_embeds"], negative_pooled_prompt_embeds=out["neg_pooled"]) \
                if scale > 1 else {}
            final = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, true_cfg_scale=scale, height=size,
                         width=size, num_inference_steps=a.steps, max_sequence_length=msl, latents=packed.clone(),
                         output_type="latent", return_dict=False, **kw)[0]
            z = FluxPipeline._unpack_latents(final, size, size, pipe.vae_scale_factor)
            z = z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            img = ((pipe.vae.decode(z, return_dict=False)[0][0] + 1) / 2).clamp(0, 1)
            out.update({f"clip_ids_{i}": c, f"t5_ids_{i}": t, f"pooled_{i}": pooled, f"embeds_{i}": embeds,
                        f"noise_{i}": packed, f"latents_{i}": final, f"image_{i}": img})
            print(f"[golden] {i}: {prompt!r}: latents std {final.std():.4f}, image mean {img.mean():.4f}")
        out["sigmas"] = pipe.scheduler.sigmas.float()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    meta = {"prompts": json.dumps(prompts), "steps": str(a.steps), "true_cfg_scale": str(scale),
            "size": str(size), "max_sequence_length": str(msl), "seed": str(a.seed), "dtype": "float32",
            "model": os.path.normpath(a.model)}
    out = {k: (v.half() if k.startswith("image_") else v.float()) if v.is_floating_point() else v
           for k, v in out.items()}
    save_file({k: v.contiguous() for k, v in out.items()}, a.out, metadata=meta)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
