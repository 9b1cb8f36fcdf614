"""Single-object encoding: canonical form rules, CRC-64-AVRO, header layout, round trips."""
import json
import unittest
import warnings

import torch

from helpers import RecordingProducer
from curvewatch import Publisher, PublishError, _avro

EMPTY = 0xC15D213AA4D7A795


def crc64_bitwise(data):
    """The spec's definition, one bit at a time (independent of the table-driven version)."""
    fp = EMPTY
    for byte in data:
        fp ^= byte
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY if fp & 1 else 0)
    return fp


class CanonicalFormTest(unittest.TestCase):
    def test_strips_docs_defaults_and_orders_attributes(self):
        schema = {"doc": "x", "fields": [{"default": 1, "doc": "d", "type": {"type": "int"}, "name": "a"},
                                         {"name": "b", "type": ["null", {"type": "enum", "name": "E", "symbols": ["X"]}]}],
                  "type": "record", "namespace": "n.s", "name": "R"}
        self.assertEqual(_avro.canonical_form(schema),
                         '{"name":"n.s.R","type":"record","fields":[{"name":"a","type":"int"},'
                         '{"name":"b","type":["null",{"name":"n.s.E","type":"enum","symbols":["X"]}]}]}')

    def test_repeated_named_types_become_references(self):
        schema = {"type": "record", "name": "R", "namespace": "n", "fields": [
            {"name": "a", "type": {"type": "record", "name": "T", "fields": [{"name": "x", "type": "int"}]}},
            {"name": "b", "type": "T"}]}
        self.assertEqual(_avro.canonical_form(schema),
                         '{"name":"n.R","type":"record","fields":[{"name":"a","type":{"name":"n.T","type":"record",'
                         '"fields":[{"name":"x","type":"int"}]}},{"name":"b","type":"n.T"}]}')

    def test_primitives_with_properties_are_their_bare_name(self):
        # the Java-generated schemas write every string so; avro 1.11 alone would keep {"type":"string"}
        schema = {"type": "record", "name": "R", "fields": [
            {"name": "s", "type": {"type": "string", "avro.java.string": "String"}},
            {"name": "u", "type": ["null", {"type": "string", "avro.java.string": "String"}]},
            {"name": "m", "type": {"type": "map", "values": {"type": "long", "p": 1}, "avro.java.string": "String"}}]}
        self.assertEqual(_avro.canonical_form(schema),
                         '{"name":"R","type":"record","fields":[{"name":"s","type":"string"},'
                         '{"name":"u","type":["null","string"]},{"name":"m","type":{"type":"map","values":"long"}}]}')

    def test_table_crc_equals_bitwise_definition(self):
        for text in ["", '"int"', '{"name":"R","type":"record","fields":[]}', "é∑ unicode"]:
            data = text.encode("utf-8")
            self.assertEqual(_avro.crc64_avro(data), crc64_bitwise(data), text)


def random_datum(schema, rng):
    """A random value of an avro.schema type (every branch, edge values of numbers, non-ASCII text)."""
    kind = schema.type
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 63, -64, 64, 2**31 - 1, -2**31, rng.randint(-2**31, 2**31 - 1)])
    if kind == "long":
        return rng.choice([0, -1, 2**63 - 1, -2**63, 300, rng.randint(-2**63, 2**63 - 1)])
    if kind in ("float", "double"):
        return rng.choice([0.0, -1.5, 3.25e38 if kind == "float" else 1e300, rng.uniform(-1e6, 1e6)])
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 127, 128, 1000])))
    if kind == "string":
        return "".join(rng.choice("aé∑ρ層🙂 z") for _ in range(rng.randint(0, 12)))
    if kind == "enum":
        return rng.choice(schema.symbols)
    if kind == "array":
        return [random_datum(schema.items, rng) for _ in range(rng.choice([0, 1, 3]))]
    if kind == "map":
        return {f"k{i}é": random_datum(schema.values, rng) for i in range(rng.choice([0, 1, 3]))}
    if kind == "union":
        return random_datum(rng.choice(schema.schemas), rng)
    return {f.name: random_datum(f.type, rng) for f in schema.fields}


