"""Samples of an exported model drawn by dfa itself (the C engine, CPU) and a captioned contact sheet.

    python3 tools/train/dfa_samples.py --model models/dfa-shapes --prompts tools/train/sample_prompts.txt \
        --out tools/train/out/dfa-samples --sheet models/dfa-shapes/samples.png

Each line of --prompts is `split|prompt` (split: val, heldout or any label). Runs
`build/dfa generate -m MODEL -p PROMPT --seed SEED -o OUT/NN.png` with nothing else, so size, steps,
CFG scale, negative prompt and T5 length come from the model's dfa.json; an image already in OUT
is kept (delete it to redraw). Writes OUT/times.txt (wall seconds per image) and the sheet: tiles of
--tile pixels with the split and the prompt under each, colours reduced to a 256-colour palette to
keep the PNG small.
"""
import argparse
import os
import subprocess
import sys
import textwrap
import time

from PIL import Image, ImageDraw, ImageFont


def font(size):
    for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if os.path.exists(p):
            return ImageFont.truetype(p, size)
    return ImageFont.load_default()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--out", required=True, help="folder for the PNGs")
    ap.add_argument("--sheet", required=True)
    ap.add_argument("--dfa", default="build/dfa")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=192)
    ap.add_argument("--cols", type=int, default=4)
    a = ap.parse_args()
    rows = [ln.rstrip("\n").split("|", 1) for ln in open(a.prompts) if ln.strip() and not ln.startswith("#")]
    os.makedirs(a.out, exist_ok=True)
    paths = []
    with open(os.path.join(a.out, "times.txt"), "a") as log:
        for i, (split, prompt) in enumerate(rows):
            path = os.path.join(a.out, f"{i:02d}.png")
            paths.append(path)
            if os.path.exists(path):
                continue
            t0 = time.time()
            r = subprocess.run([a.dfa, "generate", "-m", a.model, "-p", prompt, "--seed", str(a.seed), "-o", path],
                               capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"dfa generate failed on {prompt!r}:\n{r.stderr}")
            log.write(f"{i}|{split}|{prompt}|{time.time() - t0:.1f} s\n")
            print(f"[{i}] {time.time() - t0:.1f} s  {split}: {prompt}", flush=True)
    T, cols = a.tile, a.cols
    f = font(11)
    wrap = max(10, int(T / 6.2))
    captions = [textwrap.wrap(f"{split}: {prompt}", wrap)[:4] for split, prompt in rows]
    cap_h = 14 * max(len(c) for c in captions) + 6
    n_rows = (len(rows) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * T, n_rows * (T + cap_h)), "white")
    d = ImageDraw.Draw(sheet)
    for i, path in enumerate(paths):
        x, y = (i % cols) * T, (i // cols) * (T + cap_h)
        sheet.paste(Image.open(path).convert("RGB").resize((T, T), Image.LANCZOS), (x, y))
        for k, line in enumerate(captions[i]):
            d.text((x + 4, y + T + 3 + 14 * k), line, fill="black", font=f)
    os.makedirs(os.path.dirname(os.path.abspath(a.sheet)), exist_ok=True)
    sheet.quantize(256).save(a.sheet, optimize=True)
    print(f"wrote {a.sheet} ({os.path.getsize(a.sheet) / 1e6:.2f} MB, {len(rows)} images)")


if __name__ == "__main__":
    main()
