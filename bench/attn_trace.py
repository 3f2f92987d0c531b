# attn_trace.py - where the wgmma kernel's time goes per item, measured: the trace build of the
# kernel (-DDFA_ACU_TRACE, bench/attn_trace.sh) stamps clock64 at each item's phases in every role
# (producer, storer, consumer warpgroups, src/attn/cuda/attn_trace.h); this runs a plan a few times,
# reads the last run's stamps and prints, per consumer warpgroup, the median cycles of each phase
# of an item and the per-item overhead against the plan's own steady-state step:
#   gap    loop top: previous item's end -> this item's slot read (item_full)
#   qwait  -> Q tile landed (q_full)
#   issue  -> first QK^T issued (first K tile, ping-pong turn)
#   qk     -> first QK^T done
#   smax   -> first softmax and P packed
#   mid    the middle steps (QK^T(i) with P V(i-1)), per step
#   last   the last P V alone
#   epi    normalise, stage, hand over (o_full)
# Times of the trace build against the plain build (same plan, same process) say how much the
# stamps perturb. usage: python3 bench/attn_trace.py --shim TRACE.so [--plain PLAIN.so] [--out F]
import argparse, ctypes, json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attn_interleave as ai  # noqa: E402  (the Shim class, the window rule, the constants)

CTAS, ROLES, ITEMS, EV = 132, 5, 64, 12  # attn_trace.h
PHASES = ("gap", "qwait", "issue", "qk", "smax", "mid", "last", "epi")
CLASSES = ("first", "short", "long")  # a CTA's first item (cold start), <= 8 key steps, more


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def parse(buf):
    import numpy as np
    a = np.frombuffer(buf, dtype=np.int64).reshape(CTAS, ROLES, ITEMS, EV)
    return a


