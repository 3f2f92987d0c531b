#!/usr/bin/env python3
"""bench_mmdit_diffusers.py - the diffusers side of bench/bench_mmdit.c, on the same weights and
inputs: FluxTransformer2DModel / SD3Transformer2DModel in bf16 with SDPA attention.

  python3 bench/bench_mmdit_diffusers.py --preset flux-dev --dir DIR --res 1024,2048 --steps 50,10 --save-io
  ./build/bench_mmdit --preset flux-dev --dir DIR --res 1024,2048 --steps 50,10 --cuda --check

Weights: when DIR/transformer holds no checkpoint, this script builds the model on --device from
the preset's config, fills every tensor of its state dict with dfa's random scheme (as
dfa_wtab_write_random: U(-1,1) / sqrt(fan_in) for matrices, 1 + 0.1 U for the q/k RMSNorm weights,
0.05 U for other vectors; values rounded to bf16) and saves config.json + one bf16 safetensors
file, which bench_mmdit then loads. Otherwise it loads that folder (e.g. written by bench_mmdit).
Per resolution: the median of --reps forwards after one warm-up; attention's share from one more
forward with every torch.nn.functional.scaled_dot_product_attention call timed (CUDA events); a
--steps N sampling loop (flow-matching Euler as the pipelines run it: FLUX-dev guidance 3.5 batch
1, SD3 CFG 7 on the batch [uncond, cond]). --save-io writes DIR/io_<res>.safetensors: the
forward's inputs (as the model saw them, in f32) and its output, for `bench_mmdit --check`; with
--f32-ref RES the model is then converted to f32 and its output at RES added (out_f32): the check
then compares dfa and diffusers' bf16 outputs with that f32 reference (bf16 noise level).
Prints `RESULT {json}` lines for bench/engines_table.py.
"""
import argparse
import json
import math
import os
import time

import torch

PRESETS = {
    "flux-dev": {"_class_name": "FluxTransformer2DModel", "in_channels": 64, "num_layers": 19,
                 "num_single_layers": 38, "attention_head_dim": 128, "num_attention_heads": 24,
                 "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True,
                 "axes_dims_rope": [16, 56, 56], "patch_size": 1},
    "flux-small": {"_class_name": "FluxTransformer2DModel", "in_channels": 64, "num_layers": 2,
                   "num_single_layers": 4, "attention_head_dim": 128, "num_attention_heads": 4,
                   "joint_attention_dim": 512, "pooled_projection_dim": 128, "guidance_embeds": True,
                   "axes_dims_rope": [16, 56, 56], "patch_size": 1},
    "sd3-medium": {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": 2,
                   "in_channels": 16, "num_layers": 24, "attention_head_dim": 64, "num_attention_heads": 24,
                   "joint_attention_dim": 4096, "caption_projection_dim": 1536, "pooled_projection_dim": 2048,
                   "out_channels": 16, "pos_embed_max_size": 192},
    "sd3-small": {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": 2,
                  "in_channels": 16, "num_layers": 3, "attention_head_dim": 64, "num_attention_heads": 4,
                  "joint_attention_dim": 512, "caption_projection_dim": 256, "pooled_projection_dim": 256,
                  "out_channels": 16, "pos_embed_max_size": 192},
}
QK_NORMS = ("norm_q.weight", "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight")


def log(msg):
    print(msg, flush=True)


