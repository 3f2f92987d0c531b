# Interleaved benchmark of our attention kernel against cuDNN SDPA and FlexAttention: ONE process,
# the SAME tensors, the launches of the two (or three) sides alternating round by round, so that
# clock / thermal drift hits both sides alike (issue 4's bars "side by side in one run").
#
# Per pair and round: L2 flushed (a 256 MB buffer written) before EVERY launch, each launch timed
# alone by CUDA events, the order of the sides rotated every round (all permutations in turn);
# rounds are queued without a host sync (a GPU spin first gives the host its lead) and read back in
# chunks, 30..100 rounds bounded by a time budget per pair. Reported per pair: each side's median
# ms (TF/s), and the median and 10-90 % range of the PER-ROUND ratios, which is what the bars use.
#   dense  (all 24 heads FULL): ours (default variant 0) vs cuDNN SDPA; bar: cuDNN ms / ours ms >= 1
#   arrow  (all heads ARROW(w), r ~ 25/50/75 %): ours vs FlexAttention with the same block mask, and
#          ours dense in the same rounds; bars: t / (own dense x (1 - r)) <= 1.1, Flex / ours >= 1.3
#   mixed  (bench_attn_gpu's V2-like plan: 6 FULL, 9 ARROW w=1/3/8, 3 ARROW_RS w=2, 6 CACHE; GPU
#          only): ours vs ours dense and a CACHE-only plan in the same rounds; bar: ours / (dense x
#          computed entries + copy) within 5 %
# Before timing a pair its outputs are compared (ours poisoned with NaN first): rel. L2 < 1e-2, all
# finite, else the pair is FAIL and not timed.
# Layouts: ours reads q, k, v [B, N, H, D] contiguous (its only layout). cuDNN gets the faster of
# (a) the transposed VIEW of our tensors ([B, H, N, D] shape, BSHD strides) and (b) a contiguous
# [B, H, N, D] copy, chosen per shape by a short interleaved probe (both are reported). Flex gets the
# contiguous [B, H, N, D] copy (its usual layout; another stride order would be another compile).
#
# usage: python3 bench/attn_interleave.py --shim build-shim/libdfa_attn_shim.so [--budget S]
#            [--out JSON] [--windows attn_gpu.json] [--shapes 128x4096,64x16384] [--rounds-max N]
#            [--variant V] [--alt-variant V2]
#        python3 bench/attn_interleave.py --selftest --shim libdfa_attn_shim_cpu.so   (CPU, no GPU)
#        python3 bench/attn_interleave.py --table JSON        (print the table of a finished run)
# --variant V (env DFA_INTERLEAVE_VARIANT; default 0, the default variant): the variant "ours" runs.
# --alt-variant V2 (env DFA_INTERLEAVE_ALT; default none): a second plan of ours, variant V2, timed as
# a further side ("alt") in the same rounds of every dense pair (after its own check against cuDNN),
# every arrow pair (checked against Flex) and every mixed plan (checked per head group like ours;
# session 6: a change that only mixed plans' residual heads saw would otherwise go unnoticed);
# reported: alt ms and ours ms / alt ms per round (> 1: V2 faster), for dense also cuDNN ms / alt ms,
# for mixed also alt ms / prediction.
# bench/attn_interleave.sh builds the shim and runs this.
import argparse, ctypes, itertools, json, math, os, subprocess, sys, time

H, B, NT, BLOCK, TEXT_FIRST, BAND_ARROW = 24, 1, 512, 128, 1, 0
SHAPES = [(128, 4096), (128, 16384), (64, 4096), (64, 16384)]  # (D, visual tokens)
TARGETS = (0.25, 0.5, 0.75)
FULL, ARROW, ARROW_RS, CACHE, NONE = 0, 1, 2, 3, -1  # dfa_attn_method, DFA_ATTN_CUDA_NONE
# the mixed V2-like plan of bench_attn_gpu.cu: 6 FULL, 9 ARROW w=1/3/8, 3 ARROW_RS w=2, 6 CACHE;
# head h takes entry (h * 7) % 24, so that costs are not grouped by head index
MIX_M = [FULL] * 6 + [ARROW] * 9 + [ARROW_RS] * 3 + [CACHE] * 6
MIX_W = [-1] * 6 + [1, 1, 1, 3, 3, 3, 8, 8, 8] + [2, 2, 2] + [0] * 6
REL_TOL = 1e-2
FLUSH_BYTES = 256 << 20


# ---- mask.h semantics (ARROW band) in Python: the flex mask and the window rule -----------------
def n_tiles(n, block):
    return (n + block - 1) // block


def mask_entries(nv, nt, block, w):
    """dfa_mask_entries (ARROW band): exact (query, key) entries computed for one head."""
    n = nv + nt
    if w < 0:
        return n * n
    e = nt * n + nv * nt
    nvt = n_tiles(nv, block)
    for i in range(nvt):
        rows = nv - i * block if i == nvt - 1 else block
        j0, j1 = max(i - w, 0), min(i + w, nvt - 1)
        e += rows * (min((j1 + 1) * block, nv) - j0 * block)
    return e


def full_window(nv, block):
    return max(n_tiles(nv, block) - 1, 0)


def choose_window(nv, nt, block, target, entries=mask_entries):
    """bench_attn_gpu.cu choose_window: the w in [0, full] whose block sparsity 1 - entries/N^2 is
    nearest the target (the first such w)."""
    n2 = float(nv + nt) ** 2
    best, bd, sp = 0, 1e9, 0.0
    for w in range(full_window(nv, block) + 1):
        s = 1.0 - entries(nv, nt, block, w) / n2
        if abs(s - target) < bd:
            bd, best, sp = abs(s - target), w, s
    return best, sp


