#!/usr/bin/env python3
"""Compare the SASS of the kernels in two CUDA objects (.o from the build, or .cubin), per kernel:
byte-identical or not (instructions and encodings; addresses and line info ignored), instruction
class counts, registers and spill/stack bytes (cuobjdump -res-usage). No GPU needed: this is how a
refactor of a kernel is checked to leave its machine code alone (docs/DESIGN.md, CUDA attention
kernel).
  python3 tools/sass_diff.py OLD.o [OLD2.o ...] NEW.o [--map 'OLD_RE=>NEW']...
(several old objects when kernels moved between files: their kernels are pooled). Kernels are matched by demangled name without the anonymous namespace; --map rewrites old names
(Python re.sub) first, e.g. --map 'attn_wgmma3_kernel<(.*)>=>attn_wgmma_kernel<3, 64, false, \\1>'.
Old objects: build the old revision in a second worktree, or compile one file with the flags of
build/CMakeFiles/dfa.dir/flags.make. CUOBJDUMP (env) or cuobjdump on PATH. Exit status 1 if any
matched kernel differs or a kernel is missing on one side.
For a kernel that differs it also prints "schedule similarity": the difflib ratio of the two
instruction sequences with encodings, register numbers and constants blanked out (1.0: the same
instructions in the same order, only registers renamed). Session 5 saw edits outside a hot loop
move it to 0.65-0.87 and dense timings by 2-7 %: below ~0.95, measure before trusting a change."""
import difflib
import os
import re
import shutil
import subprocess
import sys

CLASSES = ["HGMMA", "HMMA", "MUFU", "BAR", "SYNCS", "UTMALDG", "STG", "STS", "ST", "LDG", "LDS", "LD", "SHFL"]


def tool():
    t = os.environ.get("CUOBJDUMP") or shutil.which("cuobjdump")
    if not t:
        sys.exit("cuobjdump not found (set CUOBJDUMP)")
    return t


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return [re.sub(r"\(anonymous namespace\)::", "", d) for d in out]


def kernels(obj, maps):
    sass = subprocess.run([tool(), "-sass", obj], capture_output=True, text=True, check=True).stdout
    res = subprocess.run([tool(), "-res-usage", obj], capture_output=True, text=True, check=True).stdout
    code, cur = {}, None
    for line in sass.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            cur = m.group(1)
            code[cur] = []
        elif cur and re.match(r"\s*/\*[0-9a-f]{4}\*/", line):
            # whitespace collapsed: cuobjdump pads columns by the longest line of the dump
            code[cur].append(" ".join(re.sub(r"^\s*/\*[0-9a-f]{4,5}\*/", "", line).split()))
        elif cur and re.match(r"\s*/\* 0x[0-9a-f]{16} \*/", line):
            code[cur][-1] += " " + line.strip()
    usage, fn = {}, None
    for line in res.splitlines():
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            fn = m.group(1)
        elif fn and "REG:" in line:
            usage[fn] = dict(re.findall(r"(\w+(?:\[\d\])?):(\d+)", line))
            fn = None
    names = list(code)
    out = {}
    for raw, d in zip(names, demangle(names)):
        for old, new in maps:
            d = re.sub(old, new, d)
        out[d] = (code[raw], usage.get(raw, {}))
    return out


def schedule_similarity(a, b):
    def norm(code):
        return [re.sub(r"0x[0-9a-f]+", "X", re.sub(r"\bU?R\d+\b|\bU?P\d\b", "R", c.split(" /*")[0])) for c in code]
    return difflib.SequenceMatcher(None, norm(a), norm(b), autojunk=False).ratio()


def summary(code, usage):
    ops = [re.sub(r"^(@!?U?P\w+\s+)", "", c).split()[0].split(".")[0] for c in code]
    cls = " ".join(f"{c}={sum(o == c for o in ops)}" for c in CLASSES if any(o == c for o in ops))
    return f"{cls} instrs={len(code)} regs={usage.get('REG', '?')} stack={usage.get('STACK', '?')} " \
           f"local={usage.get('LOCAL', '?')}"


def main(argv):
    maps, files = [], []
    i = 0
    while i < len(argv):
        if argv[i] == "--map" and i + 1 < len(argv):
            old, new = argv[i + 1].split("=>", 1)
            maps.append((old, new))
            i += 2
        else:
            files.append(argv[i])
            i += 1
    if len(files) < 2:
        sys.exit(__doc__)
    a, b = {}, kernels(files[-1], [])
    for f in files[:-1]:
        a.update(kernels(f, maps))
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"ONLY IN {'NEW' if name in b else 'OLD'}: {name}")
            bad += 1
            continue
        same = a[name][0] == b[name][0]
        bad += not same
        print(f"{'identical' if same else 'DIFFERS  '} {name}")
        print(f"    old: {summary(*a[name])}")
        if not same:
            print(f"    new: {summary(*b[name])}")
            print(f"    schedule similarity {schedule_similarity(a[name][0], b[name][0]):.3f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
