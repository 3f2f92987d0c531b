#!/usr/bin/env python3
"""engines_table.py - the markdown tables of bench/engines_gpu.sh from the `RESULT {json}` lines
of bench_mmdit, bench_mmdit_diffusers.py and bench_calibrate (collected in one .jsonl file).

  python3 bench/engines_table.py results.jsonl [header.txt] > results.md
"""
import json
import sys


def f(v, fmt="{:.1f}", none="-"):
    return none if v is None or v < 0 else fmt.format(v)


def loop(x, key):
    return x[key] if x and x["steps"] > 0 else None


def over(x):
    """loop ms/step - forward ms (signed), '-' without a loop or from an older run"""
    return "-" if not x or x["steps"] <= 0 or "loop_over_ms" not in x else f"{x['loop_over_ms']:+.2f}"


def graph(x):
    """dfa's loop with a CUDA Graph forward (bench_mmdit --graph): ms/step and bit-equality"""
    if not x or x.get("loop_graph_ms_step", -1) < 0:
        return "-"
    return f"{x['loop_graph_ms_step']:.1f} ({'bit-equal' if x.get('graph_equal') == 1 else 'DIFFERENT'})"


def engines(rows):
    eng = {}
    checks = {}
    for r in rows:
        if r["kind"] == "engine":
            # the first row per side: the plan phase's dense loop (--reps 1) does not replace the flux phase's
            eng.setdefault((r["model"], r["res"]), {}).setdefault(r["side"], r)
        elif r["kind"] == "check":
            checks[(r["model"], r["res"])] = r
    out = ["## Issue 5: dfa dense vs diffusers (bf16, SDPA), same weights and inputs", "",
           "ratio = dfa / diffusers (bar: <= 1). attention share: dfa's attention timer (GPU time between "
           "CUDA events recorded around each attention call, no host synchronisation); diffusers: every SDPA call timed with CUDA events in "
           "one extra forward. check: rel L2 of dfa's forward against diffusers' on the same inputs; where diffusers also ran "
           "the model in f32 (no TF32), both bf16 outputs against that: dfa's error should be of the order of "
           "diffusers' own bf16 error (marked ok at <= 2x). loop - fwd: what a sampling step costs over one "
           "transformer forward (signed; dfa's loop uploads the text once, its plain forward every call: "
           "'dfa fwd, text held' is the forward as the loop runs it).", "",
           "| model | px | tokens (batch) | dfa fwd ms | diffusers fwd ms | fwd ratio | loop steps (dfa/diffusers) | "
           "dfa ms/step | diffusers ms/step | loop ratio | dfa attn % (fwd / loop) | diffusers attn % | "
           "rel L2 dfa vs diffusers (bf16) | rel L2 vs diffusers f32: dfa / diffusers bf16 | "
           "loop - fwd ms/step: dfa / diffusers | dfa fwd, text held ms | dfa loop, CUDA Graph ms/step |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, res), s in sorted(eng.items()):
        d, p = s.get("dfa"), s.get("diffusers")
        any_ = d or p
        fr = d["fwd_ms"] / p["fwd_ms"] if d and p and p["fwd_ms"] > 0 else None
        lr = (d["loop_ms_step"] / p["loop_ms_step"]
              if d and p and d["steps"] > 0 and p["steps"] > 0 and p["loop_ms_step"] > 0 else None)
        st = "/".join(str(x["steps"]) for x in (d, p) if x)
        c = checks.get((model, res))
        cs = "-" if not c else ("NON-FINITE" if c["nonfinite"] else f"{c['rel_l2']:.2e}")
        c32 = "-"
        if c and c.get("rel_l2_f32", -1) >= 0 and c.get("diffusers_bf16_vs_f32", -1) > 0:
            ok = c["rel_l2_f32"] <= 2 * c["diffusers_bf16_vs_f32"]
            c32 = (f"{c['rel_l2_f32']:.2e} / {c['diffusers_bf16_vs_f32']:.2e} "
                   f"({'ok' if ok else 'OVER'}: dfa <= 2x diffusers)")
        out.append(
            f"| {model} | {res} | {any_['tokens']} ({any_['batch']}) | {f(d and d['fwd_ms'])} | "
            f"{f(p and p['fwd_ms'])} | {f(fr, '{:.3f}')} | {st} | "
            f"{f(loop(d, 'loop_ms_step'))} | {f(loop(p, 'loop_ms_step'))} | "
            f"{f(lr, '{:.3f}')} | {f(d and 100 * d['fwd_attn'])} / {f(loop(d, 'loop_attn') and 100 * d['loop_attn'])} | "
            f"{f(p and 100 * p['fwd_attn'])} | {cs} | {c32} | {over(d)} / {over(p)} | "
            f"{f(d and d.get('fwd_held_ms', -1))} | {graph(d)} |")
    prof = [s["dfa"] for _, s in sorted(eng.items()) if "dfa" in s and s["dfa"].get("prof_fwd_ms", -1) > 0]
    if prof:
        out += ["", "dfa, one held forward by phase (CUDA events around every attention call and GEMM; rest = "
                "wall - both: elementwise kernels, uploads, launch gaps, event overhead):", "",
                "| model | px | attention ms | GEMMs ms | rest ms | forward wall ms |", "|---|---|---|---|---|---|"]
        for d in prof:
            out.append(f"| {d['model']} | {d['res']} | {d['prof_attn_ms']:.1f} | {d['prof_gemm_ms']:.1f} | "
                       f"{d['prof_fwd_ms'] - d['prof_attn_ms'] - d['prof_gemm_ms']:.1f} | {d['prof_fwd_ms']:.1f} |")
    return out


def calib(rows):
    out = ["## Issue 8: calibration search time vs the floor (FLUX, random weights)", "",
           "floor = min(batched search engine all FULL, dfa_flux_generate of prompt 0 x prompts), same run. "
           "ratio = search / floor (bar for V2: <= 1.3). Extrapolation to the target prompts x steps: "
           "x (target prompts / prompts), step 0 + (steps - 1) x mean later step; not measured.", "",
           "| search | px | measured prompts x steps | floor s (engine / gen) | search s | ratio | bar | "
           "extrapolated to | est. search s | est. floor s | est. ratio | search buffers GiB at target | "
           "plan attn FLOPs % |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in rows if r["kind"] == "calib"), key=lambda r: (r["search"] == "v1", r["res"])):
        v2 = r["search"].startswith("v2")
        fl = (f"{r['floor_s']:.2f} ({r['floor_engine_s']:.2f} / {r['floor_gen_s']:.2f})" if v2
              else f"{r['floor_s']:.2f} (first {r['steps']} steps)")
        bar = ("PASS" if r["ratio"] <= 1.3 else "FAIL") if r["search"] == "v2" else "(reported)"
        out.append(
            f"| {r['search'].upper()} | {r['res']} | {r['prompts']} x {r['steps']} | {fl} | {r['search_s']:.2f} | "
            f"{r['ratio']:.3f} | {bar} | {r['target_prompts']} x {r['target_steps']} | {r['est_search_s']:.0f} | "
            f"{r['est_floor_s']:.0f} | {r['est_ratio']:.3f} | {f(r.get('target_buf_gib', -1))} | "
            f"{100 * r['flops_frac']:.1f} |")
    return out


def plans(rows):
    rs = [r for r in rows if r["kind"] == "plan"]
    if not rs:
        return []
    out = ["## Issues 4/5: planned vs dense sampling loop, end to end (bench_mmdit --plan-mix)", "",
           "Same run, same weights and inputs: the dense loop, then the loop under a synthetic V2-like plan (first 2 "
           "steps FULL; then half the heads ARROW with a band of 1/8 of the visual tiles, a quarter CACHE, a quarter "
           "FULL, heads shuffled per layer and step), prepared before the loop (dfa_attn_prepare). speedup = dense s / planned s. attn time "
           "ratio = planned attention seconds / dense attention seconds (CUDA events). loop check: the planned loop "
           "made no device allocation (besides the generate's latents) and built no work list at first use.", "",
           "| model | px | steps | attn FLOPs of dense | dense ms/step | planned ms/step | **speedup** | "
           "attn % dense / planned | attn time ratio | prepare ms | work lists (launches) | list KB | cache MB | "
           "loop check |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rs, key=lambda r: (r["model"], r["res"])):
        ratio = (r["plan_attn"] * r["plan_s"]) / (r["dense_attn"] * r["dense_s"]) if r["dense_attn"] > 0 else -1
        ok = r["loop_allocs"] <= 1 and r["lazy_builds"] == 0 and r["nonfinite"] == 0
        out.append(
            f"| {r['model']} | {r['res']} | {r['steps']} | {r['attn_fraction']:.3f} | "
            f"{1e3 * r['dense_s'] / r['steps']:.1f} | {1e3 * r['plan_s'] / r['steps']:.1f} | "
            f"**{r['speedup']:.3f}x** | {100 * r['dense_attn']:.1f} / {100 * r['plan_attn']:.1f} | {f(ratio, '{:.3f}')} | "
            f"{r['prepare_ms']:.1f} | {r['n_lists']} ({r['n_entries']}) | {r['list_bytes'] / 1024:.0f} | "
            f"{r['cache_bytes'] / 2**20:.0f} | {'ok' if ok else 'FAILED'} |")
    return out


def main():
    rows = []
    for line in open(sys.argv[1]):
        line = line.strip()
        if line.startswith("RESULT "):
            line = line[7:]
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"<!-- unparsed line: {line[:80]} ({e}) -->")
    if len(sys.argv) > 2:
        print(open(sys.argv[2]).read().rstrip() + "\n")
    print("\n".join(engines(rows)) + "\n")
    print("\n".join(calib(rows)))
    pl = plans(rows)
    if pl:
        print("\n" + "\n".join(pl))


if __name__ == "__main__":
    main()
