"""Reassembly of EditCandidates the service split into row parts (EditCandidate v2)."""
import numpy as np

from .candidates import CandidateError, width


class CandidateParts:
    """Reassembles EditCandidates the service split into row parts (EditCandidate v2).

    Part k holds rows [g_row_offset, +basis_g rows) of U_G and [a_row_offset, +basis_a rows) of U_A;
    part 0 alone carries the spectra, rhos and thresholds. Parts arrive in order per layer (one key,
    one partition); at most one candidate is in progress per layer, so memory stays at one candidate
    per layer, and a new part 0 replaces an unfinished one. A part that does not continue its layer's
    candidate raises CandidateError and the unfinished candidate is discarded, never completed with
    another's rows.
    """

    def __init__(self):
        self._open = {}
        self.discarded = 0

    def _discard(self, layer):
        if self._open.pop(layer, None) is not None:
            self.discarded += 1

    def accept(self, record, layers):
        """The whole record once `record` completes it (at once for a one-part candidate), else None."""
        layer = record["layer"]
        if layer not in layers:
            raise CandidateError(f"unknown layer {layer!r} (watched: {sorted(layers)})")
        d_in, d_out = layers[layer]
        k, n = int(record["part"]), int(record["parts"])
        if n < 1 or not 0 <= k < n:
            raise CandidateError(f"part {k} of {n}: need 0 <= part < parts")
        if n == 1:
            if record["g_row_offset"] or record["a_row_offset"]:
                raise CandidateError("a one-part candidate must start at row 0")
            self._discard(layer)
            return record
        p = self._open.get(layer)
        if k == 0:
            self._discard(layer)
            # v4: rows x k (k <= side leading columns; 0 rows when the basis is named), allocated once from
            # the layer's known sides (never at sizes a record claims)
            shape = {w: _layout(record, w, side) for w, side in (("g", d_out), ("a", d_in))}
            p = {"first": record, "next": 0, "shape": shape, "g_rows": 0, "a_rows": 0}
            for w in ("g", "a"):
                p[w] = bytearray(width(record["basis_" + w]["dtype"]) * shape[w][0] * shape[w][1])
            self._open[layer] = p
        elif (p is None or p["first"]["candidate_id"] != record["candidate_id"] or p["next"] != k
              or p["first"]["parts"] != n):
            expected = "a part 0" if p is None else \
                f"part {p['next']} of {p['first']['parts']} of candidate {p['first']['candidate_id']!r}"
            self._discard(layer)
            raise CandidateError(f"part {k} of {n} arrived while expecting {expected}"
                                 + ("" if p is None else "; the unfinished candidate is discarded"))
        elif (record["rhos"] or record["thresholds"] or list(record["eigenvalues_g"]["shape"]) != [0]
              or list(record["eigenvalues_a"]["shape"]) != [0]):
            self._discard(layer)
            raise CandidateError(f"part {k} carries spectra, rhos or thresholds: only part 0 does")
        try:
            p["g_rows"] = self._append(p, "g", record["basis_g"], record["g_row_offset"], "basis_g")
            p["a_rows"] = self._append(p, "a", record["basis_a"], record["a_row_offset"], "basis_a")
        except CandidateError as e:
            self._discard(layer)
            raise CandidateError(f"part {k} of {n}: {e}; the unfinished candidate is discarded") from None
        p["next"] += 1
        if p["next"] < n:
            return None
        del self._open[layer]
        (g_rows, g_cols), (a_rows, a_cols) = p["shape"]["g"], p["shape"]["a"]
        if p["g_rows"] != g_rows or p["a_rows"] != a_rows:
            self.discarded += 1
            raise CandidateError(f"{n} parts hold {p['g_rows']} rows of U_G and {p['a_rows']} of U_A, "
                                 f"the layer needs {g_rows} and {a_rows}")
        first = p["first"]
        whole = dict(first, part=0, parts=1, g_row_offset=0, a_row_offset=0)
        whole["basis_g"] = {"dtype": first["basis_g"]["dtype"], "shape": [g_rows, g_cols], "data": p["g"]}
        whole["basis_a"] = {"dtype": first["basis_a"]["dtype"], "shape": [a_rows, a_cols], "data": p["a"]}
        return whole

    @staticmethod
    def _append(p, which, rows, offset, name):
        dtype = p["first"]["basis_" + which]["dtype"]
        if rows["dtype"] != dtype:
            raise CandidateError(f"{name} is {rows['dtype']}, part 0's is {dtype}")
        expected_rows, cols = p["shape"][which]
        shape = list(rows["shape"])
        if len(shape) != 2 or shape[1] != cols or shape[0] < 0:
            raise CandidateError(f"{name} has shape {shape}, expected rows x {cols}")
        size = width(dtype)
        if len(rows["data"]) != shape[0] * cols * size:
            raise CandidateError(f"{name}: {len(rows['data'])} bytes for shape {shape} {dtype}")
        held = p[which + "_rows"]
        if offset != held:
            raise CandidateError(f"{name} starts at row {offset}, expected row {held}")
        if held + shape[0] > expected_rows:
            raise CandidateError(f"{name} rows {offset}..{offset + shape[0]} run past the {expected_rows} the candidate sends")
        start = held * cols * size
        p[which][start:start + len(rows["data"])] = rows["data"]
        return held + shape[0]


def _layout(record, which, side):
    """(rows, columns) the parts must hold of basis `which`: v4 sends the leading k <= side columns, and
    no rows when basis_<which>_of names an earlier candidate's basis."""
    shape = list(record["basis_" + which]["shape"])
    if len(shape) != 2 or not 0 <= shape[1] <= side:
        raise CandidateError(f"basis_{which} has shape {shape}, expected rows x k with k <= the layer's {side}")
    return (0 if record.get(f"basis_{which}_of") is not None else side), shape[1]


class HeldBases:
    """The bases an EditCandidate v4 may name instead of sending (SERVICE-CONTRACT §1): per layer, U_G and
    U_A of the last candidate that sent each, as received. A named basis this client does not hold (it
    restarted) raises CandidateError; the service, hearing nothing back, sends the bases again."""

    def __init__(self):
        self._held = {}  # (layer, "g" | "a") -> (candidate_id, tensor record)

    def resolve(self, record):
        """The record with each named basis filled in (column c = the named one's column order[c])."""
        for w in ("g", "a"):
            of = record.get(f"basis_{w}_of")
            if of is None:
                continue
            held = self._held.get((record["layer"], w))
            if held is None or held[0] != of:
                raise CandidateError(f"basis_{w} names candidate {of!r}, whose basis this client does not hold")
            order = [int(c) for c in record.get(f"basis_{w}_order", [])]
            rows, sent = held[1]["shape"]
            if not order or len(order) > rows or not all(0 <= c < sent for c in order):
                raise CandidateError(f"basis_{w}_order {order[:8]}... does not fit {of!r}'s {rows} x {sent} basis")
            dtype = {"FLOAT32": "<f4", "FLOAT64": "<f8"}[held[1]["dtype"]]
            values = np.frombuffer(held[1]["data"], dtype=dtype).reshape(rows, sent)[:, order]
            record = dict(record, **{f"basis_{w}": {"dtype": held[1]["dtype"], "shape": [rows, len(order)],
                                                    "data": np.ascontiguousarray(values).tobytes()}})
        return record

    def remember(self, record):
        """Keeps the bases a validated candidate sent, for later candidates of its layer to name."""
        for w in ("g", "a"):
            if record.get(f"basis_{w}_of") is None:
                self._held[(record["layer"], w)] = (record["candidate_id"], record[f"basis_{w}"])