def arrow_mask_mod(nv, nt, text_first, block, w, w_tensor=None):
    """dfa_mask_keep(layout, w, q, k) as a FlexAttention mask_mod (tensor ops only): a visual query
    in visual tile i sees visual keys in tiles |i - j| <= w, and every text key; text rows are full.
    Generalises bench/attn_baselines.py's text-first lambda to text last. w_tensor: w as a 0-d
    tensor captured instead of the int, so that one torch.compile of flex serves every window of a
    shape (an int is a constant of the compiled graph: one recompile per window)."""
    vs = nt if text_first else 0
    wb = w if w_tensor is None else w_tensor

    def mod(b, h, q, k):
        qv = (q >= vs) & (q < vs + nv)
        kv = (k >= vs) & (k < vs + nv)
        band = ((q - vs) // block - (k - vs) // block).abs() <= wb
        if w < 0:
            return qv | ~qv
        return ~qv | ~kv | band
    return mod


def flex_block_mask(nv, nt, text_first, block, w, device, captured=True):
    """captured: w as a captured 0-d tensor (one compile for all windows), else as an int (the
    window is a constant of the graph, as in bench/attn_baselines.py)."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask
    n = nv + nt
    wt = torch.tensor(w, dtype=torch.int32, device=device) if captured else None
    return create_block_mask(arrow_mask_mod(nv, nt, text_first, block, w, wt), None, None, n, n, device=device,
                             BLOCK_SIZE=block)


# ---- the shim (bench/attn_shim.c) ----------------------------------------------------------------
class Shim:
    def __init__(self, path, gpu):
        self.lib = L = ctypes.CDLL(os.path.abspath(path))
        I, P, C, I64 = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64
        L.shim_version.restype = I
        if L.shim_version() != 2:
            raise RuntimeError(f"{path}: shim interface {L.shim_version()}, this script wants 2")
        L.shim_mask_keep.argtypes = [I, I, I, I, I, I, P, I64, C, I]
        L.shim_mask_info.argtypes = [I, I, I, I, I, I, ctypes.POINTER(I64), C, I]
        if gpu:
            L.shim_plan.argtypes = [I, I, I, I, I, I, I, ctypes.POINTER(I), ctypes.POINTER(I), P, ctypes.POINTER(P), C, I]
            L.shim_run.argtypes = [P, I, I, I, P, P, P, P, P, P, P, C, I]
            L.shim_plan_info.argtypes = [P, ctypes.POINTER(I64)]
            L.shim_free.argtypes = [P]
            L.shim_free.restype = None
            L.shim_variant_ok.argtypes = [I]
        self.msg = ctypes.create_string_buffer(1024)

    def _ok(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: status {rc}: {self.msg.value.decode(errors='replace')}")

    def mask_keep(self, nv, nt, text_first, block, w):
        n = nv + nt
        buf = (ctypes.c_ubyte * (n * n))()
        self._ok(self.lib.shim_mask_keep(nv, nt, text_first, block, BAND_ARROW, w, buf, n * n, self.msg, 1024),
                 "shim_mask_keep")
        return bytes(buf)

    def mask_info(self, nv, nt, text_first, block, w):
        out = (ctypes.c_int64 * 3)()
        self._ok(self.lib.shim_mask_info(nv, nt, text_first, block, BAND_ARROW, w, out, self.msg, 1024),
                 "shim_mask_info")
        return {"entries": out[0], "full_window": out[1], "tiles": out[2]}

    def plan(self, nv, nt, methods, windows, stream, variant=0):
        n = len(methods)
        m, w, p = (ctypes.c_int * n)(*methods), (ctypes.c_int * n)(*windows), ctypes.c_void_p()
        self._ok(self.lib.shim_plan(variant, nv, nt, TEXT_FIRST, BLOCK, BAND_ARROW, n, m, w, stream, ctypes.byref(p),
                                    self.msg, 1024), "shim_plan")
        out = (ctypes.c_int64 * 6)()
        self.lib.shim_plan_info(p, out)
        keys = ("n_items", "n_copy_items", "variant", "computed_entries", "mask_entries", "copied_tokens")
        return p, dict(zip(keys, list(out)))

    def run(self, plan, D, q, k, v, out, stream, cache=None, resid=None):
        self._ok(self.lib.shim_run(plan, 0, D, q.shape[0], q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                   None if cache is None else cache.data_ptr(),
                                   None if resid is None else resid.data_ptr(), stream, self.msg, 1024), "shim_run")

    def free(self, plan):
        self.lib.shim_free(plan)

    def variant_ok(self, variant):
        return self.lib.shim_variant_ok(variant)


class DryShim:
    """--dry-cpu: our kernel replaced by SDPA (math, CPU) with dfa_mask_keep's mask (the Python
    predicate, which --selftest checks against mask.c): runs every line of run_gpu but CUDA."""
    def mask_info(self, nv, nt, text_first, block, w):
        return {"entries": mask_entries(nv, nt, block, w), "full_window": full_window(nv, block),
                "tiles": n_tiles(nv, block) + n_tiles(nt, block)}

    def variant_ok(self, variant):
        return 0

    def plan(self, nv, nt, methods, windows, stream, variant=0):
        w = windows[0] if methods[0] == ARROW else -1
        return (nv, nt, w), {"n_items": 0, "variant": -1, "mask_entries": len(methods) * mask_entries(nv, nt, BLOCK, w)}

    def run(self, plan, D, q, k, v, out, stream):
        import torch
        import torch.nn.functional as F
        nv, nt, w = plan
        i = torch.arange(nv + nt)
        m = arrow_mask_mod(nv, nt, TEXT_FIRST, BLOCK, w)(None, None, i.view(-1, 1), i.view(1, -1))
        out.copy_(F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), attn_mask=m).transpose(1, 2))

    def free(self, plan):
        pass


class CpuEvent:
    def __init__(self, enable_timing=True):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, other):
        return 1e3 * (other.t - self.t)


# ---- statistics, environment ---------------------------------------------------------------------
def pct(xs, p):
    s = sorted(xs)
    if not s:
        return float("nan")
    x = (len(s) - 1) * p
    i = int(math.floor(x))
    return s[i] if i + 1 >= len(s) else s[i] + (s[i + 1] - s[i]) * (x - i)


def summary(xs):
    return {"median": pct(xs, 0.5), "p10": pct(xs, 0.1), "p90": pct(xs, 0.9), "n": len(xs)}


def smi():
    q = "name,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw,pstate"
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=20)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except Exception as e:  # no nvidia-smi: say so in the JSON
        return f"nvidia-smi failed: {type(e).__name__}: {e}"


def rel(a, b):
    import torch
    a, b = a.float(), b.float()
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


# ---- the interleaved timing ----------------------------------------------------------------------
def interleave(sides, flush, budget_s, rounds_min, rounds_max, chunk=10, dry=False):
    """sides: {name: fn() launching one op on the current stream}. Returns ({name: [ms per round]},
    rounds, wall seconds, min host slack ms). Every round: for each side in a rotating order (all
    permutations in turn), flush L2, event, launch, event. Chunks of rounds are queued without a
    sync; a GPU spin at each chunk's start lets the host get ahead, so that a side's host overhead
    (Python dispatch, torch.compile guards) stays outside its events. Host slack of a launch = GPU
    time at its start event - host time when it was queued (both from the chunk's first event);
    negative: the GPU waited for the host inside that launch's events."""
    import torch
    Event = CpuEvent if dry else torch.cuda.Event
    names = list(sides)
    orders = list(itertools.permutations(names))
    times = {n: [] for n in names}
    t0, r, slack = time.time(), 0, float("inf")
    while r < rounds_max and (r < rounds_min or time.time() - t0 < budget_s):
        n_r = min(chunk, rounds_max - r)
        ev = []
        e_pre = Event(enable_timing=True)
        e_pre.record()
        h_pre = time.perf_counter()
        try:
            if not dry:
                torch.cuda._sleep(20_000_000)  # ~10 ms at 2 GHz
        except Exception:
            pass
        for i in range(n_r):
            for name in orders[(r + i) % len(orders)]:
                flush.fill_((r + i) & 0xff)
                e0, e1 = Event(enable_timing=True), Event(enable_timing=True)
                e0.record()
                sides[name]()
                h = time.perf_counter() - h_pre
                e1.record()
                ev.append((name, e0, e1, h))
        if not dry:
            torch.cuda.synchronize()
        for name, e0, e1, h in ev:
            times[name].append(e0.elapsed_time(e1))
            slack = min(slack, e_pre.elapsed_time(e0) - 1e3 * h)
        r += n_r
    return times, r, time.time() - t0, slack


def failure(ex):
    """A failed check or timing as the JSON records it."""
    return f"{type(ex).__name__}: {str(ex)[:200]}"


def timing_failed(rec, ex, tag):
    """A side failed while timed: the pair is FAIL (its timings dropped), the run goes on."""
    rec["check"].update(ok=False, timing_error=failure(ex))
    for key in ("ms", "bar"):
        rec.pop(key, None)
    print(f"{tag} {rec['kind']} timing failed: {rec['check']['timing_error']}", flush=True)


def per_round_ratio(num, den, scale=1.0):
    return [a / (b * scale) for a, b in zip(num, den)]


def mixed_pair(shim, flex, flush, args, stream, D, NV, q, k, v, qt, kt, vt, qc, kc, vc, out, run_dense, backend, tag):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel
    N = NV + NT
    mm = [MIX_M[(h * 7) % 24] for h in range(H)]
    mw = [MIX_W[(h * 7) % 24] for h in range(H)]
    rec = {"kind": "mixed", "D": D, "NV": NV, "NT": NT, "H": H, "B": B, "methods": mm, "windows": mw}
    g = torch.Generator(device=q.device).manual_seed(7 + D + NV)
    cache = torch.randn(q.shape, device=q.device, dtype=q.dtype, generator=g)
    resid = 0.1 * torch.randn(q.shape, device=q.device, dtype=q.dtype, generator=g)
    out_c = torch.empty_like(q)
    pm = pc = pm_alt = None
    try:
        pm, rec["plan"] = shim.plan(NV, NT, mm, mw, stream, args.variant)
        pc, rec["plan_copy"] = shim.plan(NV, NT, [CACHE if m == CACHE else NONE for m in mm], [-1] * H, stream,
                                         args.variant)
        run_mixed = lambda: shim.run(pm, D, q, k, v, out, stream, cache, resid)
        run_copy = lambda: shim.run(pc, D, q, k, v, out_c, stream, cache, resid)
        out.fill_(float("nan"))
        run_mixed()
        # reference per head: FULL = cuDNN SDPA, ARROW(w) = Flex with our block mask, ARROW_RS =
        # that + the residual, CACHE = the cache slice (bit-equal)
        with sdpa_kernel([backend]):
            full = F.scaled_dot_product_attention(qt, kt, vt).transpose(1, 2)
        ref = torch.empty_like(q)
        for h in range(H):
            if mm[h] == FULL:
                ref[:, :, h] = full[:, :, h]
            elif mm[h] == CACHE:
                ref[:, :, h] = cache[:, :, h]
        for w in sorted({mw[h] for h in range(H) if mm[h] in (ARROW, ARROW_RS)}):
            o_w = flex(qc, kc, vc, block_mask=flex_block_mask(NV, NT, TEXT_FIRST, BLOCK, w, q.device)).transpose(1, 2)
            for h in range(H):
                if mw[h] == w and mm[h] == ARROW:
                    ref[:, :, h] = o_w[:, :, h]
                elif mw[h] == w and mm[h] == ARROW_RS:
                    ref[:, :, h] = (o_w[:, :, h].float() + resid[:, :, h].float()).to(q.dtype)
        torch.cuda.synchronize()

        def check(o, chk):  # per head group against ref; CACHE heads bit-equal
            chk["nonfinite"] = int((~torch.isfinite(o)).sum().item())
            for name, m in (("full", FULL), ("arrow", ARROW), ("arrow_rs", ARROW_RS)):
                hs = [h for h in range(H) if mm[h] == m]
                chk["rel_" + name] = rel(o[:, :, hs], ref[:, :, hs])
            hs = [h for h in range(H) if mm[h] == CACHE]
            chk["cache_bit_equal"] = bool(torch.equal(o[:, :, hs], cache[:, :, hs]))
            chk["ok"] = chk["nonfinite"] == 0 and chk["cache_bit_equal"] and all(
                chk["rel_" + n] < REL_TOL for n in ("full", "arrow", "arrow_rs"))
            return chk

        chk = rec["check"] = check(out, {})
        if args.alt_variant is not None and chk["ok"]:  # the alt variant on the same plan, same check
            try:
                pm_alt, rec["plan_alt"] = shim.plan(NV, NT, mm, mw, stream, args.alt_variant)
                out_alt = torch.empty_like(q)
                out_alt.fill_(float("nan"))
                run_alt = lambda: shim.run(pm_alt, D, q, k, v, out_alt, stream, cache, resid)
                run_alt()
                torch.cuda.synchronize()
                ca = check(out_alt, {"variant": args.alt_variant})
            except Exception as ex:
                ca = {"variant": args.alt_variant, "ok": False, "error": failure(ex)}
            rec["check_alt"] = ca
            print(f"{tag} mixed check, alt variant {args.alt_variant}: {ca}", flush=True)
        del full, ref, o_w
    except Exception as ex:
        rec["check"] = {"ok": False, "error": failure(ex)}
    print(f"{tag} mixed check: {rec['check']}", flush=True)
    if rec["check"]["ok"]:
        try:
            sides = {"ours": run_mixed, "ours_dense": run_dense, "copy": run_copy}
            if rec.get("check_alt", {}).get("ok"):
                sides["alt"] = run_alt
            for _ in range(3):
                for fn in sides.values():
                    fn()
            t, rounds, wall, slack = interleave(sides, flush, args.budget, args.rounds_min, args.rounds_max)
            frac = rec["plan"]["mask_entries"] / (float(N) * N * H)
            pred = [d * frac + c for d, c in zip(t["ours_dense"], t["copy"])]
            rec.update(rounds=rounds, wall_s=wall, min_host_slack_ms=slack, entry_frac=frac,
                       ms={n: summary(x) for n, x in t.items()}, pred_ms=summary(pred),
                       ratio_to_pred=summary(per_round_ratio(t["ours"], pred)))
            rp = rec["ratio_to_pred"]
            rec["bar"] = {"what": "t within 5 % of dense x entries + copy (same rounds)",
                          "met": 0.95 <= rp["median"] <= 1.05}
            print(f"{tag} mixed: ours {rec['ms']['ours']['median']:.3f} ms, predicted {rec['pred_ms']['median']:.3f} "
                  f"(dense {rec['ms']['ours_dense']['median']:.3f} x {100 * frac:.1f} % + copy "
                  f"{rec['ms']['copy']['median']:.3f}), ratio {fmt_range(rp)}, {rounds} rounds", flush=True)
            if "alt" in t:
                rec["ratio_ours_over_alt"] = summary(per_round_ratio(t["ours"], t["alt"]))
                rec["alt_ratio_to_pred"] = summary(per_round_ratio(t["alt"], pred))
                print(f"{tag} mixed alt v{args.alt_variant}: {rec['ms']['alt']['median']:.3f} ms, ours/alt "
                      f"{fmt_range(rec['ratio_ours_over_alt'])}, alt/pred {fmt_range(rec['alt_ratio_to_pred'])}",
                      flush=True)
        except Exception as ex:
            timing_failed(rec, ex, tag)
    for p_ in (pm, pc, pm_alt):
        if p_ is not None:
            shim.free(p_)
    return rec


def run_gpu(args):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel, SDPBackend
    from torch.nn.attention.flex_attention import flex_attention
    import torch._dynamo
    torch._dynamo.config.cache_size_limit = 256
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 256
    dry = args.dry_cpu
    dev, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.bfloat16)
    backend = SDPBackend.MATH if dry else SDPBackend.CUDNN_ATTENTION
    shim = DryShim() if dry else Shim(args.shim, gpu=True)
    env = {"gpu": "CPU DRY RUN (not a measurement)" if dry else torch.cuda.get_device_name(),
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "smi_before": smi(), "variant5_ok": shim.variant_ok(5),
           "variant": args.variant, "alt_variant": args.alt_variant,
           "budget_s_per_pair": args.budget, "rounds": [args.rounds_min, args.rounds_max],
           "ours_layout": "[B, N, H, D] contiguous", "flex_layout": "[B, H, N, D] contiguous copy"}
    print(f"{env['gpu']}  torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']})  {env['smi_before']}",
          flush=True)
    gw = {}  # windows from bench_attn_gpu's JSON: (D, NV, target) -> w
    if args.windows and os.path.exists(args.windows):
        for line in open(args.windows):
            r = json.loads(line)
            if r.get("kind") == "arrow":
                gw[(r["D"], r["NV"], round(r["target"], 2))] = r["window"]
    env["windows_from"] = args.windows if gw else "choose_window rule (bench_attn_gpu.cu)"
    # fullgraph: a graph break raises instead of running flex eagerly (slow) under our timers
    flex = torch.compile(flex_attention, dynamic=False, fullgraph=True)
    env["flex_compile"] = "fullgraph"
    flush = torch.empty(FLUSH_BYTES if not dry else 1 << 20, dtype=torch.uint8, device=dev)
    stream = None if dry else ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    pairs = []
    shapes = SHAPES if not args.shapes else [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
    for D, NV in shapes:
        N = NV + NT
        g = torch.Generator(device=dev).manual_seed(1000 + D + NV)
        q, k, v = (torch.randn(B, N, H, D, device=dev, dtype=dtype, generator=g) for _ in range(3))
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))           # views: [B, H, N, D] shape
        qc, kc, vc = (x.contiguous() for x in (qt, kt, vt))           # copies: [B, H, N, D] contiguous
        out = torch.empty_like(q)
        dense_flops = 4.0 * N * N * D * H * B
        tag = f"D={D} N={NV}+{NT}"

        def cudnn(a, b_, c):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(a, b_, c)
        # our dense plan (default variant) and its check against cuDNN
        pd = pd_alt = None
        run_dense = lambda: shim.run(pd, D, q, k, v, out, stream)
        rec = {"kind": "dense", "D": D, "NV": NV, "NT": NT, "H": H, "B": B}
        try:
            pd, rec["plan"] = shim.plan(NV, NT, [FULL] * H, [-1] * H, stream, args.variant)
            out.fill_(float("nan"))
            run_dense()
            ref = cudnn(qc, kc, vc).transpose(1, 2)
            e = rel(out, ref)
            nf = int((~torch.isfinite(out)).sum().item())
            rec["check"] = {"rel_vs_cudnn": e, "nonfinite": nf, "ok": nf == 0 and e < REL_TOL}
            if args.alt_variant is not None:  # the second variant: its own plan and check
                try:
                    pd_alt, rec["plan_alt"] = shim.plan(NV, NT, [FULL] * H, [-1] * H, stream, args.alt_variant)
                    out_alt = torch.empty_like(q)
                    out_alt.fill_(float("nan"))
                    run_alt = lambda: shim.run(pd_alt, D, q, k, v, out_alt, stream)
                    run_alt()
                    ea = rel(out_alt, ref)
                    nfa = int((~torch.isfinite(out_alt)).sum().item())
                    rec["check_alt"] = {"variant": args.alt_variant, "rel_vs_cudnn": ea, "nonfinite": nfa,
                                        "ok": nfa == 0 and ea < REL_TOL}
                except Exception as ex:
                    rec["check_alt"] = {"variant": args.alt_variant, "ok": False, "error": failure(ex)}
                print(f"{tag} dense check, alt variant {args.alt_variant}: {rec['check_alt']}", flush=True)
            del ref
        except Exception as ex:
            rec["check"] = {"ok": False, "error": failure(ex)}
        print(f"{tag} dense check: {rec['check']}", flush=True)
        dense_ms = None
        if rec["check"]["ok"]:
            try:
                # cuDNN's layout: the transposed view of our tensors or a contiguous copy, whichever is faster
                # (one that fails, e.g. a layout cuDNN does not take, is left out)
                cands = {}
                for name, a3 in (("view", (qt, kt, vt)), ("copy", (qc, kc, vc))):
                    try:
                        cudnn(*a3)
                        cands[name] = (lambda a3=a3: cudnn(*a3))
                    except Exception as ex:
                        rec.setdefault("cudnn_layout_errors", {})[name] = failure(ex)
                probe, _, _, _ = interleave(cands, flush, 1.0, 10, 10, dry=dry)
                pv, pc = pct(probe.get("view", []), 0.5), pct(probe.get("copy", []), 0.5)
                lay = "view" if "view" in cands and not pv > pc else "copy"
                a3 = (qt, kt, vt) if lay == "view" else (qc, kc, vc)
                rec["cudnn_layout"] = {"chosen": lay, "probe_ms_view": pv, "probe_ms_copy": pc}
                sides = {"ours": run_dense, "cudnn": lambda: cudnn(*a3)}
                if rec.get("check_alt", {}).get("ok"):
                    sides["alt"] = run_alt
                for _ in range(3):
                    for fn in sides.values():
                        fn()
                t, rounds, wall, slack = interleave(sides, flush, args.budget, args.rounds_min, args.rounds_max,
                                                    dry=dry)
                rec.update(rounds=rounds, wall_s=wall, min_host_slack_ms=slack, ms={n: summary(x) for n, x in t.items()},
                           tflops={n: dense_flops / pct(x, 0.5) / 1e9 for n, x in t.items()},
                           ratio_cudnn_over_ours=summary(per_round_ratio(t["cudnn"], t["ours"])))
                r = rec["ratio_cudnn_over_ours"]
                rec["bar"] = {"what": "cuDNN ms / ours ms >= 1", "met": r["median"] >= 1.0,
                              "clear": r["p10"] >= 1.0 or r["p90"] < 1.0}
                dense_ms = rec["ms"]["ours"]["median"]
                print(f"{tag} dense: ours {dense_ms:.3f} ms, cuDNN ({lay}) {rec['ms']['cudnn']['median']:.3f} ms, "
                      f"cuDNN/ours {r['median']:.3f}x ({r['p10']:.3f}-{r['p90']:.3f}), {rounds} rounds", flush=True)
                if "alt" in t:
                    rec["ratio_ours_over_alt"] = summary(per_round_ratio(t["ours"], t["alt"]))
                    rec["ratio_cudnn_over_alt"] = summary(per_round_ratio(t["cudnn"], t["alt"]))
                    ra, rc = rec["ratio_ours_over_alt"], rec["ratio_cudnn_over_alt"]
                    print(f"{tag} dense alt v{args.alt_variant}: {rec['ms']['alt']['median']:.3f} ms, ours/alt "
                          f"{fmt_range(ra)}, cuDNN/alt {fmt_range(rc)}", flush=True)
            except Exception as ex:
                timing_failed(rec, ex, tag)
                dense_ms = None
        pairs.append(rec)
        # arrow at ~25/50/75 % block sparsity vs Flex with the same block mask; ours dense in the same rounds
        done = set()
        for target in TARGETS:
            w, sp = choose_window(NV, NT, BLOCK, target, lambda a, b_, c, d: shim.mask_info(a, b_, TEXT_FIRST, c, d)["entries"])
            if (D, NV, target) in gw:
                w = gw[(D, NV, target)]
                sp = 1.0 - mask_entries(NV, NT, BLOCK, w) / float(N) ** 2
            if w in done:  # small shapes: two targets on one window
                continue
            done.add(w)
            rec = {"kind": "arrow", "D": D, "NV": NV, "NT": NT, "H": H, "B": B, "target": target, "window": w,
                   "sparsity": sp}
            pa = pa_alt = None
            run_arrow = lambda: shim.run(pa, D, q, k, v, out, stream)
            try:
                pa, info_a = shim.plan(NV, NT, [ARROW] * H, [w] * H, stream, args.variant)
                rec["plan"] = info_a
                t0 = time.time()
                bm = flex_block_mask(NV, NT, TEXT_FIRST, BLOCK, w, dev)
                # the same block mask: flex's 128-blocks (all full or empty here) cover exactly our entries
                dense_blocks = bm.to_dense()[0, 0]
                flex_entries = int(dense_blocks.sum().item()) * BLOCK * BLOCK
                rec["flex_entries"], rec["mask_entries"] = flex_entries, info_a["mask_entries"] // H
                same = flex_entries == rec["mask_entries"]
                run_flex = lambda: flex(qc, kc, vc, block_mask=bm)
                out.fill_(float("nan"))
                run_arrow()
                try:
                    ref = run_flex().transpose(1, 2)
                    rec["flex_window"] = "captured tensor"
                except Exception as ex:  # a torch whose flex cannot take it: the window as an int
                    print(f"{tag} flex with a captured window failed ({type(ex).__name__}: {str(ex)[:120]}); "
                          f"as an int", flush=True)
                    torch._dynamo.reset()
                    bm = flex_block_mask(NV, NT, TEXT_FIRST, BLOCK, w, dev, captured=False)
                    rec["flex_window"] = "int"
                    try:
                        ref = run_flex().transpose(1, 2)
                    except Exception as ex2:  # last resort: as attn_baselines.py compiles it
                        print(f"{tag} flex fullgraph failed ({type(ex2).__name__}: {str(ex2)[:120]}); "
                              f"compiled without fullgraph from here on", flush=True)
                        env["flex_compile"] = f"not fullgraph (fullgraph: {type(ex2).__name__}: {str(ex2)[:200]})"
                        torch._dynamo.reset()
                        flex = torch.compile(flex_attention, dynamic=False)
                        ref = run_flex().transpose(1, 2)
                rec["flex_first_call_s"] = time.time() - t0
                e = rel(out, ref)
                nf = int((~torch.isfinite(out)).sum().item())
                rec["check"] = {"rel_vs_flex": e, "nonfinite": nf, "same_block_mask": same,
                                "ok": nf == 0 and e < REL_TOL and same}
                if args.alt_variant is not None:  # the second variant on the same arrow plan, its own check
                    pa_alt, rec["plan_alt"] = shim.plan(NV, NT, [ARROW] * H, [w] * H, stream, args.alt_variant)
                    out_alt_a = torch.empty_like(q)
                    out_alt_a.fill_(float("nan"))
                    run_arrow_alt = lambda: shim.run(pa_alt, D, q, k, v, out_alt_a, stream)
                    run_arrow_alt()
                    ea, nfa = rel(out_alt_a, ref), int((~torch.isfinite(out_alt_a)).sum().item())
                    rec["check_alt"] = {"variant": args.alt_variant, "rel_vs_flex": ea, "nonfinite": nfa,
                                        "ok": nfa == 0 and ea < REL_TOL}
                del ref
            except Exception as ex:
                rec["check"] = {"ok": False, "error": failure(ex)}
            print(f"{tag} arrow w={w} r={100 * sp:.1f}% check: {rec['check']}", flush=True)
            if rec["check"]["ok"]:
                try:
                    for _ in range(3):
                        run_arrow(); run_flex()
                    sides = {"ours": run_arrow, "flex": run_flex}
                    if dense_ms is not None:
                        sides["ours_dense"] = run_dense
                    if rec.get("check_alt", {}).get("ok"):
                        sides["alt"] = run_arrow_alt
                    t, rounds, wall, slack = interleave(sides, flush, args.budget, args.rounds_min, args.rounds_max,
                                                        dry=dry)
                    flops = 4.0 * rec["mask_entries"] * D * H * B
                    rec.update(rounds=rounds, wall_s=wall, min_host_slack_ms=slack, ms={n: summary(x) for n, x in t.items()},
                               tflops_computed={n: flops / pct(t[n], 0.5) / 1e9 for n in ("ours", "flex")},
                               ratio_flex_over_ours=summary(per_round_ratio(t["flex"], t["ours"])))
                    fr = rec["ratio_flex_over_ours"]
                    met_flex = fr["median"] >= 1.3
                    if "ours_dense" in t:
                        rec["t_over_ideal"] = summary(per_round_ratio(t["ours"], t["ours_dense"], 1.0 - sp))
                        met_ideal = rec["t_over_ideal"]["median"] <= 1.1
                    else:
                        met_ideal = None
                    rec["bar"] = {"what": "t <= 1.1 x own dense x (1-r) and Flex ms / ours ms >= 1.3",
                                  "met_ideal": met_ideal, "met_flex": met_flex,
                                  "met": bool(met_ideal) and met_flex}
                    if "alt" in t:  # > 1: the alt variant is faster
                        rec["ratio_ours_over_alt"] = summary(per_round_ratio(t["ours"], t["alt"]))
                    ti = rec.get("t_over_ideal", {}).get("median", float("nan"))
                    print(f"{tag} arrow w={w} r={100 * sp:.1f}%: ours {rec['ms']['ours']['median']:.3f} ms, Flex "
                          f"{rec['ms']['flex']['median']:.3f} ms, Flex/ours {fr['median']:.3f}x ({fr['p10']:.3f}-"
                          f"{fr['p90']:.3f}), t/ideal {ti:.3f}, {rounds} rounds", flush=True)
                except Exception as ex:
                    timing_failed(rec, ex, tag)
            for p_ in (pa, pa_alt):
                if p_ is not None:
                    shim.free(p_)
            pairs.append(rec)
        # mixed heads: ours on the mixed plan, ours dense and a CACHE-only plan (the measured copy
        # cost) in the same rounds; prediction = dense x (computed heads' mask entries / dense
        # entries) + copy, per round (issue 4: within 5 %)
        if not dry and pd is not None and dense_ms is not None:
            pairs.append(mixed_pair(shim, flex, flush, args, stream, D, NV, q, k, v, qt, kt, vt, qc, kc, vc, out,
                                    run_dense, backend, tag))
        if pd is not None:
            shim.free(pd)
        if pd_alt is not None:
            shim.free(pd_alt)
        env.setdefault("smi_after_shape", []).append(f"{tag}: {smi()}")
        del q, k, v, qt, kt, vt, qc, kc, vc, out
        out_alt = None
        if not dry:
            torch.cuda.empty_cache()
    env["smi_after"] = smi()
    res = {"env": env, "pairs": pairs}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out}", flush=True)
    # the same JSON in the log, one line: it survives where the device call brings back too few files
    print("INTERLEAVE_JSON " + json.dumps(res, separators=(",", ":")), flush=True)
    return res


