"""Reassembly of EditCandidates the service split into row parts (EditCandidate v2)."""
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
            # the whole bases, allocated once at the layer's known sides (never at sizes a record claims)
            p = {"first": record, "next": 0, "g": bytearray(width(record["basis_g"]["dtype"]) * d_out * d_out),
                 "a": bytearray(width(record["basis_a"]["dtype"]) * d_in * d_in), "g_rows": 0, "a_rows": 0}
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
            p["g_rows"] = self._append(p, "g", record["basis_g"], record["g_row_offset"], d_out, "basis_g")
            p["a_rows"] = self._append(p, "a", record["basis_a"], record["a_row_offset"], d_in, "basis_a")
        except CandidateError as e:
            self._discard(layer)
            raise CandidateError(f"part {k} of {n}: {e}; the unfinished candidate is discarded") from None
        p["next"] += 1
        if p["next"] < n:
            return None
        del self._open[layer]
        if p["g_rows"] != d_out or p["a_rows"] != d_in:
            self.discarded += 1
            raise CandidateError(f"{n} parts hold {p['g_rows']} rows of U_G and {p['a_rows']} of U_A, "
                                 f"the layer needs {d_out} and {d_in}")
        first = p["first"]
        whole = dict(first, part=0, parts=1, g_row_offset=0, a_row_offset=0)
        whole["basis_g"] = {"dtype": first["basis_g"]["dtype"], "shape": [d_out, d_out], "data": p["g"]}
        whole["basis_a"] = {"dtype": first["basis_a"]["dtype"], "shape": [d_in, d_in], "data": p["a"]}
        return whole

    @staticmethod
    def _append(p, which, rows, offset, side, name):
        dtype = p["first"]["basis_" + which]["dtype"]
        if rows["dtype"] != dtype:
            raise CandidateError(f"{name} is {rows['dtype']}, part 0's is {dtype}")
        shape = list(rows["shape"])
        if len(shape) != 2 or shape[1] != side or shape[0] < 0:
            raise CandidateError(f"{name} has shape {shape}, expected rows x {side}")
        size = width(dtype)
        if len(rows["data"]) != shape[0] * side * size:
            raise CandidateError(f"{name}: {len(rows['data'])} bytes for shape {shape} {dtype}")
        held = p[which + "_rows"]
        if offset != held:
            raise CandidateError(f"{name} starts at row {offset}, expected row {held}")
        if held + shape[0] > side:
            raise CandidateError(f"{name} rows {offset}..{offset + shape[0]} run past the layer's {side}")
        start = held * side * size
        p[which][start:start + len(rows["data"])] = rows["data"]
        return held + shape[0]
