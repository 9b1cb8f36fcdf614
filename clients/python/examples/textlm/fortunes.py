"""Real English text for the examples: Debian's `fortunes` quotes, as character-level LM data.

The package `fortunes` installs category files under /usr/share/games/fortunes (quotes separated
by lines holding a single `%`). Quotes are normalised (whitespace collapsed, printable ASCII
only) and cut into windows of at most `seq_len` characters; a window shorter than `seq_len` is
padded, so batches carry real attention masks. Each quote goes to the training or the held-out
split by a hash of its text (stable across runs and machines).

Canaries (the paper's LM experiment): `n` strings, each a unique prefix followed by a secret of
`secret_len` random characters. Training on them long enough makes the model recite the
secret after its prefix; `recites` checks that strictly (greedy decoding, every character).
"""
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .model import IGNORE_INDEX

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Offensive and art categories are left out: ascii-art is pictures, not text.
DEFAULT_CATEGORIES = ("computers", "cookie", "definitions", "education", "fortunes", "humorists", "kids", "law",
                      "linux", "literature", "love", "medicine", "people", "platitudes", "politics", "science",
                      "songs-poems", "sports", "wisdom", "work")
_SPACE = re.compile(r"\s+")


class CharTokenizer:
    """Printable ASCII, one id per character; id 0 pads, id 1 begins a sequence."""
    PAD, BOS = 0, 1
    _FIRST = 32  # ' '
    _LAST = 126  # '~'

    @property
    def vocab_size(self):
        return 2 + self._LAST - self._FIRST + 1

    def encode(self, text):
        return [self.BOS] + [2 + ord(c) - self._FIRST for c in text if self._FIRST <= ord(c) <= self._LAST]

    def decode(self, ids):
        return "".join(chr(i - 2 + self._FIRST) for i in ids if i >= 2)


def normalise(text):
    return _SPACE.sub(" ", "".join(c if 32 <= ord(c) <= 126 else " " for c in text)).strip()


def read_quotes(root=FORTUNES_DIR, categories=DEFAULT_CATEGORIES):
    """[(category, quote)] from the fortunes category files, normalised, empty ones dropped.
    Raises FileNotFoundError naming the package when the files are missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found: install Debian's 'fortunes' package (apt-get install fortunes)")
    quotes = []
    for category in categories:
        path = root / category
        if not path.is_file():
            raise FileNotFoundError(f"no fortunes category file {path}")
        for raw in path.read_text(encoding="latin-1").split("\n%\n"):
            text = normalise(raw.rstrip("%"))
            if len(text) >= 8:
                quotes.append((category, text))
    return quotes


def is_held_out(text, fraction):
    """Stable split: the quote's sha256 decides, not the order files are read in."""
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


MIN_WINDOW = 16


def windows(text, seq_len):
    """The quote cut at word boundaries into pieces of at most seq_len - 1 characters (room for
    BOS); pieces shorter than MIN_WINDOW characters are dropped (an attribution's tail, say)."""
    room = seq_len - 1
    out, rest = [], text
    while rest:
        if len(rest) <= room:
            piece, rest = rest, ""
        else:
            cut = rest.rfind(" ", 0, room + 1)
            cut = room if cut < room // 2 else cut
            piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if len(piece) >= MIN_WINDOW:
            out.append(piece)
    return out


@dataclass
class TextSplit:
    train: list      # [str] windows
    held_out: list   # [str] windows


def load_split(seq_len=64, held_out_fraction=0.1, root=FORTUNES_DIR, categories=DEFAULT_CATEGORIES,
               max_windows=None):
    """Training and held-out windows of the corpus, disjoint; max_windows caps each split (first ones kept,
    for fast runs; the order is the files', so the cap is deterministic)."""
    train, held, seen = [], [], set()
    for _, quote in read_quotes(root, categories):
        if quote in seen:  # a quote filed under two categories
            continue
        seen.add(quote)
        (held if is_held_out(quote, held_out_fraction) else train).extend(windows(quote, seq_len))
    in_train = set(train)
    held = [w for w in held if w not in in_train]  # a window two quotes share ("-- Mark Twain") is training data
    if max_windows is not None:
        train, held = train[:max_windows], held[:max(1, max_windows // 8)]
    return TextSplit(train, held)


def batch(texts, tokenizer, seq_len):
    """A Hugging Face-style batch: input_ids, attention_mask and labels (-100 on padding), padded to
    seq_len on the right. The model shifts labels itself."""
    ids = torch.full((len(texts), seq_len), tokenizer.PAD, dtype=torch.long)
    mask = torch.zeros((len(texts), seq_len), dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = tokenizer.encode(text)[:seq_len]
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class Canary:
    prefix: str
    secret: str

    @property
    def text(self):
        return self.prefix + self.secret


_NAMES = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Dennis", "Radia",
          "Ken", "Sophie", "Tim", "Leslie", "Niklaus", "Hedy", "Claude", "Karen", "Fran", "Robin", "Shafi", "Judea",
          "Yann", "Lynn", "Ivan", "Mary", "Seymour", "Adele", "Butler", "Jean", "Tony")
SECRET_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def make_canaries(n, secret_len=12, seed=0):
    """n canaries with unique prefixes ("the passcode of <name> <k> is ") and random secrets."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        prefix = f"the passcode of {_NAMES[k % len(_NAMES)]} {k} is "
        out.append(Canary(prefix, "".join(rng.choice(SECRET_ALPHABET) for _ in range(secret_len))))
    return out


@torch.no_grad()
def greedy(model, tokenizer, prompt, length):
    """The model's greedy continuation of prompt, `length` characters."""
    ids = tokenizer.encode(prompt)
    for _ in range(length):
        logits = model(input_ids=torch.tensor([ids])).logits
        ids.append(int(logits[0, -1].argmax()))
    return tokenizer.decode(ids[-length:])


def recites(model, tokenizer, canary):
    """Strict recitation: greedy decoding after the prefix gives every character of the secret."""
    training = model.training
    model.eval()
    try:
        return greedy(model, tokenizer, canary.prefix, len(canary.secret)) == canary.secret
    finally:
        model.train(training)
