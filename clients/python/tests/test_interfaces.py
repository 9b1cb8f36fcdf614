"""The model interfaces users have, each against an independent reference (autograd, a hand-written
attention): dict batches with padding, MultiheadAttention's out_proj, gradient accumulation, bf16
autocast, a gradient scaler, and non-finite steps."""
import math
import sys
import unittest
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from curvewatch import Publisher, Watcher, _avro
from helpers import RecordingProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from textlm import fortunes  # noqa: E402
from textlm.model import TinyCausalLM  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-6)


def captures(producer):
    codec = _avro.codec("Capture")
    return [codec.decode(v) for t, k, v in producer.messages if t.endswith("captures")]


def as_tensor(t):
    return torch.frombuffer(bytearray(t["data"]), dtype=torch.float32).reshape(t["shape"])


def token_index(cap):
    return torch.frombuffer(bytearray(cap["token_sample"]), dtype=torch.int32).long()


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    return TinyCausalLM(fortunes.CharTokenizer().vocab_size, d_model=16, n_layers=2, n_heads=2, d_mlp=32, max_len=24)


def lm_batch():
    return fortunes.batch(["hello world, again", "short one", "a third line here"], fortunes.CharTokenizer(), 24)


def watcher(model, layers, **kw):
    prod = RecordingProducer()
    kw.setdefault("tokens_per_step", 0)
    return Watcher(model, layers, "iface", publisher=Publisher({}, producer=prod), **kw), prod


def outputs_of(module):
    """A test-side record of a module's inputs and outputs (the reference to differentiate against)."""
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    return seen, handle


class DictBatchPaddingTest(unittest.TestCase):
    def test_padded_tokens_are_not_captured_and_a_g_match_autograd(self):
        model = tiny_lm()
        layer = model.blocks[1].mlp.fc
        w, prod = watcher(model, ["blocks.1.mlp.fc"])
        batch = lm_batch()
        seen, handle = outputs_of(layer)
        loss = model(**batch).loss
        handle.remove()
        (a_ref, s), = seen
        (g_ref,) = torch.autograd.grad(loss, s, retain_graph=True)
        loss.backward()
        w.step(0, sample_ids=["x", "y", "z"])
        (cap,) = captures(prod)
        real = batch["attention_mask"].bool()
        self.assertEqual(cap["activations"]["shape"], [int(real.sum()), 16])
        torch.testing.assert_close(as_tensor(cap["activations"]), a_ref[real].detach(), **TOL)
        scale = cap["grad_scale"]
        self.assertEqual(scale, float(real.sum()))  # "tokens" counts real tokens only
        torch.testing.assert_close(as_tensor(cap["gradients"]), g_ref[real] * scale, **TOL)
        expected_index = torch.arange(3)[:, None].expand(3, 24)[real]
        self.assertTrue(torch.equal(token_index(cap), expected_index))
        # padded positions carry no gradient, so the captured rows hold the whole weight gradient
        a, g = as_tensor(cap["activations"]), as_tensor(cap["gradients"])
        torch.testing.assert_close(g.t() @ a / scale, layer.weight.grad, **TOL)

    def test_without_a_mask_key_every_token_is_captured(self):
        model = tiny_lm()
        w, prod = watcher(model, ["blocks.0.mlp.proj"], token_mask=None)
        model(**lm_batch()).loss.backward()
        w.step(0, sample_ids=["x", "y", "z"])
        self.assertEqual(captures(prod)[0]["activations"]["shape"], [3 * 24, 32])