# ---- the table -----------------------------------------------------------------------------------
def fmt_range(s):
    return f"{s['median']:.3f}x ({s['p10']:.3f}-{s['p90']:.3f})"


def timed_rows(res, kind, label):
    """The pairs of one kind that were timed; the others print as FAIL lines (label(r): the row's key)."""
    for r in res["pairs"]:
        if r["kind"] != kind:
            continue
        if "ms" not in r:
            print(f"{label(r)}  FAIL: {r['check']} (not timed)")
            continue
        yield r


def print_alt(r, pad, ms_extra=lambda r: "", ratio_extra=lambda r: ""):
    """The alt variant's row under a table row (pad: the blank leading columns), or its failed check."""
    if "ratio_ours_over_alt" in r:
        print(f"{pad} alt v{r['check_alt']['variant']}: {r['ms']['alt']['median']:.3f} ms{ms_extra(r)}, "
              f"ours/alt {fmt_range(r['ratio_ours_over_alt'])}{ratio_extra(r)}")
    elif "check_alt" in r:
        print(f"{pad} alt v{r['check_alt']['variant']}: FAIL {r['check_alt']} (not timed)")


def print_table(res):
    env = res["env"]
    print(f"\n== interleaved in one process: {env.get('gpu')}, torch {env.get('torch')}, cuDNN {env.get('cudnn')}; "
          f"B=1 H=24 bf16, text 512 first, L2 flushed before every launch, order rotated per round")
    print(f"   clocks before: {env.get('smi_before')}\n   clocks after:  {env.get('smi_after')}")
    if env.get("flex_compile", "fullgraph") != "fullgraph":
        print(f"   WARNING Flex: {' '.join(env['flex_compile'].split())[:160]} - a graph break may time parts of it eagerly (slower)")
    var = sorted({r["plan"]["variant"] for r in res["pairs"] if "plan" in r})
    print(f"   ours: variant {env.get('variant', 0)} (plans: v{', v'.join(map(str, var)) or '?'}; the default runs D=64 on "
          f"v5's 3-consumer kernel, D=128 on v2's) on [B,N,H,D]; cuDNN: layout per "
          f"shape (view / copy); Flex: {env.get('flex_layout')}; windows: {env.get('windows_from')}")
    print("\n== dense (all heads FULL) vs cuDNN SDPA   bar: cuDNN ms / ours ms >= 1 (median of per-round ratios)")
    print(f"{'D':>4} {'tokens':>11} {'rounds':>6} {'ours ms':>8} {'TF/s':>5} {'cuDNN ms':>8} {'TF/s':>5} {'layout':>6} "
          f"{'cuDNN/ours (p10-p90)':>24} {'bar':>16}")
    for r in timed_rows(res, "dense", lambda r: f"{r['D']:>4} {r['NV']}+{r['NT']:<6}"):
        tok = f"{r['NV']}+{r['NT']}"
        bar = ("met" if r["bar"]["met"] else "NOT met") + ("" if r["bar"]["clear"] else " (noise)")
        print(f"{r['D']:>4} {tok:>11} {r['rounds']:>6} {r['ms']['ours']['median']:>8.3f} {r['tflops']['ours']:>5.0f} "
              f"{r['ms']['cudnn']['median']:>8.3f} {r['tflops']['cudnn']:>5.0f} {r['cudnn_layout']['chosen']:>6} "
              f"{fmt_range(r['ratio_cudnn_over_ours']):>24} {bar:>16}")
        print_alt(r, f"{'':>4} {'':>11} {'':>6}", lambda r: f" {r['tflops']['alt']:.0f} TF/s",
                  lambda r: f", cuDNN/alt {fmt_range(r['ratio_cudnn_over_alt'])}")
    print("\n== arrow (all heads ARROW(w), our tile mask) vs FlexAttention with the same block mask, ours dense in the same"
          " rounds\n   bars: t/ideal = t / (own dense x (1-r)) <= 1.1 and Flex ms / ours ms >= 1.3 (medians of per-round ratios);"
          " TF/s over computed entries")
    print(f"{'D':>4} {'tokens':>11} {'w':>3} {'r':>6} {'rounds':>6} {'ours ms':>8} {'TF/s':>5} {'Flex ms':>8} {'TF/s':>5} "
          f"{'Flex/ours (p10-p90)':>24} {'t/ideal (p10-p90)':>24} {'bar':>14}")
    for r in timed_rows(res, "arrow", lambda r: f"{r['D']:>4} {r['NV']}+{r['NT']:<6} {r['window']:>3} "
                                                f"{100 * r['sparsity']:>5.1f}%"):
        tok = f"{r['NV']}+{r['NT']}"
        b = r["bar"]
        bar = "met" if b["met"] else "NOT met" + ("" if b["met_flex"] else " flex") + \
            ("" if b["met_ideal"] else " ideal")
        ti = fmt_range(r["t_over_ideal"]) if "t_over_ideal" in r else "n/a"
        print(f"{r['D']:>4} {tok:>11} {r['window']:>3} {100 * r['sparsity']:>5.1f}% {r['rounds']:>6} "
              f"{r['ms']['ours']['median']:>8.3f} {r['tflops_computed']['ours']:>5.0f} {r['ms']['flex']['median']:>8.3f} "
              f"{r['tflops_computed']['flex']:>5.0f} {fmt_range(r['ratio_flex_over_ours']):>24} {ti:>24} {bar:>14}")
        print_alt(r, f"{'':>4} {'':>11} {'':>3} {'':>6} {'':>6}")
    if any(r["kind"] == "mixed" for r in res["pairs"]):
        print("\n== mixed heads (6 FULL, 9 ARROW w=1/3/8, 3 ARROW_RS w=2, 6 CACHE) vs own dense and a CACHE-only plan in the"
              " same rounds\n   bar: ours / (dense x computed entries + copy) within 5 % (median of per-round ratios)")
        print(f"{'D':>4} {'tokens':>11} {'rounds':>6} {'ours ms':>8} {'dense ms':>8} {'entries':>7} {'copy ms':>8} "
              f"{'pred ms':>8} {'ours/pred (p10-p90)':>24} {'bar':>8}")
        for r in timed_rows(res, "mixed", lambda r: f"{r['D']:>4} {r['NV']}+{r['NT']:<6}"):
            tok = f"{r['NV']}+{r['NT']}"
            print(f"{r['D']:>4} {tok:>11} {r['rounds']:>6} {r['ms']['ours']['median']:>8.3f} "
                  f"{r['ms']['ours_dense']['median']:>8.3f} {100 * r['entry_frac']:>6.1f}% {r['ms']['copy']['median']:>8.3f} "
                  f"{r['pred_ms']['median']:>8.3f} {fmt_range(r['ratio_to_pred']):>24} "
                  f"{'met' if r['bar']['met'] else 'NOT met':>8}")
            print_alt(r, f"{'':>4} {'':>11} {'':>6}",
                      ratio_extra=lambda r: f", alt/pred {fmt_range(r['alt_ratio_to_pred'])}")
    sl = [r["min_host_slack_ms"] for r in res["pairs"] if "min_host_slack_ms" in r]
    if sl:
        print(f"\nhost slack: min {min(sl):.2f} ms over every timed launch" + (
            "" if min(sl) >= 0 else "  NEGATIVE: the GPU waited for the host inside some launch's events "
            "(pairs: " + ", ".join(f"D={r['D']} {r['NV']} {r['kind']} {r.get('window', '')}" for r in res["pairs"]
                                  if r.get("min_host_slack_ms", 0) < 0) + ")"))
    fails = sum(1 for r in res["pairs"] if not r.get("check", {}).get("ok"))
    print(f"\ninterleave checks: {fails} failed (of {len(res['pairs'])} pairs)")
    return fails


