"""BERT's WordPiece tokenizer, read from a Hugging Face `tokenizer.json` (no `tokenizers` package).

Implements what all-MiniLM-L6-v2's tokenizer.json declares: the BertNormalizer (clean text, CJK
characters isolated, lowercase, accents stripped: `strip_accents` null follows `lowercase`), the
BertPreTokenizer (split on whitespace and on every punctuation character), WordPiece (greedy
longest match, `##` continuation, `[UNK]` for a word that cannot be covered or is longer than
`max_input_chars_per_word`) and the single-sequence template `[CLS] A [SEP]`, truncated to
`max_length` (the file's truncation, 128) with the `[SEP]` kept.
"""
import json
import unicodedata
from pathlib import Path

import torch


def _is_punctuation(ch):
    cp = ord(ch)
    # ASCII non-alphanumerics count as punctuation in BERT, whatever their Unicode class ($, ^, `)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Co", "Cs")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    def __init__(self, vocab, unk="[UNK]", prefix="##", max_chars=100, lowercase=True, strip_accents=None,
                 max_length=128, cls="[CLS]", sep="[SEP]", pad="[PAD]"):
        self.vocab = vocab
        self.inverse = {i: t for t, i in vocab.items()}
        self.unk, self.prefix, self.max_chars = unk, prefix, max_chars
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.max_length = max_length
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = vocab[cls], vocab[sep], vocab[pad], vocab[unk]

    @classmethod
    def from_file(cls, path):
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        model, norm = spec["model"], spec.get("normalizer") or {}
        if model.get("type") != "WordPiece":
            raise ValueError(f"{path}: model type {model.get('type')}, WordPiece expected")
        trunc = spec.get("truncation") or {}
        return cls(model["vocab"], model.get("unk_token", "[UNK]"), model.get("continuing_subword_prefix", "##"),
                   model.get("max_input_chars_per_word", 100), norm.get("lowercase", True),
                   norm.get("strip_accents"), trunc.get("max_length", 128))

    def normalize(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = text.lower()
        return text

    @staticmethod
    def pre_tokenize(text):
        words, current = [], []
        for ch in text:
            if _is_whitespace(ch):
                if current:
                    words.append("".join(current))
                    current = []
            elif _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
        return words

    def word_pieces(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return [self.unk]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        return [p for w in self.pre_tokenize(self.normalize(text)) for p in self.word_pieces(w)]

    def encode(self, text):
        """[CLS] ids [SEP], at most max_length ids."""
        ids = [self.vocab[p] for p in self.tokenize(text)][:self.max_length - 2]
        return [self.cls_id] + ids + [self.sep_id]

    def batch(self, texts, length=None):
        """input_ids, attention_mask, token_type_ids (all 0), padded on the right to the longest
        (or `length`)."""
        encoded = [self.encode(t) for t in texts]
        width = length or max(len(e) for e in encoded)
        ids = torch.full((len(texts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            e = e[:width - 1] + [self.sep_id] if len(e) > width else e
            ids[row, :len(e)] = torch.tensor(e)
            mask[row, :len(e)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

    def decode(self, ids):
        text = []
        for i in ids:
            t = self.inverse.get(int(i), self.unk)
            if t in ("[CLS]", "[SEP]", "[PAD]"):
                continue
            if t.startswith(self.prefix) and text:
                text[-1] += t[len(self.prefix):]
            else:
                text.append(t)
        return " ".join(text)
