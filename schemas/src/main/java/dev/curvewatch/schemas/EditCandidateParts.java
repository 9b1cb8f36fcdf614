package dev.curvewatch.schemas;

import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.Tensor;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * EditCandidates larger than one record (EditCandidate v2): {@link #split} cuts a whole candidate
 * into row parts (the service's side), {@link Assembler} puts them back together (the trainer's).
 * Parts hold consecutive rows of U_G, then of U_A; part 0 alone carries the spectra, rhos and
 * thresholds. A v1 record, or a candidate that fits, is one part. v4: a basis may have fewer
 * columns than rows (its leading k), or no rows at all when the candidate names an earlier
 * candidate's basis instead ({@code basis_g_of}); resolving that name is the trainer's business.
 */
public final class EditCandidateParts {
    /** Room left in every part for ids, the other scalar fields and Avro framing. */
    static final int OVERHEAD_BYTES = 4096;

    private EditCandidateParts() {
    }

    /**
     * The candidate as parts of at most {@code maxPartBytes} encoded bytes each, sharing the
     * whole's buffers (no copy). A candidate that fits is returned as it is, one part.
     *
     * @throws IllegalArgumentException if even one row (with part 0's spectra) does not fit
     */
    public static List<EditCandidate> split(EditCandidate whole, int maxPartBytes) {
        Tensor ug = whole.getBasisG();
        Tensor ua = whole.getBasisA();
        int dOut = ug.getShape().get(0); // rows; 0 when the basis is named (v4 basis_g_of), not sent
        int dIn = ua.getShape().get(0);
        long gRow = (long) TensorCodec.elementSize(ug.getDtype()) * ug.getShape().get(1); // v4: k <= d columns
        long aRow = (long) TensorCodec.elementSize(ua.getDtype()) * ua.getShape().get(1);
        long header = OVERHEAD_BYTES + whole.getEigenvaluesG().getData().remaining() + whole.getEigenvaluesA().getData().remaining()
                + 8L * (whole.getRhos().size() + whole.getThresholds().size()) + 4L * whole.getCandidateId().length()
                + 4L * whole.getRunId().length() + 4L * whole.getLayer().length()
                + 5L * (whole.getBasisGOrder().size() + whole.getBasisAOrder().size()) + 4L * (length(whole.getBasisGOf())
                + length(whole.getBasisAOf()));
        if (header + gRow * dOut + aRow * dIn <= maxPartBytes) {
            return List.of(whole);
        }
        if (header + Math.max(gRow, aRow) > maxPartBytes) {
            throw new IllegalArgumentException("a " + dOut + " x " + dIn + " candidate cannot be split into records of "
                    + maxPartBytes + " bytes");
        }
        List<int[]> ranges = new ArrayList<>(); // {gFrom, gTo, aFrom, aTo}
        int g = 0;
        int a = 0;
        while (g < dOut || a < dIn) {
            long room = maxPartBytes - header;
            int g0 = g;
            int a0 = a;
            while (g < dOut && room >= gRow) {
                long rows = Math.min(dOut - g, room / gRow);
                g += (int) rows;
                room -= rows * gRow;
            }
            if (g == dOut) {
                long rows = Math.min(dIn - a, room / aRow);
                a += (int) rows;
            }
            ranges.add(new int[] {g0, g, a0, a});
        }
        List<EditCandidate> parts = new ArrayList<>(ranges.size());
        for (int k = 0; k < ranges.size(); k++) {
            int[] r = ranges.get(k);
            EditCandidate.Builder b = EditCandidate.newBuilder(whole).setPart(k).setParts(ranges.size())
                    .setGRowOffset(r[0]).setARowOffset(r[2])
                    .setBasisG(rows(ug, r[0], r[1])).setBasisA(rows(ua, r[2], r[3]));
            if (k > 0) {
                b.setEigenvaluesG(empty(whole.getEigenvaluesG().getDtype())).setEigenvaluesA(empty(whole.getEigenvaluesA().getDtype()))
                        .setRhos(List.of()).setThresholds(List.of()).setBasisGOrder(List.of()).setBasisAOrder(List.of());
            }
            parts.add(b.build());
        }
        return parts;
    }

    private static int length(CharSequence s) {
        return s == null ? 0 : s.length();
    }

    private static Tensor rows(Tensor t, int from, int to) {
        int cols = t.getShape().get(1);
        int width = TensorCodec.elementSize(t.getDtype()) * cols;
        ByteBuffer data = t.getData();
        ByteBuffer slice = data.slice(data.position() + from * width, (to - from) * width);
        return TensorCodec.ofBytes(t.getDtype(), slice, to - from, cols);
    }

    private static Tensor empty(DType dtype) {
        return TensorCodec.ofBytes(dtype, ByteBuffer.allocate(0), 0);
    }

    /**
     * Reassembles parts per run and layer, in the order they arrive (one key, one partition). At
     * most one candidate in progress per layer, so memory stays at one candidate per layer; a new
     * part 0 of a layer replaces an unfinished one. A part that does not continue its layer's
     * candidate (a lost, foreign or out-of-place part) is rejected with a reason and the
     * unfinished candidate is discarded, never completed with rows of another.
     */
    public static final class Assembler {
        private static final class InProgress {
            final EditCandidate first;
            final Layout g;
            final Layout a;
            final ByteBuffer gBytes;
            final ByteBuffer aBytes;
            int nextPart;
            int gRows;
            int aRows;

            InProgress(EditCandidate first, int dOut, int dIn) {
                this.first = first;
                this.g = Layout.of(first.getBasisG(), first.getBasisGOf(), dOut, "basis_g");
                this.a = Layout.of(first.getBasisA(), first.getBasisAOf(), dIn, "basis_a");
                this.gBytes = ByteBuffer.allocate(g.bytes(first.getBasisG().getDtype()));
                this.aBytes = ByteBuffer.allocate(a.bytes(first.getBasisA().getDtype()));
            }
        }

        /**
         * What a candidate's parts must hold of one basis: {@code rows} (the layer's side, or 0 when
         * the basis is named, v4) of {@code columns} (the side, or the leading k of it, v4).
         */
        private record Layout(int rows, int columns) {
            static Layout of(Tensor part0, CharSequence namedBy, int side, String field) {
                List<Integer> shape = part0.getShape();
                if (shape.size() != 2 || shape.get(1) < 0 || shape.get(1) > side) {
                    throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has shape " + shape
                            + ", expected rows x k with k <= the layer's " + side);
                }
                return new Layout(namedBy == null ? side : 0, shape.get(1));
            }

            int bytes(DType dtype) {
                long n = (long) TensorCodec.elementSize(dtype) * rows * columns;
                if (n > Integer.MAX_VALUE - 8) {
                    throw new InvalidRecordException(RejectReason.OVERSIZED, "a " + rows + " x " + columns + " " + dtype
                            + " basis does not fit one buffer");
                }
                return (int) n;
            }
        }

        private final Map<String, InProgress> inProgress = new HashMap<>();
        private long discarded;

        /**
         * @param dOut, dIn the layer's sides as this consumer knows them (they bound what is allocated)
         * @return the whole candidate when {@code part} completes it; a one-part candidate at once
         * @throws InvalidRecordException naming what is wrong; the caller refuses the part and goes on
         */
        public Optional<EditCandidate> accept(EditCandidate part, int dOut, int dIn) {
            int k = part.getPart();
            int n = part.getParts();
            if (n < 1 || k < 0 || k >= n) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "part " + k + " of " + n + ": need 0 <= part < parts");
            }
            String key = CurvewatchTopics.runLayerKey(part.getRunId(), part.getLayer());
            if (n == 1) {
                if (part.getGRowOffset() != 0 || part.getARowOffset() != 0) {
                    throw new InvalidRecordException(RejectReason.INVALID_FIELD, "a one-part candidate must start at row 0");
                }
                discardIfAny(key);
                return Optional.of(part);
            }
            InProgress p = inProgress.get(key);
            if (k == 0) {
                discardIfAny(key);
                p = new InProgress(part, dOut, dIn);
                inProgress.put(key, p);
            } else if (p == null || !p.first.getCandidateId().equals(part.getCandidateId()) || p.nextPart != k
                    || p.first.getParts() != n) {
                String expected = p == null ? "a part 0" : "part " + p.nextPart + " of " + p.first.getParts() + " of candidate "
                        + p.first.getCandidateId();
                discardIfAny(key);
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "edit candidate " + part.getCandidateId() + " of "
                        + key + ": part " + k + " of " + n + " arrived while expecting " + expected
                        + (p == null ? "" : "; the unfinished candidate is discarded"));
            } else if (!part.getRhos().isEmpty() || !part.getThresholds().isEmpty() || !part.getBasisGOrder().isEmpty()
                    || !part.getBasisAOrder().isEmpty() || part.getEigenvaluesG().getShape().get(0) != 0 || part.getEigenvaluesA().getShape().get(0) != 0) {
                discardIfAny(key);
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "edit candidate " + part.getCandidateId()
                        + " part " + k + " carries spectra, rhos or thresholds: only part 0 does");
            }
            try {
                p.gRows = append(p.gBytes, part.getBasisG(), p.first.getBasisG().getDtype(), part.getGRowOffset(), p.gRows, p.g, "basis_g");
                p.aRows = append(p.aBytes, part.getBasisA(), p.first.getBasisA().getDtype(), part.getARowOffset(), p.aRows, p.a, "basis_a");
            } catch (InvalidRecordException e) {
                discardIfAny(key);
                throw new InvalidRecordException(e.reason(), "edit candidate " + part.getCandidateId() + " part " + k + " of "
                        + n + ": " + e.getMessage() + "; the unfinished candidate is discarded");
            }
            p.nextPart++;
            if (p.nextPart < n) {
                return Optional.empty();
            }
            inProgress.remove(key);
            if (p.gRows != p.g.rows() || p.aRows != p.a.rows()) {
                discarded++;
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "edit candidate " + part.getCandidateId() + ": "
                        + n + " parts hold " + p.gRows + " rows of U_G and " + p.aRows + " of U_A, the layer needs "
                        + p.g.rows() + " and " + p.a.rows());
            }
            return Optional.of(EditCandidate.newBuilder(p.first).setPart(0).setParts(1).setGRowOffset(0).setARowOffset(0)
                    .setBasisG(TensorCodec.ofBytes(p.first.getBasisG().getDtype(), p.gBytes.flip(), p.g.rows(), p.g.columns()))
                    .setBasisA(TensorCodec.ofBytes(p.first.getBasisA().getDtype(), p.aBytes.flip(), p.a.rows(), p.a.columns()))
                    .build());
        }

        /** Appends a part's rows at {@code expectedOffset}; returns the rows held after it. */
        private static int append(ByteBuffer into, Tensor rows, DType dtype, int offset, int expectedOffset, Layout layout, String field) {
            if (rows.getDtype() != dtype) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " is " + rows.getDtype() + ", part 0's is " + dtype);
            }
            List<Integer> shape = rows.getShape();
            if (shape.size() != 2 || shape.get(1) != layout.columns() || shape.get(0) < 0) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has shape " + shape + ", expected rows x "
                        + layout.columns());
            }
            TensorCodec.requireConsistent(rows, field);
            if (offset != expectedOffset) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " starts at row " + offset + ", expected row "
                        + expectedOffset);
            }
            int count = shape.get(0);
            if ((long) expectedOffset + count > layout.rows()) {
                throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " rows " + offset + ".." + (offset + count)
                        + " run past the " + layout.rows() + " the candidate sends");
            }
            into.put(rows.getData().duplicate());
            return expectedOffset + count;
        }

        private void discardIfAny(String key) {
            if (inProgress.remove(key) != null) {
                discarded++;
            }
        }

        /** Drops the unfinished candidates of every layer of a run. */
        public void forgetRun(String runId) {
            String prefix = CurvewatchTopics.runLayerKey(runId, "");
            inProgress.keySet().removeIf(k -> k.startsWith(prefix));
        }

        /** Layers with a candidate in progress. */
        public int inProgress() {
            return inProgress.size();
        }

        /** Candidates abandoned because a part was missing, foreign or out of place. */
        public long discarded() {
            return discarded;
        }
    }
}