class FastWriterTest(unittest.TestCase):
    def test_every_record_type_encodes_as_the_avro_package_does(self):
        import io
        import random
        import avro.io
        rng = random.Random(7)
        names = sorted({f.split(".v")[0] for f in _avro.listed_files(_avro.schema_dir())})
        self.assertGreaterEqual(len(names), 13)
        for name in names:
            codec = _avro.codec(name)
            for _ in range(25):
                datum = random_datum(codec.schema, rng)
                buf = io.BytesIO()
                avro.io.DatumWriter(codec.schema).write(datum, avro.io.BinaryEncoder(buf))
                self.assertEqual(codec.encode(datum), codec.header + buf.getvalue(), name)
                self.assertEqual(codec.decode(codec.encode(datum)).keys(), datum.keys())

    def test_records_of_an_earlier_version_decode_with_the_new_fields_defaults(self):
        import io
        import json as js
        import avro.io
        import avro.schema
        d = _avro.schema_dir()
        old = js.loads((d / "SnapshotEvent.v1.avsc").read_text())
        v1 = {"snapshot_id": "s", "run_id": "r", "step": 1, "idempotency_key": "k", "uri": "r/s.safetensors",
              "sha256": "ab", "size_bytes": 3, "dtype": "FLOAT32", "layers": [], "factor_versions": {}, "code_version": "",
              "created_ms": 0}
        buf = io.BytesIO()
        avro.io.DatumWriter(avro.schema.parse(js.dumps(old))).write(v1, avro.io.BinaryEncoder(buf))
        data = b"\xc3\x01" + _avro.crc64_avro(_avro.canonical_form(old).encode()).to_bytes(8, "little") + buf.getvalue()
        back = _avro.codec("SnapshotEvent").decode(data)
        self.assertEqual((back["uri"], back["status"], back["kind"], back["reason"]), ("r/s.safetensors", "WRITTEN", "EDIT", ""))
        with self.assertRaisesRegex(ValueError, "nor one of its earlier versions"):
            _avro.codec("SnapshotEvent").decode(data[:2] + b"\x00" * 8 + data[10:])

    def test_a_wrong_type_is_an_avro_type_error(self):
        import avro.errors
        with self.assertRaises(avro.errors.AvroTypeException):
            _avro.codec("Signal").encode({"run_id": 5, "layer": None, "step": 3, "name": "x", "value": 0.5,
                                          "factor_version": -1, "attributes": {}, "timestamp_ms": 9})


class RecordCodecTest(unittest.TestCase):
    def test_header_is_marker_and_little_endian_fingerprint(self):
        codec = _avro.codec("Signal")
        data = codec.encode({"run_id": "r", "layer": None, "step": 3, "name": "memorization_gap", "value": 0.5,
                             "factor_version": -1, "attributes": {"mass_90": 2.0}, "timestamp_ms": 9})
        self.assertEqual(data[:2], b"\xc3\x01")
        self.assertEqual(int.from_bytes(data[2:10], "little"), codec.fingerprint)
        canonical = _avro.canonical_form(json.loads((_avro.schema_dir() / "Signal.v1.avsc").read_text()))
        self.assertEqual(codec.fingerprint, crc64_bitwise(canonical.encode()))
        self.assertEqual(codec.decode(data)["attributes"], {"mass_90": 2.0})

    def test_foreign_bytes_are_refused(self):
        codec = _avro.codec("Capture")
        with self.assertRaisesRegex(ValueError, "single-object"):
            codec.decode(b'{"json": 1}')
        other = _avro.codec("RunInfo").header + b"\x00"
        with self.assertRaisesRegex(ValueError, "fingerprint"):
            codec.decode(other)


    def test_fields_left_out_get_their_schema_defaults_in_nested_records(self):
        codec = _avro.codec("ProbeResult")
        record = {"run_id": "r", "candidate_id": "c", "layer": "fc", "step": 3, "rhos": [0.9, 1.0], "timestamp_ms": 1,
                  "examples": [{"sample_id": "s", "probe": True, "loss_now": 1.5, "loss_edited": [2.0, 1.5]}]}
        back = codec.decode(codec.encode(record))
        self.assertEqual(back["search"], "ALL")
        self.assertEqual(back["chosen"], -1)
        self.assertEqual(back["declined"], "")
        example = back["examples"][0]
        self.assertEqual((example["candidates"], example["tokens"], example["accuracy_now"], example["peak_edited"]),
                         ([], 1, -1.0, []))
        self.assertEqual(example["loss_edited"], [2.0, 1.5])
        self.assertNotIn("search", record)  # the caller's dict is not modified


