# Prints the comparison table of bench/attn_gpu.sh: our variants (attn_gpu.json, JSON lines)
# next to the baselines measured in the same run (attn_baselines.json).
import json, os, sys

out = os.environ.get("OUT", ".")
ours = [json.loads(l) for l in open(os.path.join(out, "attn_gpu.json"))]
try:
    base = json.load(open(os.path.join(out, "attn_baselines.json")))
except (OSError, ValueError):
    base = []
def b(D, NV, key):
    for r in base:
        if r["D"] == D and r["NV"] == NV and key in r:
            return r[key]
    return float("nan")

print("\n== dense (all heads FULL), B=1 H=24, text 512 first ==")
print(f"{'D':>4} {'tokens':>11} {'var':>3} {'ms':>8} {'TF/s':>6} {'again ms':>8} {'cuDNN ms':>9} {'cuDNN TF':>8} {'vs cuDNN':>8} {'vs FA2':>7} {'vs Flex':>7}")
for r in ours:
    if r["kind"] != "dense": continue
    D, NV = r["D"], r["NV"]
    cu, fa, fl = b(D, NV, "cudnn"), b(D, NV, "flash2"), b(D, NV, "flex_dense")
    again = next((x["ms"] for x in ours if x["kind"] == "dense_again" and x["D"] == D and x["NV"] == NV and x["variant"] == r["variant"]), float("nan"))
    N = NV + r["NT"]; cutf = 4 * N * N * D * 24 / cu / 1e9
    print(f"{D:>4} {NV:>6}+{r['NT']:<4} {r['variant']:>3} {r['ms']:>8.3f} {r['tflops']:>6.0f} {again:>8.3f} {cu:>9.3f} {cutf:>8.0f} {cu/r['ms']:>7.2f}x {fa/r['ms']:>6.2f}x {fl/r['ms']:>6.2f}x")
print("\n== arrow (all heads one window, tile mask of mask.h) ==  bar: t <= 1.1 x dense x (1-r), >= 1.3x Flex")
print(f"{'D':>4} {'tokens':>11} {'var':>3} {'w':>3} {'r':>6} {'ms':>8} {'t/ideal':>7} {'Flex ms':>8} {'vs Flex':>7} {'vs FA2':>7} {'vs cuDNN':>8}")
for r in ours:
    if r["kind"] != "arrow": continue
    D, NV = r["D"], r["NV"]
    fl = b(D, NV, f"flex_arrow_{r['target']}")
    fa, cu = b(D, NV, "flash2"), b(D, NV, "cudnn")
    print(f"{D:>4} {NV:>6}+{r['NT']:<4} {r['variant']:>3} {r['window']:>3} {100*r['sparsity']:>5.1f}% {r['ms']:>8.3f} {r['ratio_to_ideal']:>7.3f} {fl:>8.3f} {fl/r['ms']:>6.2f}x {fa/r['ms']:>6.2f}x {cu/r['ms']:>7.2f}x")
print("\n== mixed heads (6 FULL, 9 ARROW w=1/3/8, 3 ARROW_RS w=2, 6 CACHE) ==  bar: within 5% of predicted")
print(f"{'D':>4} {'tokens':>11} {'var':>3} {'ms':>8} {'pred ms':>8} {'ratio':>6} {'entries':>8}")
for r in ours:
    if r["kind"] != "mixed": continue
    print(f"{r['D']:>4} {r['NV']:>6}+{r['NT']:<4} {r['variant']:>3} {r['ms']:>8.3f} {r['pred_ms']:>8.3f} {r['ms']/r['pred_ms']:>6.3f} {100*r['entry_frac']:>7.1f}%")
# variant 5 (3 consumer warpgroups at D=64) against v2 on the same plans: > 1 means faster than v2
def ms(kind, D, NV, var, target=None):
    for r in ours:
        if r["kind"] == kind and r["D"] == D and r["NV"] == NV and r["variant"] == var and r.get("target") == target:
            return r["ms"]
    return float("nan")
if any(r["variant"] == 5 and r["D"] == 64 for r in ours):
    print("\n== D=64: v2 time / v5 time (> 1: the 3-consumer kernel is faster than v2) ==")
    print(f"{'tokens':>11} {'plan':>12} {'v2 ms':>8} {'v5 ms':>8} {'v2/v5':>6}")
    for NV in sorted({r["NV"] for r in ours if r["D"] == 64 and "NV" in r}):
        for kind, target, name in [("dense", None, "dense"), ("arrow", 0.25, "arrow 25%"), ("arrow", 0.5, "arrow 50%"),
                                   ("arrow", 0.75, "arrow 75%"), ("mixed", None, "mixed")]:
            t2, t5 = ms(kind, 64, NV, 2, target), ms(kind, 64, NV, 5, target)
            print(f"{NV:>6}+{512:<4} {name:>12} {t2:>8.3f} {t5:>8.3f} {t2 / t5:>5.2f}x")
# Version 10: tail-balanced work lists (bench_attn_gpu --balance, or --balance-split128: rows marked
# split128) against the lists' own order, with
# the schedule model's predicted ratio (attn_sched.h); outputs must be bit-equal
BAL = [r for r in ours if r["kind"] == "balance"]
if BAL:
    print("\n== tail-balanced work lists (default variant, B=1): unbalanced ms / balanced ms vs the model's prediction ==")
    print(f"{'D':>4} {'tokens':>11} {'plan':>10} {'rows':>4} {'items':>5} {'+pcs':>4} {'unbal ms':>9} {'bal ms':>9} {'ratio':>7} {'pred':>7} {'idle':>6} {'outputs':>9}")
    for r in BAL:
        ok = "bit-equal" if r["differ"] == 0 and r["nan"] == 0 else "DIFFER"
        print(f"{r['D']:>4} {r['NV']:>6}+{r['NT']:<4} {r['plan']:>10} {r['rows']:>4} {r['items']:>5} {r['pieces']:>4} {r['unbal_ms']:>9.4f} {r['bal_ms']:>9.4f} {r['unbal_ms']/r['bal_ms']:>6.3f}x {r['pred']:>6.3f}x {100*r['idle']:>5.1f}% {ok:>9}{'  split128' if r.get('split128') else ''}")
    print("   ratio > 1: the balanced list is faster; pred 1.000x: the model left the list as it was (the row is a noise check);")
    print("   idle: the model's idle CTA time at the end of the unbalanced launch")
