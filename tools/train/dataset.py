"""Procedural captioned images for training dfa's own small text-to-image model.

Scenes (shapes, colours, sizes, counts, positions, backgrounds, textures) are sampled in
Python from a numpy Generator seeded by (seed, index, attempt), so sample `index` of a
stream is the same whatever the batch size, worker or machine. Rendering is batched and
vectorised in torch (signed distance fields, anti-aliased by one pixel), on the CPU or the
GPU: the training loop renders on the GPU, so no data loader workers are needed.

Splits (the rule, also in tools/train/README.md):
  heldout  scenes with at least one object whose (colour, shape) pair is in HELDOUT_PAIRS
           (compositional generalisation: the model never sees e.g. a purple star).
  val      other scenes whose canonical caption has crc32 % VAL_MOD == 0 (in distribution,
           exact captions never trained on).
  train    everything else. Training only ever draws train scenes.
The canonical caption is the scene described with the first phrasing of every template,
so all phrasings of one scene fall in the same split.

CLI:  python3 tools/train/dataset.py --grid out.png --n 16 --size 256 [--split val]
      python3 tools/train/dataset.py --prompts val --n 64 > prompts.txt
      python3 tools/train/dataset.py --bench --size 512 --n 64
"""
import argparse
import math
import time
import zlib

import numpy as np
import torch

PALETTE = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (245, 215, 40), "orange": (245, 140, 30), "purple": (140, 60, 180),
    "pink": (245, 130, 190), "cyan": (50, 200, 220), "brown": (130, 80, 40),
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128),
}
COLORS = list(PALETTE)
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon"]
PLURAL = {s: s + "es" if s.endswith("ss") else s + "s" for s in SHAPES}
SIZES = {"small": (0.055, 0.075), "medium": (0.095, 0.125), "large": (0.17, 0.21)}
SIZE_WORDS = {"small": ["small", "small", "tiny"], "medium": ["medium", "medium-sized", "medium"],
              "large": ["large", "big", "large"]}
NUM_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
FILLS = ["solid", "stripes", "dots", "checker"]
BG_KINDS = ["plain", "gradient", "stripes", "dots", "checker"]
HELDOUT_PAIRS = {("purple", "star"), ("orange", "ring"), ("green", "triangle"),
                 ("pink", "hexagon"), ("cyan", "cross"), ("yellow", "diamond")}
VAL_MOD = 50
MAX_OBJ = 4
# 3x3 absolute positions: word, centre (x, y) in [0, 1], y pointing down
POSITIONS = [
    ("in the top left corner", 0.22, 0.22), ("at the top", 0.5, 0.22),
    ("in the top right corner", 0.78, 0.22), ("on the left", 0.22, 0.5),
    ("in the center", 0.5, 0.5), ("on the right", 0.78, 0.5),
    ("in the bottom left corner", 0.22, 0.78), ("at the bottom", 0.5, 0.78),
    ("in the bottom right corner", 0.78, 0.78),
]
# extent of each shape relative to its size parameter r (for placement)
EXTENT = {"circle": 1.0, "square": 0.9 * math.sqrt(2), "triangle": 1.0, "star": 1.0,
          "ring": 1.0, "cross": 1.0, "diamond": 1.0, "hexagon": 1.0}


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


class Obj:
    __slots__ = ("shape", "color", "size", "cx", "cy", "r", "fill", "color2", "period")

    def __init__(self, shape, color, size):
        self.shape, self.color, self.size = shape, color, size
        self.cx = self.cy = self.r = 0.0
        self.fill, self.color2, self.period = "solid", color, 0.05


class Scene:
    """One image: background, objects, its kind and phrasing choices."""

    def __init__(self):
        self.bg = {}
        self.objs = []
        self.kind = ""
        self.pos_word = None      # single: absolute position phrase or None
        self.relation = None      # pair: "left", "right", "above", "below"
        self.caption = ""
        self.canonical = ""

    def split(self):
        if any((o.color, o.shape) in HELDOUT_PAIRS for o in self.objs):
            return "heldout"
        if zlib.crc32(self.canonical.encode()) % VAL_MOD == 0:
            return "val"
        return "train"


