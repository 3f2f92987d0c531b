#!/usr/bin/env python3
"""bench_mmdit_diffusers.py - the diffusers side of bench/bench_mmdit.c: load the same random
checkpoint folder (written by bench_mmdit --dir DIR) into FluxTransformer2DModel or
SD3Transformer2DModel in bf16 with SDPA attention and time one forward at the same shapes
(median of --reps after one warm-up). Run on the device, where the GPU is:

  ./build/bench_mmdit --preset flux-dev --res 1024 --dir /tmp/fluxdev --cuda
  python3 bench/bench_mmdit_diffusers.py --dir /tmp/fluxdev --res 1024

--save FILE also writes the inputs and diffusers' output (f32) so that
`bench_mmdit --check FILE` runs dfa on exactly those inputs and reports the relative error
(use --dtype float32 --device cpu for a tight check of the CPU engine).
"""
import argparse
import json
import os
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--txt", type=int, default=-1)
    ap.add_argument("--batch", type=int, default=-1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.dir, "transformer", "config.json")))
    flux = cfg["_class_name"] == "FluxTransformer2DModel"
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    cls = FluxTransformer2DModel if flux else SD3Transformer2DModel
    dt = getattr(torch, a.dtype)
    model = cls.from_pretrained(a.dir, subfolder="transformer", torch_dtype=dt).to(a.device).eval()
    txt = a.txt if a.txt > 0 else (512 if flux else 333)
    B = a.batch if a.batch > 0 else (1 if flux else 2)
    lat = a.res // 8
    g = torch.Generator(device="cpu").manual_seed(0)
    enc = torch.randn(B, txt, cfg["joint_attention_dim"], generator=g).to(a.device, dt)
    pooled = torch.randn(B, cfg["pooled_projection_dim"], generator=g).to(a.device, dt)
    if flux:
        n_img = (lat // 2) ** 2
        x = torch.randn(B, n_img, cfg["in_channels"], generator=g).to(a.device, dt)
        ids = torch.zeros(lat // 2, lat // 2, 3)
        ids[..., 1] += torch.arange(lat // 2)[:, None]
        ids[..., 2] += torch.arange(lat // 2)[None, :]
        kw = dict(hidden_states=x, encoder_hidden_states=enc, pooled_projections=pooled,
                  timestep=torch.full([B], 0.5, device=a.device, dtype=dt),
                  img_ids=ids.reshape(-1, 3).to(a.device, dt), txt_ids=torch.zeros(txt, 3, device=a.device, dtype=dt),
                  guidance=torch.full([B], 3.5, device=a.device, dtype=dt) if cfg.get("guidance_embeds") else None,
                  return_dict=False)
    else:
        n_img = (lat // cfg["patch_size"]) ** 2
        x = torch.randn(B, cfg["in_channels"], lat, lat, generator=g).to(a.device, dt)
        kw = dict(hidden_states=x, encoder_hidden_states=enc, pooled_projections=pooled,
                  timestep=torch.full([B], 500.0, device=a.device, dtype=dt), return_dict=False)
    times = []
    with torch.no_grad():
        for k in range(a.reps + 1):
            if a.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            y = model(**kw)[0]
            if a.device == "cuda":
                torch.cuda.synchronize()
            if k:
                times.append(time.perf_counter() - t0)
    times.sort()
    if a.save:
        from safetensors.torch import save_file

        f = lambda t: t.detach().float().cpu().contiguous()
        out = {"x": f(x), "enc": f(enc), "pooled": f(pooled), "timestep": f(kw["timestep"]), "out": f(y)}
        if flux and kw["guidance"] is not None:
            out["guidance"] = f(kw["guidance"])
        save_file(out, a.save)
    print(f"diffusers {cfg['_class_name']} {a.res}x{a.res} px: {n_img} image + {txt} text tokens, batch {B}: "
          f"forward {times[len(times) // 2]:.3f} s (median of {a.reps})")


if __name__ == "__main__":
    main()
