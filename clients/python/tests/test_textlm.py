"""The examples' HF-style causal LM and fortunes corpus (examples/textlm) behave as documented."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from textlm import fortunes  # noqa: E402
from textlm.model import IGNORE_INDEX, TinyCausalLM, token_losses  # noqa: E402


def small_model(seed=0):
    torch.manual_seed(seed)
    return TinyCausalLM(fortunes.CharTokenizer().vocab_size, d_model=32, n_layers=2, n_heads=4, d_mlp=64,
                        max_len=64).eval()


class TinyCausalLMTest(unittest.TestCase):
    def setUp(self):
        self.tok = fortunes.CharTokenizer()
        self.model = small_model()
        self.batch = fortunes.batch(["hello world", "a longer sentence here"], self.tok, 32)

    def test_loss_is_the_mean_shifted_cross_entropy_over_non_ignored_targets(self):
        out = self.model(**self.batch)
        logits, labels = out.logits, self.batch["labels"]
        # independent reference: loop over every (row, position) with a real next token
        terms = [F.cross_entropy(logits[b, t][None], labels[b, t + 1][None])
                 for b in range(labels.shape[0]) for t in range(labels.shape[1] - 1) if labels[b, t + 1] != IGNORE_INDEX]
        self.assertAlmostEqual(float(out.loss), float(torch.stack(terms).mean()), places=5)
        per_token, valid = token_losses(logits, labels)
        self.assertEqual(int(valid.sum()), len(terms))
        self.assertAlmostEqual(float(per_token.sum() / valid.sum()), float(out.loss), places=5)

    def test_causal_a_later_token_never_changes_earlier_logits(self):
        ids = self.batch["input_ids"][1:].clone()
        before = self.model(input_ids=ids).logits
        ids[0, 10] = (ids[0, 10] + 7) % self.tok.vocab_size
        after = self.model(input_ids=ids).logits
        self.assertTrue(torch.allclose(before[0, :10], after[0, :10], atol=1e-6))
        self.assertFalse(torch.allclose(before[0, 10:], after[0, 10:], atol=1e-4))

    def test_padding_does_not_change_the_real_tokens_logits(self):
        short = fortunes.batch(["hello world"], self.tok, 12)
        padded = fortunes.batch(["hello world"], self.tok, 32)
        a = self.model(**short).logits[0]
        b = self.model(**padded).logits[0, :12]
        self.assertTrue(torch.allclose(a, b, atol=1e-5))
        self.assertEqual(int(padded["attention_mask"].sum()), 12)
        self.assertTrue((padded["labels"][0, 12:] == IGNORE_INDEX).all())

    def test_attention_calls_out_proj_through_its_weight_not_as_a_module(self):
        # why the client needs its own capture for attn.out_proj: a module hook there never fires
        calls = []
        self.model.blocks[0].attn.out_proj.register_forward_pre_hook(lambda m, i: calls.append(1))
        self.model(**self.batch)
        self.assertEqual(calls, [])


class FortunesTest(unittest.TestCase):
    def test_tokenizer_round_trip(self):
        tok = fortunes.CharTokenizer()
        text = "Hello, world! ~ 42"
        ids = tok.encode(text)
        self.assertEqual(ids[0], tok.BOS)
        self.assertEqual(tok.decode(ids), text)
        self.assertEqual(max(ids) + 1, tok.vocab_size)

    @unittest.skipUnless(fortunes.FORTUNES_DIR.is_dir(), "Debian package fortunes not installed")
    def test_corpus_split_is_stable_and_disjoint(self):
        split = fortunes.load_split(seq_len=64)
        again = fortunes.load_split(seq_len=64)
        self.assertEqual(split.train[:50], again.train[:50])
        self.assertGreater(len(split.train), 10000)
        self.assertGreater(len(split.held_out), 500)
        self.assertTrue(all(len(w) <= 63 for w in split.train))
        self.assertFalse(set(split.held_out) & set(split.train))
        self.assertTrue(all(len(w) >= fortunes.MIN_WINDOW for w in split.train + split.held_out))

    def test_canaries_have_unique_prefixes_and_secrets(self):
        canaries = fortunes.make_canaries(16)
        self.assertEqual(len({c.prefix for c in canaries}), 16)
        self.assertEqual(len({c.secret for c in canaries}), 16)
        self.assertTrue(all(len(c.secret) == 12 and len(c.text) < 63 for c in canaries))
        self.assertEqual([c.secret for c in fortunes.make_canaries(16)], [c.secret for c in canaries])

    def test_recites_only_when_greedy_decoding_gives_the_whole_secret(self):
        tok = fortunes.CharTokenizer()
        model = small_model()
        canary = fortunes.make_canaries(1)[0]
        self.assertFalse(fortunes.recites(model, tok, canary))
        # train on the canary alone until it is memorised
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        b = fortunes.batch([canary.text], tok, 64)
        for _ in range(300):
            loss = model(**b).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.assertTrue(fortunes.recites(model, tok, canary))
        self.assertTrue(model.training)


if __name__ == "__main__":
    unittest.main()
