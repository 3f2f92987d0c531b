#!/usr/bin/env python3
"""dit_gpu.py - the diffusers side of bench/dit_gpu.sh (issue #7): DiT-XL-2 and PixArt-Sigma-XL at
their real sizes with random weights (diffusers' own init, on the GPU, bf16), saved as diffusers
folders that bench_dit_gpu (dfa) then loads, so both engines run the same weights. For each case
it times one transformer forward of the CFG batch 2 (median of --reps after a warm-up, SDPA
attention) and a 50-step DPM-Solver++ loop with CFG (transformer + scheduler, no text encoder /
VAE), and saves the inputs, the forward's output and the loop's final latents (f32) with the
seconds, for dfa's check and ratios.

  python3 bench/dit_gpu.py DIR [steps=50] [cases=dit512,pixart1024,pixart2048]

Writes DIR/dit/{transformer,scheduler}, DIR/pixart/{transformer,scheduler} and
DIR/<case>_io.safetensors. Cases: dit512 (DiT-XL-2, latent 64x64, 1024 tokens), pixart1024
(latent 128x128, 4096 tokens), pixart2048 (256x256, 16384 tokens); PixArt with 300 T5 tokens
(4096 wide) under a padding mask (uncond 8 tokens, cond 120)."""
import os
import sys
import time

import torch
from diffusers import DiTTransformer2DModel, DPMSolverMultistepScheduler, PixArtTransformer2DModel
from safetensors.torch import save_file

R = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dfa_dit_gpu"
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 50
CASES = (sys.argv[3] if len(sys.argv) > 3 else "dit512,pixart1024,pixart2048").split(",")
DEV, DT = os.environ.get("DFA_BENCH_DEVICE", "cuda"), torch.bfloat16
TINY = os.environ.get("DFA_BENCH_TINY") == "1"  # smoke test of the scripts: 2 blocks x 2 heads, small latents
LAYERS, HEADS = (2, 2) if TINY else (28, 16)
os.makedirs(R, exist_ok=True)


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def sync_time(f):
    sync()
    t0 = time.perf_counter()
    r = f()
    sync()
    return r, time.perf_counter() - t0


def median_time(f, reps):
    f()  # warm-up
    ts = []
    r = None
    for _ in range(reps):
        r, dt = sync_time(f)
        ts.append(dt)
    return r, sorted(ts)[len(ts) // 2]


def scheduler(folder):
    s = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001,
                                    beta_end=0.02, algorithm_type="dpmsolver++", solver_order=2,
                                    timestep_spacing="linspace", prediction_type="epsilon")
    s.save_config(folder)
    return s


def bf(x):  # bf16-representable f32 (both engines get exactly these inputs)
    return x.to(DT).float()


def run_case(name, model, sched, x, cond, guidance, reps):
    """cond(ts) -> model kwargs for a batch of 2 [uncond, cond]."""
    t = torch.tensor([500.0, 500.0], device=DEV)
    with torch.no_grad():
        out, sec = median_time(lambda: model(x.to(DT), timestep=t, **cond).sample, reps)
        noise = x[:1].clone()

        def loop():
            sched.set_timesteps(STEPS)
            lat = noise.clone()
            for tt in sched.timesteps:
                o = model(torch.cat([lat, lat]).to(DT), timestep=tt.expand(2).to(DEV), **cond).sample
                unc, c = o[:, :4].float().chunk(2)
                lat = sched.step(unc + guidance * (c - unc), tt, lat).prev_sample
            return lat
        final, sec_loop = sync_time(loop)  # the model is warm from the forward timing above
    print(f"{name}: forward {sec * 1e3:.1f} ms, {STEPS}-step loop {sec_loop:.2f} s", flush=True)
    return out.float(), final.float(), sec, sec_loop


if "dit512" in CASES:
    torch.manual_seed(0)
    with torch.device(DEV):
        dit = DiTTransformer2DModel(num_attention_heads=HEADS, attention_head_dim=72, in_channels=4, out_channels=8,
                                    num_layers=LAYERS, sample_size=64, patch_size=2, num_embeds_ada_norm=1000)
    dit = dit.to(DT).eval()
    dit.save_pretrained(R + "/dit/transformer")
    sch = scheduler(R + "/dit/scheduler")
    g = torch.Generator(device=DEV).manual_seed(1)
    hd = 16 if TINY else 64
    x = bf(torch.randn(2, 4, hd, hd, generator=g, device=DEV))
    x[1] = x[0]  # CFG: the same latent twice
    y = torch.tensor([1000, 207], device=DEV)  # [null class, class]
    out, fin, sec, sec_loop = run_case("dit512", dit, sch, x, {"class_labels": y}, 4.0, 5)
    save_file({"x": x.cpu(), "t": torch.tensor([500.0, 500.0]), "y": y.float().cpu(), "out": out.cpu().contiguous(),
               "final": fin.cpu().contiguous(), "seconds": torch.tensor([sec, sec_loop, float(STEPS)])},
              R + "/dit512_io.safetensors")
    del dit
    if DEV == "cuda":
        torch.cuda.empty_cache()

pix_cases = [c for c in CASES if c.startswith("pixart")]
if pix_cases:
    torch.manual_seed(0)
    with torch.device(DEV):
        pix = PixArtTransformer2DModel(num_attention_heads=HEADS, attention_head_dim=72, in_channels=4,
                                       out_channels=8, num_layers=LAYERS, cross_attention_dim=HEADS * 72, sample_size=128, patch_size=2,
                                       caption_channels=4096, interpolation_scale=2,
                                       use_additional_conditions=False, norm_type="ada_norm_single", norm_eps=1e-6)
    pix = pix.to(DT).eval()
    pix.save_pretrained(R + "/pixart/transformer")
    sch = scheduler(R + "/pixart/scheduler")
    g = torch.Generator(device=DEV).manual_seed(2)
    L = 300
    enc = bf(torch.randn(2, L, 4096, generator=g, device=DEV) * 0.2)
    mask = torch.ones(2, L, dtype=torch.int64, device=DEV)
    mask[0, 8:] = 0  # uncond (empty negative prompt): few tokens
    mask[1, 120:] = 0
    cond = {"encoder_hidden_states": enc.to(DT), "encoder_attention_mask": mask}
    for c in pix_cases:
        res = int(c[len("pixart"):])
        h = res // 32 if TINY else res // 8
        x = bf(torch.randn(2, 4, h, h, generator=g, device=DEV))
        x[1] = x[0]
        out, fin, sec, sec_loop = run_case(c, pix, sch, x, cond, 4.5, 3 if res <= 1024 else 2)
        save_file({"x": x.cpu(), "t": torch.tensor([500.0, 500.0]), "enc": enc.cpu(), "mask": mask.float().cpu(),
                   "out": out.cpu().contiguous(), "final": fin.cpu().contiguous(),
                   "seconds": torch.tensor([sec, sec_loop, float(STEPS)])}, R + f"/{c}_io.safetensors")
print("written under", R, flush=True)
