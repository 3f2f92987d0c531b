"""Generate images from an exported model with diffusers' FluxPipeline (the reference that
dfa's C engine must match).

    python3 tools/train/sample.py --model models/dfa-shapes --prompt "a red circle on a white background"
    python3 tools/train/sample.py --model DIR --prompts prompts.txt --out out/samples --grid out/grid.png
    python3 tools/train/sample.py --model DIR --prompt "..." --save-latents out/ref.safetensors

Defaults (size, max_sequence_length, steps, true_cfg_scale) come from the folder's dfa.json.
The initial noise is drawn here from torch.Generator(cpu).manual_seed(seed + i) as
(1, 16, H/8, W/8) float32 and packed the way FluxPipeline packs it, so --save-latents can store
it ('noise', packed (1, N, 64)) next to the final packed latents ('latents') and the decoded
image ('image', (3, H, W) in [0, 1]) for golden tests.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", action="append", default=[])
    ap.add_argument("--prompts", help="file, one prompt a line")
    ap.add_argument("--out", default="tools/train/out/samples", help="folder for the PNGs")
    ap.add_argument("--grid", help="also a contact sheet PNG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--cfg", type=float, help="true_cfg_scale (1: no guidance)")
    ap.add_argument("--size", type=int)
    ap.add_argument("--max-sequence-length", type=int)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                    help="default float32 on cpu, bfloat16 on cuda")
    ap.add_argument("--save-latents", help="safetensors with noise / latents / image of the first prompt")
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from diffusers import FluxPipeline
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline as FP

    cfg = {}
    p = os.path.join(a.model, "dfa.json")
    if os.path.exists(p):
        cfg = json.load(open(p))
    size = a.size or cfg.get("height", 512)
    steps = a.steps or cfg.get("num_inference_steps", 20)
    scale = a.cfg if a.cfg is not None else cfg.get("true_cfg_scale", 4.0)
    msl = a.max_sequence_length or cfg.get("max_sequence_length", 64)
    prompts = list(a.prompt)
    if a.prompts:
        prompts += [ln.strip() for ln in open(a.prompts) if ln.strip()]
    if not prompts:
        raise SystemExit("no prompt: give --prompt or --prompts")
    dtype = getattr(torch, a.dtype or ("bfloat16" if a.device == "cuda" else "float32"))
    t0 = time.time()
    pipe = FluxPipeline.from_pretrained(a.model, torch_dtype=dtype).to(a.device)
    pipe.set_progress_bar_config(disable=True)
    print(f"loaded {a.model} in {time.time() - t0:.1f} s ({dtype}, {a.device})")
    os.makedirs(a.out, exist_ok=True)
    lat = size // 8
    imgs = []
    for i, prompt in enumerate(prompts):
        g = torch.Generator("cpu").manual_seed(a.seed + i)
        noise = torch.randn(1, 16, lat, lat, generator=g, dtype=torch.float32)
        packed = FP._pack_latents(noise, 1, 16, lat, lat)
        t0 = time.time()
        out = pipe(prompt, negative_prompt="" if scale > 1 else None, true_cfg_scale=scale, height=size, width=size,
                   num_inference_steps=steps, max_sequence_length=msl, latents=packed.to(a.device, dtype),
                   output_type="latent", return_dict=False)[0]
        with torch.no_grad():
            z = FP._unpack_latents(out, size, size, pipe.vae_scale_factor)
            z = z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            img = pipe.vae.decode(z.to(dtype), return_dict=False)[0]
            img = ((img.float() + 1) / 2).clamp(0, 1)[0].cpu()
        dt = time.time() - t0
        name = os.path.join(a.out, f"{i:03d}.png")
        from PIL import Image
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")).save(name)
        print(f"{name}  {dt:.2f} s  {prompt}")
        imgs.append(img)
        if i == 0 and a.save_latents:
            from safetensors.torch import save_file
            save_file({"noise": packed.contiguous(), "latents": out.float().cpu().contiguous(),
                       "image": img.contiguous()}, a.save_latents,
                      metadata={"prompt": prompt, "steps": str(steps), "true_cfg_scale": str(scale),
                                "max_sequence_length": str(msl), "size": str(size), "dtype": str(dtype)})
            print(f"wrote {a.save_latents}")
    if a.grid:
        import dataset
        dataset._save_grid(torch.stack(imgs), a.grid, min(4, len(imgs)))
        print(f"wrote {a.grid}")


if __name__ == "__main__":
    main()