# ---- the CPU self-test ---------------------------------------------------------------------------
def selftest(args):
    """Checks, without a GPU, what this script computes on the host against mask.c through the shim
    (built with -DSHIM_MASK_ONLY): the flex mask_mod equals dfa_mask_keep token by token, its flex
    block mask equals the tile mask, mask_entries / full_window equal the C ones, and the window rule
    picks the same windows with either; then prints the table of a canned result."""
    import torch
    shim = Shim(args.shim, gpu=False)
    bad, n_cases = 0, 0
    for nv, nt, tf, block in itertools.product((1, 5, 8, 13), (0, 1, 3, 4), (0, 1), (1, 2, 3, 4)):
        n = nv + nt
        qi = torch.arange(n).view(n, 1).expand(n, n)
        ki = torch.arange(n).view(1, n).expand(n, n)
        for w in range(-1, full_window(nv, block) + 2):
            n_cases += 1
            c = torch.frombuffer(bytearray(shim.mask_keep(nv, nt, tf, block, w)), dtype=torch.uint8).view(n, n).bool()
            p = arrow_mask_mod(nv, nt, tf, block, w)(None, None, qi, ki)
            info = shim.mask_info(nv, nt, tf, block, w)
            ok = bool((p == c).all()) and info["entries"] == mask_entries(nv, nt, block, w) == int(c.sum()) and \
                info["full_window"] == full_window(nv, block)
            if not ok:
                bad += 1
                print(f"MISMATCH nv={nv} nt={nt} text_first={tf} block={block} w={w}: mask_mod vs dfa_mask_keep "
                      f"{int((p != c).sum())} pairs differ; entries py {mask_entries(nv, nt, block, w)} C {info['entries']}")
    print(f"selftest mask_mod vs dfa_mask_keep, entries, full window: {n_cases} cases, {bad} failed")
    # flex's block mask (CPU) against the tile mask: aligned layouts, as in the benchmark
    try:
        from torch.nn.attention.flex_attention import create_block_mask  # noqa: F401
        nb = 0
        for nv, nt, block, w in [(12, 4, 4, 0), (12, 4, 4, 1), (16, 8, 4, 2), (16, 0, 4, 1), (4096, 512, 128, 6)]:
            bm = flex_block_mask(nv, nt, 1, block, w, "cpu").to_dense()[0, 0].bool()
            n, nbk = nv + nt, n_tiles(nv + nt, block)
            c = torch.frombuffer(bytearray(shim.mask_keep(nv, nt, 1, block, w)), dtype=torch.uint8).view(n, n).bool()
            tiles = c.view(nbk, block, nbk, block).any(3).any(1) if n % block == 0 else None
            ok = tiles is not None and bm.shape == tiles.shape and bool((bm == tiles).all()) and \
                int(bm.sum()) * block * block == mask_entries(nv, nt, block, w)
            nb += not ok
            print(f"selftest flex block mask nv={nv} nt={nt} block={block} w={w}: {int(bm.sum())} of {bm.numel()} "
                  f"blocks, {'= tile mask' if ok else 'DIFFERS'}")
        bad += nb
    except ImportError as ex:
        print(f"selftest flex block mask: skipped ({ex})")
    # flex itself (compiled, CPU, fp32): with that block mask and the tensor-captured window it
    # computes the arrow attention of dfa_mask_keep (against SDPA with the token mask), one compile
    if not args.no_flex:
        try:
            import torch.nn.functional as F
            from torch.nn.attention.flex_attention import flex_attention
            flex = torch.compile(flex_attention, dynamic=False)
            nv, nt, block, n_h, d = 1024, 256, 128, 2, 64
            n = nv + nt
            g = torch.Generator().manual_seed(7)
            q, k, v = (torch.randn(1, n_h, n, d, generator=g) for _ in range(3))
            for w in (0, 2, 3):
                keep = torch.frombuffer(bytearray(shim.mask_keep(nv, nt, 1, block, w)), dtype=torch.uint8)
                ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep.view(n, n).bool())
                e = rel(flex(q, k, v, block_mask=flex_block_mask(nv, nt, 1, block, w, "cpu")), ref)
                bad += not e < 1e-5
                print(f"selftest flex (CPU, compiled) arrow w={w} vs SDPA with dfa_mask_keep's mask: rel {e:.1e}")
        except Exception as ex:  # a torch without CPU flex: say so, do not count it as passed
            bad += 1
            print(f"selftest flex (CPU) failed: {type(ex).__name__}: {str(ex)[:200]}")
    # the window rule on the benchmark's shapes, Python entries vs C entries
    for D, NV in SHAPES:
        for target in TARGETS:
            wp, sp = choose_window(NV, NT, BLOCK, target)
            wc, _ = choose_window(NV, NT, BLOCK, target, lambda a, b_, c, d: shim.mask_info(a, b_, 1, c, d)["entries"])
            bad += wp != wc
            if D == 128:
                print(f"selftest window NV={NV} target {target}: w={wp} r={100 * sp:.1f}% (C entries: w={wc})")
    canned = {"env": {"gpu": "canned", "torch": torch.__version__, "cudnn": None, "smi_before": "-", "smi_after": "-",
                      "flex_layout": "[B, H, N, D] contiguous copy", "windows_from": "rule"},
              "pairs": [{"kind": "dense", "D": 128, "NV": 4096, "NT": 512, "rounds": 100, "check": {"ok": True},
                         "ms": {"ours": summary([0.436, 0.44]), "cudnn": summary([0.437, 0.43])},
                         "tflops": {"ours": 598, "cudnn": 598}, "cudnn_layout": {"chosen": "view"},
                         "ratio_cudnn_over_ours": summary([1.002, 0.977, 1.01]),
                         "bar": {"met": True, "clear": False}},
                        {"kind": "dense", "D": 64, "NV": 16384, "NT": 512, "check": {"ok": False, "rel_vs_cudnn": 0.3}},
                        {"kind": "arrow", "D": 128, "NV": 4096, "NT": 512, "window": 13, "sparsity": 0.264,
                         "rounds": 60, "check": {"ok": True}, "ms": {"ours": summary([0.334]), "flex": summary([0.484])},
                         "tflops_computed": {"ours": 450, "flex": 310}, "ratio_flex_over_ours": summary([1.45, 1.4]),
                         "t_over_ideal": summary([1.04, 1.03]),
                         "bar": {"met": True, "met_flex": True, "met_ideal": True}}]}
    f = print_table(canned)
    bad += f != 1
    print(f"selftest: {'ok' if bad == 0 else 'FAILED'} ({bad} failed)")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shim", help="libdfa_attn_shim.so (bench/attn_interleave.sh builds it)")
    ap.add_argument("--budget", type=float, default=5.0, help="seconds of timing per pair (after 30 rounds)")
    ap.add_argument("--rounds-min", type=int, default=30)
    ap.add_argument("--rounds-max", type=int, default=100)
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "attn_interleave.json"))
    ap.add_argument("--windows", help="bench_attn_gpu's JSON lines: take the arrow windows from it")
    ap.add_argument("--shapes", default=os.environ.get("DFA_INTERLEAVE_SHAPES") or None,
                    help="DxNV,... (default 128x4096,128x16384,64x4096,64x16384; env DFA_INTERLEAVE_SHAPES)")
    ap.add_argument("--selftest", action="store_true")
    ev, ea = os.environ.get("DFA_INTERLEAVE_VARIANT"), os.environ.get("DFA_INTERLEAVE_ALT")
    ap.add_argument("--variant", type=int, default=int(ev) if ev else 0,
                    help="our variant (dfa_attn_cuda_plan_build; 0: default; env DFA_INTERLEAVE_VARIANT)")
    ap.add_argument("--alt-variant", type=int, default=int(ea) if ea else None,
                    help="a second variant of ours timed beside it in the dense, arrow and mixed rounds "
                         "(env DFA_INTERLEAVE_ALT)")
    ap.add_argument("--table", help="print the table of a finished run's JSON")
    ap.add_argument("--dry-cpu", action="store_true",
                    help="run the whole benchmark logic on the CPU with our kernel replaced by masked SDPA "
                         "(checks the script, measures nothing; use with --shapes 64x1024 --rounds-min 2 --rounds-max 3)")
    ap.add_argument("--no-flex", action="store_true", help="selftest: skip the compiled CPU flex check")
    args = ap.parse_args()
    if args.table:
        return 1 if print_table(json.load(open(args.table))) else 0
    if not args.shim and not args.dry_cpu:
        ap.error("--shim is required")
    if args.selftest:
        return selftest(args)
    return 1 if print_table(run_gpu(args)) else 0


if __name__ == "__main__":
    sys.exit(main())
