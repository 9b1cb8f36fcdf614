package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.schemas.InvalidRecordException;

import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The bases an EditCandidate v4 may name instead of sending (SERVICE-CONTRACT §1): per layer, the
 * U_G and U_A of the last candidate that sent each, as received (float32, the leading columns
 * sent), under that candidate's id. A candidate naming one gets its columns in the order it
 * lists; naming one this trainer does not hold (it restarted, or never validated that candidate)
 * is refused with {@code BASES_NOT_HELD}, and the service, hearing nothing, sends the bases again.
 * Memory: one candidate's bases per layer, the buffers the candidate arrived in (no copy).
 */
public final class CandidateBases {
    private record Held(String candidateId, Tensor basis) {
    }

    private final Map<String, Held> g = new HashMap<>();
    private final Map<String, Held> a = new HashMap<>();

    /**
     * The candidate with any named basis filled in (d x k, column c = the named candidate's column
     * order[c]); the candidate itself when it sends both.
     *
     * @throws CandidateValidator.Refusal BASES_NOT_HELD; InvalidRecordException for an order out of range
     */
    public EditCandidate resolve(EditCandidate c) {
        if (c.getBasisGOf() == null && c.getBasisAOf() == null) {
            return c;
        }
        EditCandidate.Builder b = EditCandidate.newBuilder(c);
        if (c.getBasisGOf() != null) {
            b.setBasisG(named(g, c, c.getBasisGOf().toString(), c.getBasisGOrder(), "basis_g"));
        }
        if (c.getBasisAOf() != null) {
            b.setBasisA(named(a, c, c.getBasisAOf().toString(), c.getBasisAOrder(), "basis_a"));
        }
        return b.build();
    }

    /** Keeps the bases a validated candidate sent, for later candidates of its layer to name. */
    public void remember(EditCandidate c) {
        String layer = c.getLayer();
        if (c.getBasisGOf() == null) {
            g.put(layer, new Held(c.getCandidateId(), c.getBasisG()));
        }
        if (c.getBasisAOf() == null) {
            a.put(layer, new Held(c.getCandidateId(), c.getBasisA()));
        }
    }

    /** Layers with a basis held. */
    int layers() {
        return Math.max(g.size(), a.size());
    }

    private static Tensor named(Map<String, Held> held, EditCandidate c, String of, List<Integer> order, String field) {
        Held h = held.get(c.getLayer());
        if (h == null || !h.candidateId().equals(of)) {
            throw new CandidateValidator.Refusal("BASES_NOT_HELD", field + " names candidate " + of + " of layer " + c.getLayer()
                    + ", whose basis this trainer does not hold" + (h == null ? "" : " (it holds " + h.candidateId() + "'s)"));
        }
        List<Integer> shape = h.basis().getShape();
        int rows = shape.get(0);
        int sent = shape.get(1);
        int width = TensorCodec.elementSize(h.basis().getDtype());
        if (order.isEmpty() || order.size() > rows) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, field + " order has " + order.size()
                    + " columns; need 1 to " + rows);
        }
        ByteBuffer from = h.basis().getData().duplicate();
        ByteBuffer to = ByteBuffer.allocate(rows * order.size() * width);
        for (int r = 0; r < rows; r++) {
            for (int col : order) {
                if (col < 0 || col >= sent) {
                    throw new InvalidRecordException(RejectReason.INVALID_FIELD, field + " order names column " + col + " of "
                            + of + "'s " + sent);
                }
                int at = from.position() + (r * sent + col) * width;
                for (int k = 0; k < width; k++) {
                    to.put(from.get(at + k));
                }
            }
        }
        return TensorCodec.ofBytes(h.basis().getDtype(), to.flip(), rows, order.size());
    }
}
