"""Train the two tokenizers of the model on the caption corpus (tokenizers library).

tokenizer/    CLIP-style byte-level BPE: NFC + lowercase + whitespace collapse, CLIP's split
              regex, byte-level alphabet, '</w>' end-of-word suffix, <|startoftext|> ...
              <|endoftext|> around every text, padded with <|endoftext|> (as FLUX's CLIP
              tokenizer), model_max_length 77.
tokenizer_2/  T5-style Unigram: whitespace split, Metaspace '▁' pre-tokenizer (case-sensitive
              like T5; the corpus has capitalised words too), <pad>=0,
              </s>=1, <unk>=2, '</s>' appended to every text.

The pipelines (normalizer, pre-tokenizer, post-processor, decoder) are exactly the ones
transformers v5's CLIPTokenizer and T5Tokenizer build for themselves (they ignore those parts
of tokenizer.json), so tokenizer.json alone (what the C engine reads) and FluxPipeline agree;
check() verifies that on a set of strings. Both are written in the diffusers FLUX layout (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) and load with transformers' CLIPTokenizer / T5TokenizerFast.
The corpus is deterministic (dataset.caption_corpus(seed=0, n)) but the trainers are not
bit-reproducible (hash-map order decides ids among equal counts), so the committed files in
tools/train/tokenizers/ are the reference: the models' vocabulary sizes and every trained
checkpoint depend on them (a dit checkpoint records their hash). Regenerate only on purpose.

    python3 tools/train/tokenizer.py [--out tools/train/tokenizers] [--n 20000]
"""
import argparse
import json
import os
import string

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import dataset

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_MAX_LEN = 77
T5_SPECIALS = ["<pad>", "</s>", "<unk>"]


def build_clip(corpus, vocab_size):
    tok = Tokenizer(models.BPE(unk_token=CLIP_EOS, end_of_word_suffix="</w>", continuing_subword_prefix="",
                               fuse_unk=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[CLIP_BOS, CLIP_EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    # as CLIP: every byte symbol exists alone and word-final, so no input byte is dropped
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        for t in (c, c + "</w>"):
            if t not in vocab:
                vocab[t] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    bos, eos = tok.token_to_id(CLIP_BOS), tok.token_to_id(CLIP_EOS)
    tok.post_processor = processors.RobertaProcessing((CLIP_EOS, eos), (CLIP_BOS, bos),
                                                      trim_offsets=False, add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def build_t5(corpus, vocab_size):
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=T5_SPECIALS, unk_token="<unk>",
                                      show_progress=False, max_piece_length=16,
                                      initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation))
    tok.train_from_iterator(corpus, trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    return tok


def _write(path, tok, config, special):
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(path, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
        f.write("\n")


def build(out, n=20000, clip_vocab=1024, t5_vocab=512):
    corpus = dataset.caption_corpus(0, n)
    # The Unigram trainer seeds its pieces from substrings seen in >= 2 distinct words, so a
    # word that occurs in one form only ("large") would be spelt letter by letter. Adding each
    # word with a trailing comma and full stop gives every word a second form.
    words = sorted({w for c in corpus for w in c.split()})
    corpus += [" ".join(w + p for w in words) for p in (",", ".")]
    corpus += [" ".join(w.capitalize() + p for w in words) for p in ("", ",", ".")]
    clip = build_clip(corpus, clip_vocab)
    t5 = build_t5(corpus, t5_vocab)
    _write(os.path.join(out, "tokenizer"), clip, {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": CLIP_MAX_LEN, "do_lower_case": True,
        "bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "pad_token": CLIP_EOS, "unk_token": CLIP_EOS,
        "clean_up_tokenization_spaces": False, "padding_side": "right"},
        {"bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "pad_token": CLIP_EOS, "unk_token": CLIP_EOS})
    _write(os.path.join(out, "tokenizer_2"), t5, {
        "tokenizer_class": "T5Tokenizer", "model_max_length": 512, "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "extra_ids": 0, "additional_special_tokens": [],
        "clean_up_tokenization_spaces": False, "padding_side": "right"},
        {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    return clip, t5


CHECK_STRINGS = [
    "a red circle left of a blue square", "A Red circle  left of a BLUE square!", "",
    "three small green stars on a white background", "4 tiny cyan rings, a purple star.",
    "a medium-sized orange ring in the top left corner", "  leading and trailing  ", "zebra ünïcode 123",
]


def check(out):
    """Token ids from tokenizer.json alone == from transformers' classes (as FluxPipeline loads)."""
    from transformers import CLIPTokenizer, T5TokenizerFast
    pairs = [(CLIPTokenizer, "tokenizer"), (T5TokenizerFast, "tokenizer_2")]
    for cls, sub in pairs:
        raw = Tokenizer.from_file(os.path.join(out, sub, "tokenizer.json"))
        hf = cls.from_pretrained(os.path.join(out, sub))
        for s in CHECK_STRINGS:
            a, b = raw.encode(s).ids, hf(s).input_ids
            if a != b:
                raise SystemExit(f"tokenizer mismatch in {sub} for {s!r}: tokenizer.json {a} vs {cls.__name__} {b}")
    return True


def info(path):
    """Vocabulary size and special ids of a saved tokenizer folder (for model configs)."""
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    return tok.get_vocab_size(), {t: tok.token_to_id(t) for t in (CLIP_BOS, CLIP_EOS, *T5_SPECIALS)
                                  if tok.token_to_id(t) is not None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizers"))
    ap.add_argument("--n", type=int, default=20000)
    a = ap.parse_args()
    clip, t5 = build(a.out, a.n)
    check(a.out)
    s = "a large purple star to the left of two small cyan rings on a white background"
    print("clip vocab", clip.get_vocab_size(), clip.encode(s).tokens)
    print("t5   vocab", t5.get_vocab_size(), t5.encode(s).tokens)


if __name__ == "__main__":
    main()