def sync(dev):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def make_random(cls, cfg, tdir, dev, dt, seed=1):
    """Build the model on dev and fill it with dfa's random scheme; save config + bf16 weights."""
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)
    try:
        with torch.device(dev):
            model = cls.from_config(cfg)
    finally:
        torch.set_default_dtype(old)
    g = torch.Generator(device=dev).manual_seed(seed)
    sd = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, p in sd.items():
            u = torch.empty(p.shape, device=dev, dtype=torch.float32).uniform_(-1.0, 1.0, generator=g)
            if p.dim() >= 2:
                u *= 1.0 / math.sqrt(p.numel() / p.shape[0])
            elif name.endswith(QK_NORMS):
                u = 1.0 + 0.1 * u
            else:
                u *= 0.05
            p.copy_(u.to(torch.bfloat16))  # bf16 values whatever the model's dtype
    model = model.eval()
    sync(dev)
    t1 = time.perf_counter()
    os.makedirs(tdir, exist_ok=True)
    with open(os.path.join(tdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    cpu = {k: v.detach().to(torch.bfloat16).cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(cpu, os.path.join(tdir, "diffusion_pytorch_model.safetensors"))
    n = sum(v.numel() for v in cpu.values())
    del cpu
    log(f"random weights: {n / 1e9:.3f} G parameters, built in {t1 - t0:.1f} s, saved in "
        f"{time.perf_counter() - t1:.1f} s to {tdir}")
    return model


class SdpaTimer:
    """Times every torch.nn.functional.scaled_dot_product_attention call while active."""

    def __init__(self, dev):
        self.cuda = dev.startswith("cuda")
        self.orig = torch.nn.functional.scaled_dot_product_attention
        self.ev = []

    def __enter__(self):
        orig, ev, cuda = self.orig, self.ev, self.cuda

        def timed(*a, **k):
            if cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                o = orig(*a, **k)
                e.record()
                ev.append((s, e))
            else:
                t0 = time.perf_counter()
                o = orig(*a, **k)
                ev.append(time.perf_counter() - t0)
            return o

        torch.nn.functional.scaled_dot_product_attention = timed
        return self

    def __exit__(self, *exc):
        torch.nn.functional.scaled_dot_product_attention = self.orig

    def seconds(self):
        if self.cuda:
            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self.ev) / 1e3
        return sum(self.ev)


def flux_sigmas(n, n_img):
    """FluxPipeline: linspace(1, 1/n, n) shifted by mu(image seq len) (FLUX-dev dynamic shifting)."""
    base, mx, l0, l1 = 0.5, 1.15, 256, 4096
    mu = (mx - base) / (l1 - l0) * n_img + base - (mx - base) / (l1 - l0) * l0
    s = torch.linspace(1.0, 1.0 / n, n, dtype=torch.float64)
    s = math.exp(mu) / (math.exp(mu) + (1.0 / s - 1.0))
    return s.tolist() + [0.0]


def sd3_sigmas(n, shift=3.0):
    """FlowMatchEulerDiscreteScheduler (shift 3): sigmas from 1 to 1/1000, shifted."""
    s = torch.linspace(1.0, 1.0 / 1000, n, dtype=torch.float64)
    s = shift * s / (1 + (shift - 1) * s)
    return s.tolist() + [0.0]


def run_res(a, model, cfg, flux, res, steps):
    dev, dt = a.device, getattr(torch, a.dtype)
    txt = a.txt if a.txt > 0 else (512 if flux else 333)
    B = a.batch if a.batch > 0 else (1 if flux else 2)
    lat = res // 8
    g = torch.Generator(device="cpu").manual_seed(res)
    enc = torch.rand(B, txt, cfg["joint_attention_dim"], generator=g).mul_(2).sub_(1).to(dev, dt)
    pooled = (0.1 * (torch.arange(B * cfg["pooled_projection_dim"]) % 7)).reshape(B, -1).to(dev, dt)
    if flux:
        n_img = (lat // 2) ** 2
        x = torch.rand(B, n_img, cfg["in_channels"], generator=g).mul_(2).sub_(1).to(dev, dt)
        ids = torch.zeros(lat // 2, lat // 2, 3)
        ids[..., 1] += torch.arange(lat // 2)[:, None]
        ids[..., 2] += torch.arange(lat // 2)[None, :]
        img_ids, txt_ids = ids.reshape(-1, 3).to(dev), torch.zeros(txt, 3, device=dev)
        guid = cfg.get("guidance_embeds", False)

        def fwd(xx, tt):
            return model(hidden_states=xx, encoder_hidden_states=enc, pooled_projections=pooled,
                         timestep=tt, img_ids=img_ids, txt_ids=txt_ids,
                         guidance=torch.full([xx.shape[0]], 3.5, device=dev, dtype=dt) if guid else None,
                         return_dict=False)[0]

        ts = torch.full([B], 0.5, device=dev, dtype=dt)
    else:
        n_img = (lat // cfg["patch_size"]) ** 2
        x = torch.rand(B, cfg["in_channels"], lat, lat, generator=g).mul_(2).sub_(1).to(dev, dt)

        def fwd(xx, tt):
            return model(hidden_states=xx, encoder_hidden_states=enc, pooled_projections=pooled, timestep=tt,
                         return_dict=False)[0]

        ts = torch.full([B], 500.0, device=dev, dtype=dt)
    times = []
    with torch.no_grad():
        for k in range(a.reps + 1):
            sync(dev)
            t0 = time.perf_counter()
            y = fwd(x, ts)
            sync(dev)
            if k:
                times.append(time.perf_counter() - t0)
            elif a.save_io:
                from safetensors.torch import save_file

                f = lambda t: t.detach().float().cpu().contiguous()
                io = {"x": f(x), "enc": f(enc), "pooled": f(pooled), "timestep": f(ts), "out": f(y)}
                if flux and cfg.get("guidance_embeds", False):
                    io["guidance"] = torch.full([B], 3.5)
                path = os.path.join(a.dir, f"io_{res}.safetensors")
                save_file(io, path)
                log(f"saved inputs and output to {path}")
        times.sort()
        fwd_s = times[len(times) // 2]
        with SdpaTimer(dev) as st:
            sync(dev)
            t0 = time.perf_counter()
            fwd(x, ts)
            sync(dev)
            prof_s = time.perf_counter() - t0
        attn_s, n_calls = st.seconds(), len(st.ev)
        n_layers = cfg["num_layers"] + cfg.get("num_single_layers", 0)
        if n_calls != n_layers:
            log(f"WARNING: {n_calls} SDPA calls timed in one forward, expected {n_layers}")
        fwd_attn = attn_s / prof_s if n_calls else -1.0
        log(f"diffusers {a.preset} {res}x{res} px: {n_img} image + {txt} text tokens, batch {B}: forward "
            f"{1e3 * fwd_s:.1f} ms (median of {a.reps}); attention {100 * fwd_attn:.1f}% of a forward "
            f"({n_calls} SDPA calls, {1e3 * attn_s:.1f} of {1e3 * prof_s:.1f} ms, timed pass)")
        loop_s = 0.0
        if steps > 0:  # the sampling loop: transformer + Euler update (+ CFG for SD3)
            C = cfg["in_channels"]
            sig = flux_sigmas(steps, n_img) if flux else sd3_sigmas(steps)
            gen = torch.Generator(device="cpu").manual_seed(1)
            if flux:
                lx = torch.randn(1, n_img, C, generator=gen).to(dev)
            else:
                lx = torch.randn(1, C, lat, lat, generator=gen).to(dev)
            sync(dev)
            t0 = time.perf_counter()
            for i in range(steps):
                if flux:
                    v = fwd(lx.to(dt), torch.full([1], sig[i], device=dev, dtype=dt)).float()
                else:
                    vv = fwd(torch.cat([lx, lx]).to(dt), torch.full([2], 1000.0 * sig[i], device=dev, dtype=dt))
                    vu, vc = vv.float().chunk(2)
                    v = vu + 7.0 * (vc - vu)
                lx = lx + (sig[i + 1] - sig[i]) * v
            sync(dev)
            loop_s = time.perf_counter() - t0
            ok = bool(torch.isfinite(lx).all())
            log(f"diffusers {a.preset} {res}x{res} px: {steps}-step loop {loop_s:.2f} s = "
                f"{1e3 * loop_s / steps:.1f} ms/step{'' if ok else ' (NON-FINITE LATENTS)'}")
            log(f"diffusers {a.preset} {res}x{res} px: loop overhead {1e3 * (loop_s / steps - fwd_s):+.2f} ms/step "
                f"over the forward (loop ms/step - forward ms)")
    r = {"kind": "engine", "side": "diffusers", "model": a.preset, "res": res, "batch": B, "tokens": n_img + txt,
         "fwd_ms": 1e3 * fwd_s, "fwd_attn": fwd_attn, "sdpa_calls": n_calls, "steps": steps, "loop_s": loop_s,
         "loop_ms_step": 1e3 * loop_s / steps if steps > 0 else 0.0, "loop_attn": -1.0,
         "loop_over_ms": 1e3 * (loop_s / steps - fwd_s) if steps > 0 else 0.0}
    print("RESULT " + json.dumps(r), flush=True)


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def f32_reference(a, model, cfg, flux, res):
    """The bf16 noise level: the same model in f32 (no TF32) on the inputs saved in io_<res>; adds
    out_f32 to that file and prints rel L2 of diffusers' bf16 output against it. Converts the
    model block by block (empty_cache between) so that FLUX-dev fits beside its bf16 copy."""
    from safetensors.torch import load_file, save_file

    dev = a.device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    for m in model.children():
        for sm in (m if isinstance(m, torch.nn.ModuleList) else [m]):
            sm.float()
            if dev.startswith("cuda"):
                torch.cuda.empty_cache()
    model.float()
    path = os.path.join(a.dir, f"io_{res}.safetensors")
    io = load_file(path)
    d = {k: v.to(dev) for k, v in io.items()}
    lat = res // 8
    with torch.no_grad():
        if flux:
            ids = torch.zeros(lat // 2, lat // 2, 3)
            ids[..., 1] += torch.arange(lat // 2)[:, None]
            ids[..., 2] += torch.arange(lat // 2)[None, :]
            y = model(hidden_states=d["x"], encoder_hidden_states=d["enc"], pooled_projections=d["pooled"],
                      timestep=d["timestep"], img_ids=ids.reshape(-1, 3).to(dev),
                      txt_ids=torch.zeros(d["enc"].shape[1], 3, device=dev), guidance=d.get("guidance"),
                      return_dict=False)[0]
        else:
            y = model(hidden_states=d["x"], encoder_hidden_states=d["enc"], pooled_projections=d["pooled"],
                      timestep=d["timestep"], return_dict=False)[0]
    io["out_f32"] = y.float().cpu().contiguous()
    save_file(io, path)
    r = rel_l2(io["out"], io["out_f32"])
    log(f"diffusers {a.preset} {res}x{res} px: f32 reference forward (no TF32) in {time.perf_counter() - t0:.1f} s "
        f"with the conversion; diffusers bf16 vs f32: rel L2 {r:.3g}")
    print("RESULT " + json.dumps({"kind": "check_ref", "model": a.preset, "res": res, "rel_l2": r}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--dir", required=True)
    ap.add_argument("--res", default="1024")
    ap.add_argument("--steps", default="0", help="loop steps, one value or one per resolution")
    ap.add_argument("--txt", type=int, default=-1)
    ap.add_argument("--batch", type=int, default=-1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--layers", type=int, default=0, help="override num_layers (a real-width model, fewer blocks)")
    ap.add_argument("--single-layers", type=int, default=-1, help="FLUX: override num_single_layers")
    ap.add_argument("--save-io", action="store_true")
    ap.add_argument("--f32-ref", type=int, default=0, metavar="RES",
                    help="with --save-io: after the timings, convert the model to f32 and add its output at RES to "
                         "io_<RES> (the bf16 noise level for the check)")
    a = ap.parse_args()
    res = [int(r) for r in a.res.split(",")]
    steps = [int(s) for s in a.steps.split(",")]
    if len(steps) == 1:
        steps = steps * len(res)
    if len(steps) != len(res) or any(r % 16 for r in res):
        raise SystemExit("--steps: one value or one per resolution; --res: multiples of 16")
    import diffusers
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    log(f"torch {torch.__version__}, diffusers {diffusers.__version__}, device {a.device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if a.device.startswith('cuda') else ''}, SDPA backends: flash "
        f"{torch.backends.cuda.flash_sdp_enabled()}, cuDNN {torch.backends.cuda.cudnn_sdp_enabled()}, "
        f"mem-efficient {torch.backends.cuda.mem_efficient_sdp_enabled()}")

    cfg = dict(PRESETS[a.preset])
    if a.layers > 0:
        cfg["num_layers"] = a.layers
    if a.single_layers >= 0 and "num_single_layers" in cfg:
        cfg["num_single_layers"] = a.single_layers
    flux = cfg["_class_name"] == "FluxTransformer2DModel"
    cls = FluxTransformer2DModel if flux else SD3Transformer2DModel
    dt = getattr(torch, a.dtype)
    tdir = os.path.join(a.dir, "transformer")
    t0 = time.perf_counter()
    if os.path.exists(os.path.join(tdir, "diffusion_pytorch_model.safetensors")):
        cfg = json.load(open(os.path.join(tdir, "config.json")))
        model = cls.from_pretrained(a.dir, subfolder="transformer", torch_dtype=dt).to(a.device).eval()
        log(f"loaded {a.dir} in {time.perf_counter() - t0:.1f} s")
    else:
        model = make_random(cls, cfg, tdir, a.device, dt)
    for r, s in zip(res, steps):
        run_res(a, model, cfg, flux, r, s)
    if a.save_io and a.f32_ref in res and a.dtype != "float32":
        f32_reference(a, model, cfg, flux, a.f32_ref)


if __name__ == "__main__":
    main()