# ---------------------------------------------------------------- captions

def _obj_phrase(o, rng, canon, with_size=True, count=1):
    size = ""
    if with_size:
        size = SIZE_WORDS[o.size][0 if canon else int(rng.integers(3))] + " "
    noun = o.shape if count == 1 else PLURAL[o.shape]
    if o.fill == "solid":
        core = f"{size}{o.color} {noun}"
    elif o.fill == "checker":
        core = f"{size}{o.color} and {o.color2} checkered {noun}"
    else:
        what = "stripes" if o.fill == "stripes" else "dots"
        core = f"{size}{o.color} {noun} with {o.color2} {what}"
    if count == 1:
        return f"{_article(core)} {core}"
    if not canon and rng.random() < 0.2:
        return f"{count} {core}"
    return f"{NUM_WORDS[count]} {core}"


def _bg_phrase(bg, rng, canon):
    v = 0 if canon else int(rng.integers(2))
    c1, c2 = bg["c1"], bg["c2"]
    k = bg["kind"]
    if k == "plain":
        return [f"a {c1} background", f"a plain {c1} background"][v]
    if k == "gradient":
        if bg["angle"] == 0.0:  # varies along x
            return [f"a gradient from {c1} on the left to {c2} on the right",
                    f"a {c1} to {c2} horizontal gradient"][v]
        return [f"a gradient from {c1} at the top to {c2} at the bottom",
                f"a {c1} to {c2} vertical gradient"][v]
    if k == "stripes":
        o = bg["orient"]
        return [f"a background of {c1} and {c2} {o} stripes", f"a {c1} and {c2} {o} striped background"][v]
    if k == "dots":
        return [f"a {c1} background with {c2} dots", f"a {c1} background with {c2} polka dots"][v]
    return [f"a {c1} and {c2} checkerboard background", f"a {c1} and {c2} checkered background"][v]


