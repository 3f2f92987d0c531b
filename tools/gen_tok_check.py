#!/usr/bin/env python3
"""A larger tokenizer check than the committed fixtures allow: a T5-style Unigram tokenizer with
SentencePiece's full nmt_nfkc Precompiled charsmap (what real T5 tokenizer.json files carry,
240 KB) and the tokenizers library's ids for ~2400 strings (every code point U+0020..U+2FFFF in
runs of 97, random strings, the fixture strings).
  python3 tools/gen_tok_check.py /tmp/tokcheck && DFA_TOK_EXTRA=/tmp/tokcheck build/test_tokenizer"""
import json
import os
import random
import struct
import sys

os.environ["RAYON_NUM_THREADS"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import gen_text as g  # noqa: E402
import sentencepiece as spm  # noqa: E402
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers  # noqa: E402


def varint(buf, i):
    v = s = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << s
        s += 7
        if not b & 0x80:
            return v, i


def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        fno, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
            yield fno, v
        elif wt == 1:
            yield fno, buf[i:i + 8]
            i += 8
        elif wt == 5:
            yield fno, buf[i:i + 4]
            i += 4
        elif wt == 2:
            ln, i = varint(buf, i)
            yield fno, buf[i:i + ln]
            i += ln


def main(out):
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, "corpus.txt")
    open(corpus, "w").write("\n".join(g.CORPUS))
    prefix = os.path.join(out, "m")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=400, model_type="unigram",
                                   minloglevel=2)  # default normalization: nmt_nfkc
    blob = open(prefix + ".model", "rb").read()
    charsmap, vocab = None, []
    for f, sub in fields(blob):
        if f == 3:  # normalizer_spec.precompiled_charsmap
            charsmap = dict(fields(sub)).get(2)
        elif f == 1:  # pieces: piece = 1, score = 2 (float)
            d = dict(fields(sub))
            vocab.append((d[1].decode(), struct.unpack("<f", d[2])[0] if 2 in d else 0.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.add_special_tokens(["<unk>", "<s>", "</s>", "<pad>"])
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    rng = random.Random(5)
    strs = g.test_strings()
    cps = [c for c in range(0x20, 0x30000) if not 0xD800 <= c <= 0xDFFF]
    strs += ["".join(chr(c) for c in cps[i:i + 97]) for i in range(0, len(cps), 97)]
    strs += ["".join(chr(rng.choice(cps)) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    # transformers 5's T5Tokenizer over the same file (what diffusers pipelines run)
    from transformers import T5TokenizerFast
    tok.post_processor = None
    hf = T5TokenizerFast.from_pretrained(out, extra_ids=0)
    json.dump([{"text": s, "ids": tok.encode(s).ids, "ids_hf": hf(s, add_special_tokens=False)["input_ids"]}
               for s in strs], open(os.path.join(out, "cases.json"), "w"), ensure_ascii=False)
    print("%s: tokenizer.json (charsmap %d bytes) and %d cases" % (out, len(charsmap), len(strs)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tokcheck")