def manual_attention(attn, h, padding):
    """nn.MultiheadAttention's forward written out (causal, key padding): the heads' concatenation
    that goes into out_proj, and the attention's output."""
    batch, length, d = h.shape
    heads = attn.num_heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)

    def split(t):
        return t.reshape(batch, length, heads, d // heads).transpose(1, 2)
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
    causal = torch.ones(length, length, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(causal, float("-inf")).masked_fill(padding[:, None, None, :], float("-inf"))
    concat = (torch.softmax(scores, dim=-1) @ split(v)).transpose(1, 2).reshape(batch, length, d)
    return concat, F.linear(concat, attn.out_proj.weight, attn.out_proj.bias)


class OutProjTest(unittest.TestCase):
    def step_with_reference(self, **options):
        """One watched step of blocks.0.attn.out_proj; returns (capture, batch, the heads' concatenation by
        hand, d loss / d out_proj output by autograd, the attention)."""
        model = tiny_lm(1)
        attn = model.blocks[0].attn
        w, prod = watcher(model, ["blocks.0.attn.out_proj"], **options)
        batch = lm_batch()
        seen, handle = outputs_of(model.blocks[0].ln1)
        seen_attn, handle_attn = outputs_of(attn)
        loss = model(**batch).loss
        handle.remove()
        handle_attn.remove()
        padding = batch["attention_mask"] == 0
        concat, out = manual_attention(attn, seen[0][1].detach(), padding)
        torch.testing.assert_close(out[~padding], seen_attn[0][1][0].detach()[~padding], **TOL)  # the reference is right
        (g_ref,) = torch.autograd.grad(loss, seen_attn[0][1][0], retain_graph=True)
        loss.backward()
        w.step(0, sample_ids=["x", "y", "z"])
        (cap,) = captures(prod)
        return cap, batch, concat, g_ref, attn

    def test_out_proj_input_and_output_gradient_match_a_hand_written_attention(self):
        cap, batch, concat, g_ref, attn = self.step_with_reference()
        real = batch["attention_mask"].bool()
        scale = cap["grad_scale"]
        a, g = as_tensor(cap["activations"]), as_tensor(cap["gradients"])
        torch.testing.assert_close(a, concat[real], **TOL)
        torch.testing.assert_close(g, g_ref[real] * scale, **TOL)
        torch.testing.assert_close(g.t() @ a / scale, attn.out_proj.weight.grad, **TOL)
        torch.testing.assert_close(g.sum(0) / scale, attn.out_proj.bias.grad, **TOL)

    def test_sub_sampled_out_proj_rows_keep_a_g_and_their_example_together(self):
        cap, batch, concat, g_ref, _ = self.step_with_reference(tokens_per_step=10)
        a, g, index = as_tensor(cap["activations"]), as_tensor(cap["gradients"]), token_index(cap)
        self.assertEqual(a.shape[0], 10)
        self.assertEqual(cap["grad_scale"], float(batch["attention_mask"].sum()))  # tokens before sub-sampling
        real = batch["attention_mask"].bool()
        for i in range(10):
            n = int(index[i])
            matches = [t for t in range(24) if real[n, t] and torch.allclose(concat[n, t], a[i], **TOL)]
            self.assertEqual(len(matches), 1, f"row {i} is one real token of example {n}")
            torch.testing.assert_close(g[i], g_ref[n, matches[0]] * cap["grad_scale"], **TOL)

    def test_unwatching_restores_the_attention(self):
        model = tiny_lm(2)
        attn = model.blocks[1].attn
        w, _ = watcher(model, ["blocks.1.attn.out_proj"])
        self.assertIn("forward", attn.__dict__)
        self.assertIn("forward", model.__dict__)
        w.close()
        self.assertNotIn("forward", attn.__dict__)
        self.assertNotIn("forward", model.__dict__)
        self.assertIs(F.linear, torch._C._nn.linear)


class AccumulationTest(unittest.TestCase):
    def test_every_micro_batch_is_captured_in_one_step(self):
        model = tiny_lm(3)
        layer = model.blocks[0].mlp.fc
        w, prod = watcher(model, ["blocks.0.mlp.fc"])
        tok = fortunes.CharTokenizer()
        micro = [fortunes.batch(["first micro batch", "x y z"], tok, 24), fortunes.batch(["and the second"], tok, 24)]
        references = []
        for b in micro:
            seen, handle = outputs_of(layer)
            loss = model(**b).loss / len(micro)
            handle.remove()
            references.append((seen[0][0].detach(), torch.autograd.grad(loss, seen[0][1], retain_graph=True)[0]))
            loss.backward()
        w.step(0, sample_ids=["m0", "m1", "m2"], inputs=micro)
        (cap,) = captures(prod)
        masks = [b["attention_mask"].bool() for b in micro]
        a_ref = torch.cat([a[m] for (a, _), m in zip(references, masks)])
        g_ref = torch.cat([g[m] for (_, g), m in zip(references, masks)])
        scale = cap["grad_scale"]
        self.assertEqual(scale, float(sum(int(m.sum()) for m in masks)))
        torch.testing.assert_close(as_tensor(cap["activations"]), a_ref, **TOL)
        torch.testing.assert_close(as_tensor(cap["gradients"]), g_ref * scale, **TOL)
        torch.testing.assert_close(as_tensor(cap["gradients"]).t() @ as_tensor(cap["activations"]) / scale,
                                   layer.weight.grad, **TOL)
        index = token_index(cap)
        self.assertEqual(cap["sample_ids"], ["m0", "m1", "m2"])
        self.assertEqual(int((index == 2).sum()), int(masks[1].sum()))  # the second micro-batch's one example

    def test_a_forward_never_backpropagated_is_left_out(self):
        model = tiny_lm(4)
        w, prod = watcher(model, ["blocks.0.mlp.fc"])
        b = lm_batch()
        model(**b)  # e.g. a look at the logits with gradients on, no backward
        model(**b).loss.backward()
        w.step(0, sample_ids=["x", "y", "z"])
        self.assertEqual(len(captures(prod)), 1)
        self.assertEqual(captures(prod)[0]["activations"]["shape"][0], int(b["attention_mask"].sum()))


class MixedPrecisionTest(unittest.TestCase):
    def test_bf16_autocast_captures_are_float32_and_match_autograd(self):
        model = tiny_lm(5)
        layer = model.blocks[1].mlp.proj
        w, prod = watcher(model, ["blocks.1.mlp.proj"])
        b = lm_batch()
        seen, handle = outputs_of(layer)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**b).loss
        handle.remove()
        a_ref, s = seen[0]
        self.assertEqual(s.dtype, torch.bfloat16)  # the layer really ran in bf16
        (g_ref,) = torch.autograd.grad(loss, s, retain_graph=True)
        loss.backward()
        w.step(0, sample_ids=["x", "y", "z"])
        (cap,) = captures(prod)
        self.assertEqual((cap["activations"]["dtype"], cap["gradients"]["dtype"]), ("FLOAT32", "FLOAT32"))
        real = b["attention_mask"].bool()
        scale = cap["grad_scale"]
        self.assertTrue(torch.equal(as_tensor(cap["activations"]), a_ref.detach()[real].float()))  # bf16 -> fp32 is exact
        torch.testing.assert_close(as_tensor(cap["gradients"]), g_ref[real].float() * scale, rtol=1e-6, atol=0)

    def test_a_gradient_scaler_is_undone_and_non_finite_steps_are_skipped(self):
        class Scaler:  # torch.cuda.amp.GradScaler's interface (no GPU here)
            def __init__(self, scale):
                self.scale = scale

            def is_enabled(self):
                return True

            def get_scale(self):
                return self.scale
        model = tiny_lm(6)
        layer = model.blocks[0].mlp.fc
        w, prod = watcher(model, ["blocks.0.mlp.fc"], grad_scaler=Scaler(1024.0))
        b = lm_batch()
        seen, handle = outputs_of(layer)
        loss = model(**b).loss
        handle.remove()
        (g_ref,) = torch.autograd.grad(loss, seen[0][1], retain_graph=True)
        (loss * 1024.0).backward()
        w.step(0, sample_ids=["x", "y", "z"])
        (cap,) = captures(prod)
        real = b["attention_mask"].bool()
        torch.testing.assert_close(as_tensor(cap["gradients"]), g_ref[real] * cap["grad_scale"], **TOL)
        (model(**b).loss * float("inf")).backward()  # an overflowing step, as GradScaler skips it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            w.step(1, sample_ids=["x", "y", "z"])
        self.assertEqual(len(captures(prod)), 1)
        self.assertEqual(w.skipped_nonfinite, 1)
        self.assertIn("non-finite", str(caught[0].message))


if __name__ == "__main__":
    unittest.main()