def analyse(a, n_cons):
    """per consumer warpgroup: phase lists over items computed (not walked, not copies), by class"""
    out = {"cta": [], "roles": {}}
    hdr = a[:, 0, ITEMS - 1, :4]
    ok = hdr[:, 3] > hdr[:, 1]
    if ok.any():
        ghz = [(c1 - c0) / (g1 - g0) for c0, g0, c1, g1 in hdr[ok] if g1 > g0]
        out["ghz"] = med(ghz)
        out["cta_us"] = med([(g1 - g0) / 1e3 for _, g0, _, g1 in hdr[ok]])
    for cw in range(n_cons):
        r = 2 + cw
        rec = {c: {k: [] for k in PHASES} for c in CLASSES}
        rec["items"], rec["union"] = [], 0
        for c in range(CTAS):
            if not ok[c]:
                continue
            prev_end = None
            for t in range(ITEMS - 1):
                e = a[c, r, t]
                if e[2] == 0 or e[0] < 0:
                    break
                n = int(e[1])
                end = int(e[9])
                if end == 0:
                    break
                if n > 0 and e[10] == 0 and e[3] > 0 and e[7] == 0:
                    rec["union"] += 1  # NC = 3 union items (skip loop): no mid/last stamps
                elif n > 0 and e[10] == 0 and e[3] > 0:  # computed
                    cls = "first" if t == 0 else "short" if n <= 8 else "long"
                    d = rec[cls]
                    if prev_end is not None:
                        d["gap"].append(int(e[2]) - prev_end)
                    d["qwait"].append(int(e[3] - e[2]))
                    d["issue"].append(int(e[4] - e[3]))
                    d["qk"].append(int(e[5] - e[4]))
                    d["smax"].append(int(e[6] - e[5]))
                    if n > 1:
                        d["mid"].append((int(e[7] - e[6])) / (n - 1))
                    d["last"].append(int(e[8] - e[7]))
                    d["epi"].append(int(e[9] - e[8]))
                    rec["items"].append((cls, n, end - (prev_end if prev_end is not None else int(e[2]))))
                prev_end = end
        out["roles"][cw] = rec
    # producer: fetch chain (q_empty passed -> item handed out), wait for the first free stage
    prod = {"fetch": [], "stage0": [], "q_empty": []}
    stor = {"wait_ofull": [], "store": []}
    for c in range(CTAS):
        if not ok[c]:
            continue
        for t in range(ITEMS - 1):
            e = a[c, 0, t]
            if e[2] == 0 or e[0] < 0:
                break
            prod["q_empty"].append(int(e[3] - e[2]))
            prod["fetch"].append(int(e[4] - e[3]))
            if e[6] > 0 and e[5] > 0:
                prod["stage0"].append(int(e[6] - e[5]))
            s = a[c, 1, t]
            if s[3] > 0 and s[4] > 0:
                stor["store"].append(int(s[4] - s[3]))
    out["producer"] = {k: med(v) for k, v in prod.items()}
    out["storer"] = {k: med(v) for k, v in stor.items()}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True, help="the trace build's shim")
    ap.add_argument("--plain", help="the plain build's shim (times only)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--variant", type=int, default=0, help="the variant both builds run (0: the default)")
    ap.add_argument("--configs", default="128x4096:dense,128x4096:75,128x4096:50,128x16384:dense,128x16384:75,"
                    "64x4096:dense,64x4096:75,64x4096:50")
    args = ap.parse_args()
    import torch
    shim = ai.Shim(args.shim, gpu=True)
    shim.lib.shim_trace.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    shim.lib.shim_trace.restype = ctypes.c_int64
    plain = ai.Shim(args.plain, gpu=True) if args.plain else None
    nbytes = shim.lib.shim_trace(None, None)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    flush = torch.empty(ai.FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    results = []
    print(f"{torch.cuda.get_device_name()}  trace {nbytes} bytes per plan", flush=True)
    for cfg in args.configs.split(","):
        shape, kind = cfg.split(":")
        D, NV = map(int, shape.split("x"))
        N = NV + ai.NT
        g = torch.Generator(device="cuda").manual_seed(7 + D + NV)
        q, k, v = (torch.randn(ai.B, N, ai.H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
        out = torch.empty_like(q)
        if kind == "dense":
            m, w = [ai.FULL] * ai.H, [-1] * ai.H
        else:
            ww, _ = ai.choose_window(NV, ai.NT, ai.BLOCK, int(kind) / 100.0,
                                  entries=lambda nv, nt, b, x: shim.mask_info(nv, nt, ai.TEXT_FIRST, b, x)["entries"])
            m, w = [ai.ARROW] * ai.H, [ww] * ai.H
        times = {}
        plans = {}
        for name, sh in (("trace", shim), ("plain", plain)):
            if sh is None:
                continue
            p, info = sh.plan(NV, ai.NT, m, w, stream, args.variant)
            plans[name] = (sh, p, info)
        # interleaved: flush, run each build, 20 rounds; the trace read after the last trace run
        ev = {n: [] for n in plans}
        for rnd in range(21):
            for name, (sh, p, info) in plans.items():
                flush.zero_()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                sh.run(p, D, q, k, v, out, stream)
                e1.record()
                ev[name].append((e0, e1))
        torch.cuda.synchronize()
        for name in plans:
            times[name] = med([a.elapsed_time(b) for a, b in ev[name][1:]])
        # the last run was the plain one when both exist: run the trace build once more to read it
        sh, p, info = plans["trace"]
        shim.lib.shim_trace_clear.argtypes = [ctypes.c_void_p]
        if shim.lib.shim_trace_clear(p) != 0:
            raise RuntimeError("shim_trace_clear failed")
        flush.zero_()
        sh.run(p, D, q, k, v, out, stream)
        buf = (ctypes.c_char * nbytes)()
        if shim.lib.shim_trace(p, buf) != nbytes:
            raise RuntimeError("shim_trace failed")
        a = parse(bytes(buf))
        n_cons = 3 if (D == 64 and info["variant"] == 5) else 2
        res = analyse(a, n_cons)
        for name, (sh, p, info) in plans.items():
            sh.free(p)
        rec = {"D": D, "NV": NV, "kind": kind, "window": w[0], "plan": info, "ms": times, "ghz": res.get("ghz"),
               "producer": res["producer"], "storer": res["storer"], "roles": {}}
        print(f"\n== D={D} N={NV}+{ai.NT} {kind} (w={w[0]}): trace build {times['trace']:.3f} ms"
              + (f", plain {times['plain']:.3f} ms (trace/plain {times['trace'] / times['plain']:.3f})"
                 if "plain" in times else "") + f", SM clock ~{res.get('ghz', 0):.2f} GHz, consumers {n_cons}")
        print(f"   producer (cycles, median): q_empty wait {res['producer']['q_empty']:.0f}, fetch (atomic + item) "
              f"{res['producer']['fetch']:.0f}, first free stage {res['producer']['stage0']:.0f}; "
              f"storer: store {res['storer']['store']:.0f}")
        for cw, r in res["roles"].items():
            if r["union"]:
                print(f"   wg{cw} union items {r['union']} (the skip loop: not broken down)")
            for cls in CLASSES:
                d = r[cls]
                if not d["qk"]:
                    continue
                meds = {kk: med(vv) for kk, vv in d.items()}
                items = [(n, tot) for c_, n, tot in r["items"] if c_ == cls]
                steps = med([n for n, _ in items])
                tot = med([t for _, t in items])
                step = meds["mid"]
                over = tot - steps * step
                print(f"   wg{cw} {cls:5s} items {len(d['qk']):4d} steps {steps:5.1f}: "
                      + " ".join(f"{kk} {meds[kk]:6.0f}" for kk in PHASES)
                      + f" | item {tot:7.0f} = {tot / step:5.2f} steps, overhead {over / step:5.2f} steps")
                rec["roles"][f"{cw}_{cls}"] = {"n": len(d["qk"]), "steps": steps, "item": tot, "step": step,
                                               "overhead_steps": over / step, **meds}
        results.append(rec)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
