"""Run by the Java PythonClientIT: watch a tiny fine-tune on a real broker and dump what was sent.

usage: publish_fixture.py BOOTSTRAP OUT_DIR RUN_ID
Writes OUT_DIR/expected.json and raw little-endian files: per capture record its a and g (float32),
per layer numpy's factors A = aᵀa/n and G = gᵀg/n over the non-probe captures (float64).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import curvewatch  # noqa: E402
from curvewatch import _avro  # noqa: E402
from helpers import Mlp  # noqa: E402


class Recorder(curvewatch.Publisher):
    """The real publisher, also remembering each capture it sends."""

    def __init__(self, config):
        super().__init__(config)
        self.sent = []

    def publish(self, topic, key, value):
        if topic.endswith("captures"):
            self.sent.append(value)
        return super().publish(topic, key, value)


def main(bootstrap, out, run_id):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    model = Mlp(d_in=6, hidden=5, classes=4, conv=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pub = Recorder({"bootstrap.servers": bootstrap})
    with curvewatch.watch(model, ["fc1", "fc2"], run_id, publisher=pub, weights_every=2,
                          max_record_bytes=4 * 12 * 10) as w:
        for step in range(3):
            x, y = torch.randn(16, 6), torch.randint(0, 4, (16,))
            F.cross_entropy(model(x), y).backward()
            w.step(step, sample_ids=[f"s{step}-{i}" for i in range(16)])
            opt.step()
            opt.zero_grad()
        w.probe(model, torch.randn(4, 6), torch.randint(0, 4, (4,)), F.cross_entropy, 3, [f"p{i}" for i in range(4)])
    codec = _avro.codec("Capture")
    records, sums = [], {}
    for i, raw in enumerate(pub.sent):
        c = codec.decode(raw)
        a = np.frombuffer(c["activations"]["data"], dtype="<f4").reshape(c["activations"]["shape"])
        g = np.frombuffer(c["gradients"]["data"], dtype="<f4").reshape(c["gradients"]["shape"])
        (out / f"{i}.a").write_bytes(a.astype("<f4").tobytes())
        (out / f"{i}.g").write_bytes(g.astype("<f4").tobytes())
        records.append({"layer": c["layer"], "step": c["step"], "part": c["part"], "probe": c["probe"],
                        "tokens": a.shape[0], "a": f"{i}.a", "g": f"{i}.g", "sample_ids": c["sample_ids"]})
        if not c["probe"]:
            sa, sg, n = sums.get(c["layer"], (0, 0, 0))
            a64, g64 = a.astype(np.float64), g.astype(np.float64)
            sums[c["layer"]] = (sa + a64.T @ a64, sg + g64.T @ g64, n + a.shape[0])
    factors = {}
    for layer, (sa, sg, n) in sums.items():
        (out / f"{layer}.A").write_bytes((sa / n).astype("<f8").tobytes())
        (out / f"{layer}.G").write_bytes((sg / n).astype("<f8").tobytes())
        factors[layer] = {"A": f"{layer}.A", "G": f"{layer}.G", "d_in": sa.shape[0], "d_out": sg.shape[0], "tokens": n}
    schemas = {}
    for f in _avro.listed_files(_avro.schema_dir()):
        name = f.split(".v")[0]
        schemas[name] = {"fingerprint": f"{_avro.codec(name).fingerprint:016x}",
                         "canonical": _avro.canonical_form(json.loads((_avro.schema_dir() / f).read_text()))}
    (out / "expected.json").write_text(json.dumps({"run_id": run_id, "records": records, "factors": factors,
                                                    "fingerprint": f"{codec.fingerprint:016x}", "schemas": schemas}))
    print(f"published {len(records)} captures, {pub.delivered} records delivered")


if __name__ == "__main__":
    main(*sys.argv[1:4])
