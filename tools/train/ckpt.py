"""Checkpoint folder of one training stage (train.py --ckpt DIR).

  meta.json                  stage, preset config, hyper-parameters, step, data cursor, train time,
                             RNG states (base64), the list of weight shards, per-call history
  weights-NNNNN.safetensors  the trained modules' weights in bf16, keys "<module>.<param>",
                             shards of at most 15 MiB (the device returns files of <= 16 MiB)
  state.pt                   full state: fp32 weights + AdamW moments + step (stays where it was
                             written: too big to bring back from the device)
  log.csv, eval.csv          loss log (appended by every call), evaluation losses
  preview.png                samples (dit) / reconstructions (vae) at the end of the last call

Resume order: state.pt when its step equals meta.json's (exact resume), else the bf16 weights
("compact" resume: master weights from bf16, fresh AdamW moments, a short LR re-warm-up).
Writes are atomic (temporary name, then rename), meta.json last.
"""
import base64
import glob
import json
import os

import torch
from safetensors.torch import load_file, save_file

SHARD_BYTES = 15 * 1024 * 1024


def _atomic_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_meta(d):
    p = os.path.join(d, "meta.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def save_weights(d, modules):
    """modules: {name: nn.Module}. Returns the shard file names (written, old ones removed)."""
    tensors = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().to("cpu", torch.bfloat16).contiguous()
    shards, cur, size = [], {}, 0
    for k in sorted(tensors):
        n = tensors[k].numel() * 2
        if cur and size + n > SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = tensors[k]
        size += n
    if cur:
        shards.append(cur)
    names = []
    for i, sh in enumerate(shards):
        name = f"weights-{i:05d}.safetensors"
        save_file(sh, os.path.join(d, name + ".tmp"), metadata={"format": "pt"})
        names.append(name)
    for name in names:
        os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    for old in glob.glob(os.path.join(d, "weights-*.safetensors")):
        if os.path.basename(old) not in names:
            os.remove(old)
    return names


def load_weights(d, meta, modules, strict=True):
    """Load bf16 shards into modules (cast to each module's parameter dtype)."""
    tensors = {}
    for name in meta["weights"]:
        tensors.update(load_file(os.path.join(d, name)))
    for mname, m in modules.items():
        pre = mname + "."
        sd = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}
        if not sd and strict:
            raise SystemExit(f"{d}: no weights for module '{mname}' in {meta['weights']}")
        ref = m.state_dict()
        missing = set(ref) - set(sd)
        if missing and strict:
            raise SystemExit(f"{d}: module '{mname}' misses {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
        for k, v in sd.items():
            if k in ref and ref[k].shape != v.shape:
                raise SystemExit(f"{d}: {mname}.{k} has shape {tuple(v.shape)}, model wants {tuple(ref[k].shape)}")
        m.load_state_dict({k: v.to(ref[k].dtype) for k, v in sd.items()}, strict=strict)


def rng_pack(gen):
    return base64.b64encode(gen.get_state().numpy().tobytes()).decode()


def rng_unpack(gen, s):
    state = torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)
    gen.set_state(state)


def save(d, meta, modules, opt=None, full=True):
    """Write weights (+ state.pt if full) and then meta.json."""
    os.makedirs(d, exist_ok=True)
    meta["weights"] = save_weights(d, modules)
    if full and opt is not None:
        st = {"step": meta["step"], "modules": {n: m.state_dict() for n, m in modules.items()},
              "opt": opt.state_dict()}
        torch.save(st, os.path.join(d, "state.pt.tmp"))
        os.replace(os.path.join(d, "state.pt.tmp"), os.path.join(d, "state.pt"))
    elif os.path.exists(os.path.join(d, "state.pt")):
        os.remove(os.path.join(d, "state.pt"))
    _atomic_json(os.path.join(d, "meta.json"), meta)


def load(d, meta, modules, opt, device):
    """Restore weights (+ optimizer). Returns 'full' or 'compact'."""
    p = os.path.join(d, "state.pt")
    if os.path.exists(p):
        st = torch.load(p, map_location=device, weights_only=False)
        if st.get("step") == meta["step"]:
            for n, m in modules.items():
                m.load_state_dict(st["modules"][n])
            opt.load_state_dict(st["opt"])
            return "full"
        print(f"[ckpt] {p} is at step {st.get('step')}, meta.json at {meta['step']}: using the bf16 weights")
    load_weights(d, meta, modules)
    return "compact"


def append_csv(path, header, rows):
    new = not os.path.exists(path)
    with open(path, "a") as f:
        if new:
            f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
