"""Train dfa's own small FLUX-layout text-to-image model, resumably, in short calls.

  stage 1:  python3 tools/train/train.py --stage vae --ckpt tools/train/runs/vae --minutes 8.5
  stage 2:  python3 tools/train/train.py --stage dit --ckpt tools/train/runs/dit \\
                --vae tools/train/runs/vae --minutes 8.5 --budget-minutes 34

Each call resumes from --ckpt (created on the first call with --preset), trains until
--minutes of wall clock since the process started (less --reserve-s for evaluation and
saving), then saves (ckpt.py describes the folder). SIGTERM / SIGINT stop early and save.
The learning rate follows the stage's whole plan: warm-up, constant, then a linear decay to
10% over the last 30% of --budget-minutes of training time (or of --total-steps).

vae: AutoencoderKL on random crops of rendered scenes; loss L1 + MSE + 0.5 L1 of image
     gradients + kl_weight * KL (mean per latent element). At the end of every call it
     measures the latent mean / std on full images (shift_factor, scaling_factor for FLUX).
dit: rectified flow. x_t = (1 - t) x0 + t eps, the transformer predicts eps - x0 (FluxPipeline's
     convention, timestep t in [0, 1]); t = logit-normal(0, 1) pushed through FLUX's resolution
     shift (mu from the scheduler config, as FluxPipeline uses at sampling). Captions are
     dropped (replaced by "") with probability --cfg-drop for classifier-free guidance. The CLIP
     and T5 encoders are trained jointly. Latents come from a GPU pool refreshed by
     batch/--reuse newly rendered + encoded images per step (the VAE encoder at 512^2 costs
     about a third of a transformer training step per image).
"""
import time

T_START = time.time()

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import datetime  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402
import dataset  # noqa: E402
import models  # noqa: E402

STOP = {"flag": False}