class PublisherPolicyTest(unittest.TestCase):
    def test_drop_policy_counts_and_warns(self):
        pub = Publisher({}, policy="drop", producer=RecordingProducer(full_after=2))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [pub.publish("t", b"k", b"v") for _ in range(5)]
        self.assertEqual(results, [True, True, False, False, False])
        self.assertEqual(pub.dropped, 3)
        self.assertTrue(any("dropped 1" in str(w.message) for w in caught))

    def test_block_policy_raises_after_timeout(self):
        pub = Publisher({}, policy="block", block_timeout=0.2, producer=RecordingProducer(full_after=0))
        with self.assertRaisesRegex(PublishError, "still full"):
            pub.publish("t", b"k", b"v")

    def test_delivery_failures_surface_at_close(self):
        class FailingProducer(RecordingProducer):
            def produce(self, topic, key=None, value=None, on_delivery=None):
                class Msg:
                    def topic(self):
                        return topic
                on_delivery("Broker: Message size too large", Msg())

        pub = Publisher({}, producer=FailingProducer())
        pub.publish("curvewatch.captures", b"k", b"v")
        with self.assertRaisesRegex(PublishError, "too large"):
            pub.close()

    def test_unknown_policy_is_rejected(self):
        with self.assertRaises(ValueError):
            Publisher({}, policy="maybe", producer=RecordingProducer())


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_and_layout(self):
        import os, struct, tempfile
        from pathlib import Path
        from curvewatch import load_file, save_file
        tensors = {"fc1.weight": torch.randn(3, 4), "fc1.bias": torch.randn(3), "n": torch.arange(5, dtype=torch.int64),
                   "h": torch.randn(2, 2, dtype=torch.float64), "b16": torch.randn(3, 2).to(torch.bfloat16),
                   "f16": torch.randn(5).to(torch.float16), "empty": torch.zeros(0, 3)}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.safetensors")
            save_file(tensors, path, metadata={"rho": 0.6})
            raw = Path(path).read_bytes()
            (n,) = struct.unpack("<Q", raw[:8])
            self.assertEqual((8 + n) % 8, 0)
            header = json.loads(raw[8:8 + n])
            self.assertEqual(header["__metadata__"], {"rho": "0.6"})
            self.assertEqual(header["fc1.weight"]["dtype"], "F32")
            back, meta = load_file(path, with_metadata=True)
            for k, v in tensors.items():
                torch.testing.assert_close(back[k], v, rtol=0, atol=0)
            self.assertEqual(meta, {"rho": "0.6"})
            # the README's two lines: an edited snapshot of one layer into a model
            from helpers import Mlp
            model = Mlp()
            edited = {"fc2.weight": model.fc2.weight.detach() * 0.5}
            save_file(edited, path)
            state = load_file(path)
            model.load_state_dict(state, strict=False)
            torch.testing.assert_close(model.fc2.weight.detach(), edited["fc2.weight"], rtol=0, atol=0)
            save_file(tensors, path)
            raw = Path(path).read_bytes()
            with open(path, "wb") as f:
                f.write(raw[:-4])
            with self.assertRaisesRegex(ValueError, "do not fit"):
                load_file(path)


if __name__ == "__main__":
    unittest.main()