def _join(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_REL = {
    "left": ["{a} to the left of {b}", "{a} left of {b}", "{b} to the right of {a}",
             "{a} on the left and {b} on the right"],
    "right": ["{a} to the right of {b}", "{a} right of {b}", "{b} to the left of {a}",
              "{a} on the right and {b} on the left"],
    "above": ["{a} above {b}", "{a} over {b}", "{b} below {a}", "{a} on top and {b} at the bottom"],
    "below": ["{a} below {b}", "{a} under {b}", "{b} above {a}", "{a} at the bottom and {b} on top"],
}
_TEMPLATES = ["{o} on {bg}", "{o} against {bg}", "{BG} with {o}", "a picture of {o} on {bg}",
              "an image of {o} on {bg}", "{o}, {bg}", "{o}"]
_TEMPLATE_P = np.array([0.3, 0.1, 0.15, 0.1, 0.1, 0.15, 0.1])


def _describe(sc, rng, canon):
    objs = sc.objs
    if sc.kind == "single":
        o = _obj_phrase(objs[0], rng, canon)
        if sc.pos_word:
            o = f"{o} {sc.pos_word}"
    elif sc.kind == "count":
        o = _obj_phrase(objs[0], rng, canon, count=len(objs))
    elif sc.kind == "pair":
        ws = canon or rng.random() < 0.5
        a, b = (_obj_phrase(x, rng, canon, with_size=ws) for x in objs)
        tpl = _REL[sc.relation][0 if canon else int(rng.integers(4))]
        o = tpl.format(a=a, b=b)
    else:
        ws = canon or rng.random() < 0.5
        o = _join([_obj_phrase(x, rng, canon, with_size=ws) for x in objs])
    bg = _bg_phrase(sc.bg, rng, canon)
    t = 0 if canon else int(rng.choice(len(_TEMPLATES), p=_TEMPLATE_P))
    cap = _TEMPLATES[t].format(o=o, bg=bg, BG=bg)
    if not canon and rng.random() < 0.25:
        cap = cap[0].upper() + cap[1:]   # T5 is case-sensitive: see "A red circle" too
    return cap


# ---------------------------------------------------------------- sampling

def _pick_color(rng, avoid):
    while True:
        c = COLORS[int(rng.integers(len(COLORS)))]
        if c not in avoid:
            return c


def _sample_bg(rng, avoid):
    kind = BG_KINDS[int(rng.choice(5, p=[0.4, 0.3, 0.1, 0.1, 0.1]))]
    c1 = _pick_color(rng, avoid)
    c2 = _pick_color(rng, set(avoid) | {c1})
    bg = {"kind": kind, "c1": c1, "c2": c2 if kind != "plain" else c1, "angle": 0.0,
          "period": 0.0, "orient": ""}
    if kind == "gradient":
        bg["angle"] = float(rng.integers(2)) * 0.5 * math.pi   # 0: along x, pi/2: along y
    elif kind == "stripes":
        i = int(rng.integers(3))
        bg["orient"] = ["vertical", "horizontal", "diagonal"][i]
        bg["angle"] = [0.0, 0.5 * math.pi, 0.25 * math.pi][i]
        bg["period"] = float(rng.uniform(0.06, 0.12))
    elif kind in ("dots", "checker"):
        bg["period"] = float(rng.uniform(0.06, 0.12))
    return bg


def _new_obj(rng, size, bg_colors, forced=None):
    if forced is not None:
        color, shape = forced
    else:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = _pick_color(rng, bg_colors)
    o = Obj(shape, color, size)
    lo, hi = SIZES[size]
    o.r = float(rng.uniform(lo, hi))
    if size != "small" and rng.random() < 0.2:
        o.fill = FILLS[1 + int(rng.integers(3))]
        o.color2 = _pick_color(rng, {color})
        o.period = o.r * float(rng.uniform(0.35, 0.5))
    return o


def _place(rng, objs, margin=0.03, gap=0.03, tries=200):
    """Random non-overlapping centres inside the image; False if it cannot."""
    for o in objs:
        ext = o.r * EXTENT[o.shape]
        for _ in range(tries):
            o.cx = float(rng.uniform(ext + margin, 1 - ext - margin))
            o.cy = float(rng.uniform(ext + margin, 1 - ext - margin))
            ok = True
            for p in objs:
                if p is o:
                    break
                if math.hypot(o.cx - p.cx, o.cy - p.cy) < ext + p.r * EXTENT[p.shape] + gap:
                    ok = False
                    break
            if ok:
                break
        else:
            return False
    return True


def _relation_holds(rel, a, b):
    dx, dy = b.cx - a.cx, b.cy - a.cy   # b relative to a (y down)
    if rel == "left":
        return dx > 0.1 and abs(dx) > 1.5 * abs(dy)
    if rel == "right":
        return -dx > 0.1 and abs(dx) > 1.5 * abs(dy)
    if rel == "above":
        return dy > 0.1 and abs(dy) > 1.5 * abs(dx)
    return -dy > 0.1 and abs(dy) > 1.5 * abs(dx)


def _sample_once(rng, force_heldout):
    sc = Scene()
    forced = None
    if force_heldout:
        pairs = sorted(HELDOUT_PAIRS)
        forced = pairs[int(rng.integers(len(pairs)))]   # (colour, shape)
    sc.bg = _sample_bg(rng, {forced[0]} if forced else set())
    bgc = {sc.bg["c1"], sc.bg["c2"]}
    if forced and forced[0] in bgc:
        return None
    sc.kind = ["single", "count", "pair", "multi"][int(rng.choice(4, p=[0.3, 0.25, 0.3, 0.15]))]
    if sc.kind == "single":
        size = ["small", "medium", "large"][int(rng.integers(3))]
        o = _new_obj(rng, size, bgc, forced)
        sc.objs = [o]
        ext = o.r * EXTENT[o.shape] + 0.03
        if rng.random() < 0.7:
            word, x, y = POSITIONS[int(rng.integers(9))]
            sc.pos_word = word
            o.cx = float(np.clip(x + rng.uniform(-0.05, 0.05), ext, 1 - ext))
            o.cy = float(np.clip(y + rng.uniform(-0.05, 0.05), ext, 1 - ext))
        elif not _place(rng, sc.objs):
            return None
    elif sc.kind == "count":
        n = int(rng.integers(2, MAX_OBJ + 1))
        size = ["small", "medium"][int(rng.integers(2)) if n <= 3 else 0]
        first = _new_obj(rng, size, bgc, forced)
        sc.objs = [first]
        for _ in range(n - 1):
            o = _new_obj(rng, size, bgc, (first.color, first.shape))
            o.r = first.r * float(rng.uniform(0.95, 1.05))
            o.fill, o.color2, o.period = first.fill, first.color2, first.period
            sc.objs.append(o)
        if not _place(rng, sc.objs):
            return None
    elif sc.kind == "pair":
        sizes = [["small", "medium", "large"][int(rng.integers(3))] for _ in range(2)]
        if sizes == ["large", "large"]:
            sizes[1] = "medium"
        a = _new_obj(rng, sizes[0], bgc, forced)
        b = _new_obj(rng, sizes[1], bgc)
        if (a.color, a.shape) == (b.color, b.shape):
            return None
        sc.objs = [a, b]
        sc.relation = ["left", "right", "above", "below"][int(rng.integers(4))]
        for _ in range(30):
            if _place(rng, sc.objs, tries=20) and _relation_holds(sc.relation, a, b):
                break
        else:
            return None
    else:
        n = int(rng.integers(3, MAX_OBJ + 1))
        sc.objs = [_new_obj(rng, ["small", "medium"][int(rng.integers(2))], bgc, forced if i == 0 else None)
                   for i in range(n)]
        if len({(o.color, o.shape) for o in sc.objs}) < n or not _place(rng, sc.objs):
            return None
    sc.canonical = _describe(sc, None, True)
    sc.caption = _describe(sc, rng, False)
    return sc


def sample_scene(seed, index, split="train"):
    """The scene number `index` of the stream (seed, split). Deterministic."""
    for attempt in range(10000):
        rng = np.random.default_rng([seed, index, attempt, {"train": 0, "val": 1, "heldout": 2}[split]])
        sc = _sample_once(rng, split == "heldout")
        if sc is not None and sc.split() == split:
            return sc
    raise RuntimeError(f"no {split} scene found for seed {seed} index {index}")


def sample_scenes(seed, start, n, split="train"):
    return [sample_scene(seed, start + i, split) for i in range(n)]


# ---------------------------------------------------------------- rendering

_BG_ID = {k: i for i, k in enumerate(BG_KINDS)}
_FILL_ID = {k: i for i, k in enumerate(FILLS)}
_SHAPE_ID = {k: i for i, k in enumerate(SHAPES)}


def scenes_to_params(scenes):
    """Pack scenes into fixed-size numpy arrays (objects padded to MAX_OBJ)."""
    b = len(scenes)
    f32 = np.float32
    p = {
        "bg_kind": np.zeros(b, np.int64), "bg_c1": np.zeros((b, 3), f32), "bg_c2": np.zeros((b, 3), f32),
        "bg_angle": np.zeros(b, f32), "bg_period": np.ones(b, f32),
        "active": np.zeros((b, MAX_OBJ), np.bool_), "shape": np.zeros((b, MAX_OBJ), np.int64),
        "cx": np.zeros((b, MAX_OBJ), f32), "cy": np.zeros((b, MAX_OBJ), f32),
        "r": np.full((b, MAX_OBJ), 0.1, f32), "fill": np.zeros((b, MAX_OBJ), np.int64),
        "c1": np.zeros((b, MAX_OBJ, 3), f32), "c2": np.zeros((b, MAX_OBJ, 3), f32),
        "period": np.ones((b, MAX_OBJ), f32),
    }
    for i, sc in enumerate(scenes):
        bg = sc.bg
        p["bg_kind"][i] = _BG_ID[bg["kind"]]
        p["bg_c1"][i] = PALETTE[bg["c1"]]
        p["bg_c2"][i] = PALETTE[bg["c2"]]
        p["bg_angle"][i] = bg["angle"]
        p["bg_period"][i] = bg["period"] or 1.0
        for j, o in enumerate(sc.objs):
            p["active"][i, j] = True
            p["shape"][i, j] = _SHAPE_ID[o.shape]
            p["cx"][i, j], p["cy"][i, j], p["r"][i, j] = o.cx, o.cy, o.r
            p["fill"][i, j] = _FILL_ID[o.fill]
            p["c1"][i, j] = PALETTE[o.color]
            p["c2"][i, j] = PALETTE[o.color2]
            p["period"][i, j] = o.period
    for k in ("bg_c1", "bg_c2", "c1", "c2"):
        p[k] /= 255.0
    return p


def _box(px, py, bx, by):
    qx, qy = px.abs() - bx, py.abs() - by
    return torch.hypot(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)


def _sdf(shape_id, px, py, r):
    """Signed distance (normalised units) of a shape centred at 0; py points UP."""
    if shape_id == 0:  # circle
        return torch.hypot(px, py) - r
    if shape_id == 1:  # square
        return _box(px, py, 0.9 * r, 0.9 * r)
    if shape_id == 2:  # equilateral triangle pointing up, circumradius r
        k = math.sqrt(3.0)
        s = r * k / 2  # half side
        x = px.abs() - s
        y = py + r / 2
        flip = (x + k * y) > 0
        x2 = torch.where(flip, (x - k * y) / 2, x)
        y2 = torch.where(flip, (-k * x - y) / 2, y)
        x2 = x2 - torch.minimum(torch.maximum(x2, -2 * s), torch.zeros_like(x2))
        return -torch.hypot(x2, y2) * torch.sign(y2)
    if shape_id == 3:  # five-pointed star, outer radius r, inner 0.45 r
        k1x, k1y = 0.809016994375, -0.587785252292
        x, y = px.abs(), py
        d = (k1x * x + k1y * y).clamp(min=0) * 2
        x, y = x - d * k1x, y - d * k1y
        d = (-k1x * x + k1y * y).clamp(min=0) * 2
        x, y = x + d * k1x, y - d * k1y
        x = x.abs()
        y = y - r
        rf = 0.45
        bax, bay = rf * -k1y, rf * k1x - 1.0
        h = ((x * bax + y * bay) / (bax * bax + bay * bay)).clamp(min=0)
        h = torch.minimum(h, r)
        return torch.hypot(x - bax * h, y - bay * h) * torch.sign(y * bax - x * bay)
    if shape_id == 4:  # ring
        return (torch.hypot(px, py) - 0.72 * r).abs() - 0.28 * r
    if shape_id == 5:  # plus-shaped cross
        return torch.minimum(_box(px, py, r, 0.32 * r), _box(px, py, 0.32 * r, r))
    if shape_id == 6:  # diamond
        return (px.abs() + py.abs() - r) / math.sqrt(2.0)
    # hexagon, flat top, circumradius r (distance exact on the edges' normals)
    c = math.sqrt(3.0) / 2
    ax, ay = px.abs(), py.abs()
    return torch.maximum(ay, ax * c + ay * 0.5) - r * c


def _cyc(x):
    """distance of x to the nearest integer + 0.5 ... i.e. |frac(x) - 0.5| in [0, 0.5]"""
    return (x - torch.floor(x) - 0.5).abs()


def _pattern(kind, u, v, period, angle, pix):
    """Coverage in [0, 1] of colour 2 for fills: 1 stripes, 2 dots, 3 checker; 0 -> zeros."""
    if kind == 1:
        x = (u * torch.cos(angle) + v * torch.sin(angle)) / period
        d = (0.25 - _cyc(x)) * period          # inside the band |frac-0.5| > 0.25 -> negative
        return (0.5 - d / pix).clamp(0, 1)
    if kind == 2:
        qx, qy = _cyc(u / period), _cyc(v / period)      # 0.5 at cell centre
        d = torch.hypot(0.5 - qx, 0.5 - qy) * period - 0.3 * period
        return (0.5 - d / pix).clamp(0, 1)
    if kind == 3:
        ax = (0.5 + (_cyc(u / (2 * period)) - 0.25) * 2 * period / pix).clamp(0, 1)
        ay = (0.5 + (_cyc(v / (2 * period)) - 0.25) * 2 * period / pix).clamp(0, 1)
        return ax * ay + (1 - ax) * (1 - ay)
    return torch.zeros_like(u)


def render(params, size, device="cpu", window=None):
    """Render packed scene params to (B, 3, size, size) float32 in [0, 1].

    window: optional (B, 4) array of (x0, y0, x1, y1) in normalised scene coordinates,
    to render crops at the same pixel scale (VAE training)."""
    t = {k: torch.as_tensor(v, device=device) for k, v in params.items()}
    b = t["bg_kind"].shape[0]
    ar = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    if window is None:
        win = torch.tensor([0.0, 0.0, 1.0, 1.0], device=device).expand(b, 4)
    else:
        win = torch.as_tensor(window, device=device, dtype=torch.float32)
    u = (win[:, 0:1] + (win[:, 2:3] - win[:, 0:1]) * ar[None]).view(b, 1, size)    # x
    v = (win[:, 1:2] + (win[:, 3:4] - win[:, 1:2]) * ar[None]).view(b, size, 1)    # y (down)
    pix = ((win[:, 2] - win[:, 0]) / size).view(b, 1, 1)
    u = u.expand(b, size, size)
    v = v.expand(b, size, size)

    # background
    img = torch.empty(b, 3, size, size, device=device)
    kind = t["bg_kind"]
    per = t["bg_period"].view(b, 1, 1)
    ang = t["bg_angle"].view(b, 1, 1)
    m = torch.zeros(b, size, size, device=device)
    grad = kind == 1
    if grad.any():
        g = torch.where(ang[grad] == 0, u[grad], v[grad])
        m[grad] = g
    for kid, fid in ((2, 1), (3, 2), (4, 3)):
        sel = kind == kid
        if sel.any():
            m[sel] = _pattern(fid, u[sel], v[sel], per[sel], ang[sel], pix[sel])
    c1, c2 = t["bg_c1"].view(b, 3, 1, 1), t["bg_c2"].view(b, 3, 1, 1)
    img = c1 + (c2 - c1) * m[:, None]

    # objects, painted in order
    for j in range(MAX_OBJ):
        act = t["active"][:, j]
        if not act.any():
            continue
        cov = torch.zeros(b, size, size, device=device)
        fillm = torch.zeros(b, size, size, device=device)
        px = u - t["cx"][:, j].view(b, 1, 1)
        py = t["cy"][:, j].view(b, 1, 1) - v
        r = t["r"][:, j].view(b, 1, 1)
        for sid in range(len(SHAPES)):
            sel = act & (t["shape"][:, j] == sid)
            if sel.any():
                d = _sdf(sid, px[sel], py[sel], r[sel])
                cov[sel] = (0.5 - d / pix[sel]).clamp(0, 1)
        for fid in (1, 2, 3):
            sel = act & (t["fill"][:, j] == fid)
            if sel.any():
                fillm[sel] = _pattern(fid, u[sel], v[sel], t["period"][:, j][sel].view(-1, 1, 1),
                                      torch.full_like(r[sel], 0.25 * math.pi), pix[sel])
        o1 = t["c1"][:, j].view(b, 3, 1, 1)
        o2 = t["c2"][:, j].view(b, 3, 1, 1)
        col = o1 + (o2 - o1) * fillm[:, None]
        img = img + (col - img) * cov[:, None]
    return img.clamp(0, 1)


def make_batch(seed, start, n, size, split="train", device="cpu"):
    """Images (n, 3, size, size) in [0, 1] and captions of stream items start..start+n-1."""
    scenes = sample_scenes(seed, start, n, split)
    return render(scenes_to_params(scenes), size, device), [s.caption for s in scenes]


def caption_corpus(seed, n):
    """Captions for tokenizer training: train split plus val/heldout (vocabulary only)."""
    out = [s.caption for s in sample_scenes(seed, 0, n, "train")]
    out += [s.caption for s in sample_scenes(seed, 0, max(n // 20, 1), "val")]
    out += [s.caption for s in sample_scenes(seed, 0, max(n // 20, 1), "heldout")]
    return out


def _save_grid(imgs, path, ncol=4):
    from PIL import Image
    b, _, h, w = imgs.shape
    nrow = (b + ncol - 1) // ncol
    grid = torch.ones(3, nrow * h, ncol * w)
    for i in range(b):
        grid[:, (i // ncol) * h:(i // ncol + 1) * h, (i % ncol) * w:(i % ncol + 1) * w] = imgs[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(path)


def selftest():
    """Determinism, split rule, renderer range; raises AssertionError on failure."""
    a, b = sample_scenes(7, 100, 20), sample_scenes(7, 100, 20)
    assert [s.caption for s in a] == [s.caption for s in b], "scene sampling is not deterministic"
    assert sample_scene(7, 105).caption == a[5].caption, "scene depends on its batch"
    for split in ("train", "val", "heldout"):
        for s in sample_scenes(3, 0, 40, split):
            assert s.split() == split, (split, s.canonical)
            held = any((o.color, o.shape) in HELDOUT_PAIRS for o in s.objs)
            assert held == (split == "heldout"), s.canonical
            assert 1 <= len(s.objs) <= MAX_OBJ
            for o in s.objs:
                ext = o.r * EXTENT[o.shape]
                assert ext <= o.cx <= 1 - ext and ext <= o.cy <= 1 - ext, ("object outside", s.canonical)
                assert o.color not in (s.bg["c1"], s.bg["c2"]), ("object has a background colour", s.canonical)
            if s.kind == "pair":
                assert _relation_holds(s.relation, *s.objs), s.canonical
    p = scenes_to_params(a)
    img = render(p, 48)
    assert img.shape == (20, 3, 48, 48) and img.min() >= 0 and img.max() <= 1
    crop = render(p, 24, window=np.tile([[0.0, 0.0, 0.5, 0.5]], (20, 1)))
    assert (crop - img[:, :, :24, :24]).abs().max() < 1e-4, "a window must render the same pixels"
    print("dataset selftest ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--split", default="train", choices=["train", "val", "heldout"])
    ap.add_argument("--grid", help="write a PNG contact sheet and print the captions")
    ap.add_argument("--prompts", choices=["train", "val", "heldout"],
                    help="print N prompts of a split, one a line (for eval / calibration files)")
    ap.add_argument("--bench", action="store_true", help="time scene sampling and rendering")
    ap.add_argument("--selftest", action="store_true", help="check determinism, splits, renderer")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    if a.selftest:
        selftest()
    if a.prompts:
        for s in sample_scenes(a.seed, a.start, a.n, a.prompts):
            print(s.caption)
    if a.grid:
        imgs, caps = make_batch(a.seed, a.start, a.n, a.size, a.split)
        _save_grid(imgs, a.grid)
        for i, c in enumerate(caps):
            print(f"{a.start + i}: {c}")
    if a.bench:
        t0 = time.perf_counter()
        scenes = sample_scenes(a.seed, a.start, a.n, a.split)
        t1 = time.perf_counter()
        p = scenes_to_params(scenes)
        render(p, a.size, a.device)
        if a.device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        render(p, a.size, a.device)
        if a.device == "cuda":
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        print(f"sample {1e3 * (t1 - t0) / a.n:.3f} ms/scene; render {a.size}^2 on {a.device}: "
              f"{1e3 * (t3 - t2) / a.n:.3f} ms/image (first call {1e3 * (t2 - t1) / a.n:.3f})")


if __name__ == "__main__":
    main()