DEFAULTS = {
    "vae": {"base": {"batch": 32, "lr": 2e-4, "crop": 256, "warmup": 300},
            "tiny": {"batch": 16, "lr": 1e-3, "crop": 64, "warmup": 20}},
    "dit": {"base": {"batch": 128, "lr": 3e-4, "warmup": 500, "reuse": 4, "pool": 16},
            "tiny": {"batch": 16, "lr": 1e-3, "warmup": 20, "reuse": 2, "pool": 8}},
}
COMMON = {"kl_weight": 1e-4, "cfg_drop": 0.1, "seed": 0, "restart_warmup": 100, "budget_minutes": None,
          "total_steps": None}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", required=True, choices=["vae", "dit"])
    ap.add_argument("--ckpt", required=True, help="checkpoint folder: created if absent, else resumed")
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock limit of this call")
    ap.add_argument("--preset", default="base", choices=sorted(models.PRESETS), help="only on creation")
    ap.add_argument("--vae", help="(dit) the VAE checkpoint folder; recorded on creation")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reserve-s", type=float, default=None, help="seconds kept for eval + save")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=0, help="steps; 0: only at the end of the call")
    ap.add_argument("--no-full-state", action="store_true", help="skip state.pt (weights only)")
    ap.add_argument("--no-preview", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the transformer / VAE")
    ap.add_argument("--workers", type=int, default=None, help="scene sampling processes (0: inline)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop this call after N steps (tests)")
    # hyper-parameters: fixed on creation (preset defaults), overridable later
    for k in ("batch", "crop", "reuse", "pool", "warmup", "restart_warmup", "total_steps"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    for k in ("lr", "kl_weight", "cfg_drop", "budget_minutes"):
        ap.add_argument("--" + k.replace("_", "-"), type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    return ap.parse_args()


def hparams(args, meta):
    """Hyper-parameters: meta's (resume) or defaults (creation), then explicit CLI overrides."""
    hp = dict(meta["hparams"]) if meta else {**COMMON, **DEFAULTS[args.stage][args.preset]}
    for k in list(COMMON) + list(DEFAULTS[args.stage][args.preset]):
        v = getattr(args, k, None)
        if v is not None and hp.get(k) != v:
            if meta:
                print(f"[train] override {k}: {hp.get(k)} -> {v}")
            hp[k] = v
    return hp


def lr_at(hp, step, train_s, restart_step):
    base = hp["lr"]
    warm = min(1.0, (step + 1) / max(1, hp["warmup"]))
    if restart_step is not None:   # compact resume: AdamW moments are new, warm up again
        warm = min(warm, (step - restart_step + 1) / max(1, hp["restart_warmup"]))
    if hp.get("total_steps"):
        prog = step / hp["total_steps"]
    elif hp.get("budget_minutes"):
        prog = train_s / (60.0 * hp["budget_minutes"])
    else:
        prog = 0.0
    decay = 1.0 if prog < 0.7 else max(0.1, 1.0 - 0.9 * (prog - 0.7) / 0.3)
    return base * warm * decay


class SceneStream(torch.utils.data.IterableDataset):
    """Chunks k = 0, 1, ... of n consecutive train scenes from `start`: packed render params and
    token ids. Worker w makes chunks k = w mod W; DataLoader returns them in order."""

    def __init__(self, seed, start, n, with_tokens, t5_len):
        self.seed, self.start, self.n, self.with_tokens, self.t5_len = seed, start, n, with_tokens, t5_len
        self.toks = None

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        if self.with_tokens and self.toks is None:
            self.toks = models.load_tokenizers()
        k = w
        while True:
            scenes = dataset.sample_scenes(self.seed, self.start + k * self.n, self.n, "train")
            out = {"params": dataset.scenes_to_params(scenes)}
            if self.with_tokens:
                out["clip"], out["t5"] = tokenize(self.toks, [s.caption for s in scenes], self.t5_len)
            yield out
            k += nw


def tokenize(toks, caps, t5_len):
    """Token ids exactly as FluxPipeline makes them (padding to max length, truncation)."""
    c = toks[0](caps, padding="max_length", max_length=toks[0].model_max_length, truncation=True,
                return_tensors="pt").input_ids
    t = toks[1](caps, padding="max_length", max_length=t5_len, truncation=True, return_tensors="pt").input_ids
    return c, t


def stream(hp, cursor, n, with_tokens, t5_len, workers):
    ds = SceneStream(hp["seed"], cursor, n, with_tokens, t5_len)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                     prefetch_factor=4 if workers else None, persistent_workers=False)
    return iter(dl)


def to_dev(params, dev):
    return {k: torch.as_tensor(v).to(dev, non_blocking=True) for k, v in params.items()}


def autocast(dev):
    return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast(
        "cpu", enabled=False)


def save_grid(imgs, path, ncol):
    dataset._save_grid(imgs.float().clamp(0, 1).cpu(), path, ncol)


# ------------------------------------------------------------------------------------------ VAE

def vae_loss(vae, x, hp, gen):
    post = vae.encode(x).latent_dist
    z = post.sample(generator=gen)
    rec = vae.decode(z).sample.float()
    x = x.float()
    l1 = (rec - x).abs().mean()
    mse = ((rec - x) ** 2).mean()
    gl = ((rec[..., 1:, :] - rec[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean() + \
         ((rec[..., 1:] - rec[..., :-1]) - (x[..., 1:] - x[..., :-1])).abs().mean()
    mean, logvar = post.mean.float(), post.logvar.float()
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).mean()
    loss = l1 + mse + 0.5 * gl + hp["kl_weight"] * kl
    return loss, {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach()}


@torch.no_grad()
def vae_finish(vae, cfg, hp, dev, d, meta):
    """Latent statistics, reconstruction eval on val scenes, preview."""
    vae.eval()
    size = cfg["image_size"]
    n, bs = (64, 8) if dev.type == "cuda" else (16, 8)
    zs, l1s, psnrs, shown = [], [], [], None
    for s in range(0, n, bs):
        imgs, _ = dataset.make_batch(hp["seed"], s, bs, size, "val", dev)
        x = imgs * 2 - 1
        with autocast(dev):
            post = vae.encode(x).latent_dist
            z = post.sample(generator=torch.Generator(dev).manual_seed(s))
            rec = vae.decode(post.mode()).sample.float().clamp(-1, 1)
        zs.append(z.float())
        err = ((rec + 1) / 2 - imgs)
        l1s.append(err.abs().mean().item())
        psnrs += [(-10 * torch.log10((e ** 2).mean().clamp(min=1e-10))).item() for e in err]
        if shown is None:
            shown = torch.cat([imgs[:4], (rec[:4] + 1) / 2])
    z = torch.cat(zs)
    meta["latent_shift"] = z.mean().item()
    meta["latent_scale"] = 1.0 / z.std().item()
    meta["latent_channel_std"] = [round(v, 4) for v in z.std(dim=(0, 2, 3)).tolist()]
    ckpt.append_csv(os.path.join(d, "eval.csv"), ["step", "split", "metric", "value"],
                    [[meta["step"], "val", "l1", f"{np.mean(l1s):.5f}"],
                     [meta["step"], "val", "psnr_db", f"{np.mean(psnrs):.3f}"]])
    print(f"[vae] val l1 {np.mean(l1s):.4f} psnr {np.mean(psnrs):.2f} dB; latent shift "
          f"{meta['latent_shift']:.4f} scale {meta['latent_scale']:.4f}")
    save_grid(shown, os.path.join(d, "preview.png"), 4)
    vae.train()


def run_vae(args, meta, hp, cfg, dev, deadline):
    d = args.ckpt
    vae = models.build_vae(cfg).to(dev)
    if dev.type == "cuda":
        vae = vae.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(vae.parameters(), lr=hp["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator(dev).manual_seed(hp["seed"] + 1)
    cgen = torch.Generator().manual_seed(hp["seed"] + 2)
    resume = "new"
    if meta.get("step", 0) > 0 or meta.get("weights"):
        resume = ckpt.load(d, meta, {"vae": vae}, opt, dev)
        restore_rng(meta, gen, cgen)
    step0 = meta["step"]
    restart = step0 if resume == "compact" else None
    if args.compile:   # encode / decode do not go through forward(): compile the halves
        vae.encoder.compile()
        vae.decoder.compile()
    size, crop, bsz = cfg["image_size"], hp["crop"], hp["batch"]
    it = stream(hp, meta["cursor"], bsz, False, 0, workers(args, dev))
    return train_loop(args, meta, hp, dev, deadline, opt, {"vae": vae}, resume, restart, it,
                      lambda chunk: vae_step(vae, chunk, size, crop, hp, gen, cgen, dev),
                      lambda: vae_finish(vae, cfg, hp, dev, d, meta), ["l1", "mse", "kl"], (gen, cgen))


def vae_step(vae, chunk, size, crop, hp, gen, cgen, dev):
    b = chunk["params"]["bg_kind"].shape[0]
    w = crop / size
    xy = torch.rand(b, 2, generator=cgen) * (1 - w)
    win = torch.cat([xy, xy + w], 1).numpy()
    x = dataset.render(to_dev(chunk["params"], dev), crop, dev, win) * 2 - 1
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(dev):
        return vae_loss(vae, x, hp, gen)


# ------------------------------------------------------------------------------------------ DiT

class DiT:
    """The trained modules, the frozen VAE, and the latent pool of one stage-2 run."""

    def __init__(self, cfg, hp, meta, dev, vae_dir):
        from diffusers.pipelines.flux.pipeline_flux import FluxPipeline, calculate_shift
        self.cfg, self.hp, self.dev = cfg, hp, dev
        self.transformer = models.init_transformer(models.build_transformer(cfg)).to(dev)
        self.clip = models.build_clip(cfg).to(dev)
        self.t5 = models.build_t5(cfg).to(dev)
        self.vae = models.build_vae(cfg, meta["latent_scale"], meta["latent_shift"]).to(dev).eval()
        vmeta = ckpt.read_meta(vae_dir)
        ckpt.load_weights(vae_dir, vmeta, {"vae": self.vae})
        self.vae.requires_grad_(False)
        self.toks = models.load_tokenizers()
        self.t5_len = cfg["t5_max_length"]
        self.empty = tokenize(self.toks, [""], self.t5_len)
        size = cfg["image_size"]
        self.lat = size // 8
        self.ntok = (self.lat // 2) ** 2
        self.mu = calculate_shift(self.ntok, models.SCHEDULER["base_image_seq_len"],
                                  models.SCHEDULER["max_image_seq_len"], models.SCHEDULER["base_shift"],
                                  models.SCHEDULER["max_shift"])
        self.img_ids = FluxPipeline._prepare_latent_image_ids(1, self.lat // 2, self.lat // 2, dev, torch.float32)
        self.txt_ids = torch.zeros(self.t5_len, 3, device=dev)
        self.pack = FluxPipeline._pack_latents
        self.gen = torch.Generator(dev).manual_seed(hp["seed"] + 11)
        self.cgen = torch.Generator().manual_seed(hp["seed"] + 12)
        self.pool_n = hp["batch"] * hp["pool"]
        self.pool = None

    def modules(self):
        return {"transformer": self.transformer, "text_encoder": self.clip, "text_encoder_2": self.t5}

    @torch.no_grad()
    def encode(self, params, size):
        x = dataset.render(to_dev(params, self.dev), size, self.dev) * 2 - 1
        with autocast(self.dev):
            z = self.vae.encode(x).latent_dist.sample(generator=self.gen)
        return ((z.float() - self.vae.config.shift_factor) * self.vae.config.scaling_factor).to(torch.bfloat16)

    def add(self, chunk):
        # an out-of-range id would be a device-side assert on the GPU, reported later by an
        # unrelated kernel (e.g. a cuBLAS call in backward): check on the CPU, where it is cheap
        for key, enc in (("clip", self.clip), ("t5", self.t5)):
            top, vocab = int(chunk[key].max()), enc.config.vocab_size
            if top >= vocab or int(chunk[key].min()) < 0:
                raise SystemExit(f"[dit] {key} token id {top} outside the encoder's vocabulary of {vocab}")
        z = self.encode(chunk["params"], self.cfg["image_size"])
        n = z.shape[0]
        if self.pool is None:
            self.pool = {"z": torch.empty(self.pool_n, *z.shape[1:], dtype=torch.bfloat16, device=self.dev),
                         "clip": torch.empty(self.pool_n, chunk["clip"].shape[1], dtype=torch.long, device=self.dev),
                         "t5": torch.empty(self.pool_n, self.t5_len, dtype=torch.long, device=self.dev),
                         "ptr": 0, "filled": 0}
        p = self.pool
        idx = (torch.arange(n) + p["ptr"]) % self.pool_n
        p["z"][idx.to(self.dev)] = z
        p["clip"][idx.to(self.dev)] = chunk["clip"].to(self.dev)
        p["t5"][idx.to(self.dev)] = chunk["t5"].to(self.dev)
        p["ptr"] = (p["ptr"] + n) % self.pool_n
        p["filled"] = min(self.pool_n, p["filled"] + n)

    def sample_t(self, u):
        return math.exp(self.mu) / (math.exp(self.mu) + (1 / u - 1))

    def loss(self, z, cids, tids, noise, t):
        b = z.shape[0]
        with autocast(self.dev):
            pooled = self.clip(input_ids=cids).pooler_output
            enc = self.t5(input_ids=tids).last_hidden_state
            x0 = self.pack(z.float(), b, models.LATENT_CHANNELS, self.lat, self.lat)
            eps = self.pack(noise, b, models.LATENT_CHANNELS, self.lat, self.lat)
            tt = t.view(b, 1, 1)
            xt = (1 - tt) * x0 + tt * eps
            pred = self.transformer(hidden_states=xt, timestep=t, pooled_projections=pooled,
                                    encoder_hidden_states=enc, txt_ids=self.txt_ids, img_ids=self.img_ids,
                                    return_dict=False)[0]
        return F.mse_loss(pred.float(), (eps - x0).float())

    def step(self, chunk):
        self.add(chunk)
        p, b = self.pool, self.hp["batch"]
        idx = torch.randint(p["filled"], (b,), generator=self.gen, device=self.dev)
        z, cids, tids = p["z"][idx], p["clip"][idx], p["t5"][idx]
        drop = torch.rand(b, generator=self.gen, device=self.dev) < self.hp["cfg_drop"]
        cids = torch.where(drop[:, None], self.empty[0].to(self.dev), cids)
        tids = torch.where(drop[:, None], self.empty[1].to(self.dev), tids)
        noise = torch.randn(z.shape, generator=self.gen, device=self.dev)
        u = torch.sigmoid(torch.randn(b, generator=self.gen, device=self.dev))
        t = self.sample_t(u.clamp(1e-5, 1 - 1e-5))
        self.last = (z, cids, tids, noise, t)
        return self.loss(z, cids, tids, noise, t), {}

    @torch.no_grad()
    def diagnose(self):
        """Which part of the last step's forward is non-finite (printed when a step is skipped)."""
        z, cids, tids, noise, t = self.last
        fin = lambda x: bool(torch.isfinite(x.float()).all())  # noqa: E731
        with autocast(self.dev):
            pooled = self.clip(input_ids=cids).pooler_output
            enc = self.t5(input_ids=tids).last_hidden_state
        loss = self.loss(z, cids, tids, noise, t)
        print(f"[dit] finite: latents {fin(z)} noise {fin(noise)} t {fin(t)} clip {fin(pooled)} t5 {fin(enc)} "
              f"loss {fin(loss)}; t range {float(t.min()):.4g}..{float(t.max()):.4g}", flush=True)

    @torch.no_grad()
    def evaluate(self, step, d):
        """Flow-matching loss on fixed scenes, noise and t, per split (train / val / heldout)."""
        for m in self.modules().values():
            m.eval()
        n = 64 if self.dev.type == "cuda" else 16
        rows = []
        for split, seed in (("train", 10_000), ("val", 0), ("heldout", 0)):
            scenes = dataset.sample_scenes(seed, 0, n, split)
            params = dataset.scenes_to_params(scenes)
            g = torch.Generator(self.dev).manual_seed(1234)
            x = dataset.render(to_dev(params, self.dev), self.cfg["image_size"], self.dev) * 2 - 1
            with autocast(self.dev):
                z = self.vae.encode(x).latent_dist.mode().float()
            z = (z - self.vae.config.shift_factor) * self.vae.config.scaling_factor
            cids, tids = tokenize(self.toks, [s.caption for s in scenes], self.t5_len)
            noise = torch.randn(z.shape, generator=g, device=self.dev)
            u = (torch.arange(n, device=self.dev, dtype=torch.float32) + 0.5) / n
            loss = self.loss(z, cids.to(self.dev), tids.to(self.dev), noise, self.sample_t(u)).item()
            rows.append([step, split, "fm_loss", f"{loss:.5f}"])
        ckpt.append_csv(os.path.join(d, "eval.csv"), ["step", "split", "metric", "value"], rows)
        print("[dit] eval " + "  ".join(f"{r[1]} {r[3]}" for r in rows))
        if not all(math.isfinite(float(r[3])) for r in rows):
            print("[dit] WARNING: non-finite eval loss", flush=True)
            STOP["nonfinite"] = True
        for m in self.modules().values():
            m.train()
        return {r[1]: float(r[3]) for r in rows}

    @torch.no_grad()
    def preview(self, path, steps=20, cfg_scale=4.0):
        pipe = self.pipeline()
        prompts = [s.caption for s in dataset.sample_scenes(0, 0, 4, "val")]
        prompts += [s.caption for s in dataset.sample_scenes(0, 0, 4, "heldout")]
        size = self.cfg["image_size"]
        with autocast(self.dev):
            out = pipe(prompts, negative_prompt=[""] * len(prompts), true_cfg_scale=cfg_scale, height=size,
                       width=size, num_inference_steps=steps, max_sequence_length=self.t5_len,
                       generator=torch.Generator(self.dev).manual_seed(0), output_type="pt").images
        save_grid(out, path, 4)
        print("[dit] preview prompts (row-major): " + " | ".join(prompts))
        for m in self.modules().values():
            m.train()

    def pipeline(self):
        from diffusers import FluxPipeline
        for m in self.modules().values():
            m.eval()
        pipe = FluxPipeline(scheduler=models.build_scheduler(), vae=self.vae, text_encoder=self.clip,
                            tokenizer=self.toks[0], text_encoder_2=self.t5, tokenizer_2=self.toks[1],
                            transformer=self.transformer)
        pipe.set_progress_bar_config(disable=True)
        return pipe


def run_dit(args, meta, hp, cfg, dev, deadline):
    d = args.ckpt
    dit = DiT(cfg, hp, meta, dev, meta["vae_dir"])
    params = [p for m in dit.modules().values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=hp["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    resume = "new"
    if meta.get("weights"):
        resume = ckpt.load(d, meta, dit.modules(), opt, dev)
        restore_rng(meta, dit.gen, dit.cgen)
    restart = meta["step"] if resume == "compact" else None
    if args.compile:
        dit.transformer.compile()
    n_new = max(1, hp["batch"] // hp["reuse"])
    it = stream(hp, meta["cursor"], n_new, True, dit.t5_len, workers(args, dev))
    # fill the pool before the first step (those scenes count in the cursor too)
    t0 = time.time()
    while dit.pool is None or dit.pool["filled"] < dit.pool_n:
        dit.add(next(it))
        meta["cursor"] += n_new
    print(f"[dit] pool of {dit.pool_n} latents filled in {time.time() - t0:.1f} s")

    def finish():
        dit.evaluate(meta["step"], d)
        if not args.no_preview:
            dit.preview(os.path.join(d, "preview.png"))

    return train_loop(args, meta, hp, dev, deadline, opt, dit.modules(), resume, restart, it,
                      dit.step, finish, [], (dit.gen, dit.cgen), eval_fn=lambda s: dit.evaluate(s, d),
                      diag_fn=dit.diagnose)


# ------------------------------------------------------------------------------------------ loop

def workers(args, dev):
    if args.workers is not None:
        return args.workers
    return min(6, max(0, (os.cpu_count() or 1) - 2)) if dev.type == "cuda" else 0


def restore_rng(meta, gen, cgen):
    r = meta.get("rng", {})
    try:
        if r.get("gen_device") == str(gen.device.type):
            ckpt.rng_unpack(gen, r["gen"])
        if "cgen" in r:
            ckpt.rng_unpack(cgen, r["cgen"])
    except (RuntimeError, ValueError) as e:
        print(f"[train] RNG state not restored ({e}); continuing with fresh generators")


def train_loop(args, meta, hp, dev, deadline, opt, modules, resume, restart, it, step_fn, finish, extra,
               gens, eval_fn=None, diag_fn=None):
    d = args.ckpt
    params = [p for m in modules.values() for p in m.parameters()]
    print(f"[train] {args.stage}: resume={resume} step={meta['step']} "
          f"params={sum(p.numel() for p in params) / 1e6:.2f}M device={dev} hp={hp}")
    call = {"start": now(), "resume": resume, "step0": meta["step"], "device": device_name(dev)}
    log_rows, acc, acc_extra, n_acc, t_log = [], 0.0, {k: 0.0 for k in extra}, 0, time.time()
    steps_this_call, samples0 = 0, meta["step"]
    skipped = 0
    t_train0 = time.time()
    train_s0 = meta["train_s"]
    while not STOP["flag"] and time.time() < deadline:
        if args.max_steps is not None and steps_this_call >= args.max_steps:
            break
        step = meta["step"]
        lr = lr_at(hp, step, meta["train_s"], restart)
        for g in opt.param_groups:
            g["lr"] = lr
        chunk = next(it)
        meta["cursor"] += chunk["params"]["bg_kind"].shape[0]
        loss, ex = step_fn(chunk)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        if not bool(torch.isfinite(gn)):   # one sync per step; a NaN step must never reach the weights
            skipped += 1
            bad = [n for mn, m in modules.items() for n, p in m.named_parameters()
                   if not bool(torch.isfinite(p).all())]
            print(f"[train] step {step}: loss {float(loss.detach()):.4g} grad norm {float(gn):.4g}: update skipped "
                  f"({skipped} so far; non-finite weights: {bad[:4] or 'none'})", flush=True)
            opt.zero_grad(set_to_none=True)
            if diag_fn and skipped <= 3:
                diag_fn()
            if skipped >= 20 or bad:
                print("[train] too many non-finite steps: stopping this call early", flush=True)
                STOP["nonfinite"] = True
                break
            continue
        opt.step()
        meta["step"] += 1
        steps_this_call += 1
        meta["train_s"] = train_s0 + (time.time() - t_train0)
        acc = acc + loss.detach().float()
        n_acc += 1
        for k in extra:
            acc_extra[k] = ex[k]
        if meta["step"] % args.log_every == 0:
            dt = time.time() - t_log
            sps = args.log_every * hp["batch"] / max(dt, 1e-9)
            mean = float(acc) / max(n_acc, 1)
            if not math.isfinite(mean):
                raise SystemExit(f"[train] loss is {mean} near step {meta['step']}: stopping without saving")
            row = [meta["step"], f"{meta['train_s']:.1f}", now(), f"{mean:.5f}", f"{lr:.3e}",
                   f"{float(gn):.3f}", f"{sps:.1f}"] + [f"{float(acc_extra[k]):.5f}" for k in extra]
            log_rows.append(row)
            print(f"[{args.stage}] step {row[0]} loss {row[3]} lr {row[4]} gnorm {row[5]} {row[6]} samples/s "
                  + " ".join(f"{k} {v}" for k, v in zip(extra, row[7:])), flush=True)
            acc, n_acc, t_log = 0.0, 0, time.time()
        if eval_fn and args.eval_every and meta["step"] % args.eval_every == 0:
            eval_fn(meta["step"])
    header = ["step", "train_s", "utc", "loss", "lr", "grad_norm", "samples_per_s"] + extra
    ckpt.append_csv(os.path.join(d, "log.csv"), header, log_rows)
    finish()
    call.update({"end": now(), "steps": steps_this_call, "step1": meta["step"],
                 "seconds": round(time.time() - T_START, 1), "samples": (meta["step"] - samples0) * hp["batch"]})
    meta.setdefault("calls", []).append(call)
    meta["rng"] = {"gen_device": gens[0].device.type, "gen": ckpt.rng_pack(gens[0]), "cgen": ckpt.rng_pack(gens[1])}
    ckpt.save(d, meta, modules, opt, full=not args.no_full_state)
    print(f"[train] saved {d} at step {meta['step']} ({steps_this_call} steps this call, "
          f"{time.time() - T_START:.1f} s wall)")


def device_name(dev):
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}"


def main():
    args = parse()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        # The T5 encoder hands its trainable relative-position bias, shape (1, heads, L, L) and
        # broadcast over the batch, to SDPA as an additive float mask. On the device (torch 2.11,
        # H100) that goes to the memory-efficient / cuDNN kernels, whose backward with a bias
        # that needs a gradient is fragile (cf. pytorch/pytorch#148476). Prime suspect (unproven)
        # of the first device DiT call dying in its first backward with
        # CUBLAS_STATUS_EXECUTION_FAILED and of the tiny smoke DiT silently training to NaN
        # (tools/train/RUNS.md). Masked attention (T5, CLIP: L <= 77) now takes the math
        # kernel; the transformer's unmasked attention still takes flash.
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_cudnn_sdp(False)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: STOP.__setitem__("flag", True))
    meta = ckpt.read_meta(args.ckpt)
    if meta and meta["stage"] != args.stage:
        raise SystemExit(f"{args.ckpt} holds stage '{meta['stage']}', not '{args.stage}'")
    hp = hparams(args, meta)
    if meta is None:
        cfg = models.preset(args.preset)
        meta = {"stage": args.stage, "preset": args.preset, "config": cfg, "hparams": hp, "step": 0,
                "cursor": 0, "train_s": 0.0, "created": now(), "weights": []}
        if args.stage == "dit":
            if not args.vae:
                raise SystemExit("--vae DIR is required to create a dit checkpoint")
            vmeta = ckpt.read_meta(args.vae)
            if vmeta is None or vmeta["stage"] != "vae" or "latent_scale" not in vmeta:
                raise SystemExit(f"{args.vae}: not a trained vae checkpoint (meta.json with latent_scale)")
            if vmeta["config"]["vae"] != cfg["vae"] or vmeta["config"]["image_size"] != cfg["image_size"]:
                raise SystemExit(f"{args.vae} was trained with preset '{vmeta['preset']}', not '{args.preset}'")
            meta.update({"vae_dir": args.vae, "vae_step": vmeta["step"], "latent_shift": vmeta["latent_shift"],
                         "latent_scale": vmeta["latent_scale"]})
            meta["tokenizers_sha"] = tokenizer_sha()
        os.makedirs(args.ckpt, exist_ok=True)
    else:
        meta["hparams"] = hp
        if args.stage == "dit":
            if args.vae:
                meta["vae_dir"] = args.vae
            vmeta = ckpt.read_meta(meta["vae_dir"])
            if vmeta is None or vmeta["step"] != meta["vae_step"]:
                raise SystemExit(f"{meta['vae_dir']}: the VAE this dit run was started with (step "
                                 f"{meta['vae_step']}) is not there (found step {vmeta and vmeta['step']})")
            if meta.get("tokenizers_sha") != tokenizer_sha():
                raise SystemExit("tools/train/tokenizers changed since this dit run was created")
    cfg = meta["config"]
    reserve = args.reserve_s
    if reserve is None:
        reserve = {"cuda": 45.0}.get(dev.type, 20.0)
    deadline = T_START + 60.0 * args.minutes - reserve
    torch.manual_seed(hp["seed"])
    (run_vae if args.stage == "vae" else run_dit)(args, meta, hp, cfg, dev, deadline)
    if STOP.get("nonfinite"):
        raise SystemExit("[train] stopped on non-finite gradients (weights saved are the last finite ones)")


def tokenizer_sha():
    import hashlib
    h = hashlib.sha256()
    for sub in ("tokenizer", "tokenizer_2"):
        with open(os.path.join(models.TOKENIZERS, sub, "tokenizer.json"), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


if __name__ == "__main__":
    main()
