package dev.curvewatch.service.internal;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

/**
 * Which of a layer's two bases the trainer already holds, so that a candidate can name a basis
 * instead of sending it again (EditCandidate v4). A basis sent with candidate X is held once the
 * trainer was heard about X (an answer or a decline: it had validated X's bases). It stays usable
 * while every refresh since kept its vectors ({@code SKIPPED}, re-sorted: each current column maps
 * to one of X's columns) and the columns a candidate needs are among those X sent. Any doubt drops
 * it and the next candidate sends the basis: a refresh that changed the vectors, a candidate that
 * sent or named it and timed out, was not sent, or had its answer refused (a trainer that restarted
 * lost its copy and can only stay silent). Not thread-safe: {@link LayerState}'s lock guards it.
 */
final class BasisReferences {
    /**
     * How one basis travels in a candidate: sent ({@code of} null: its leading {@code columns}), or
     * named: column c is column {@code order[c]} of candidate {@code of}'s basis.
     */
    record Way(String of, int[] order, int columns) {
        boolean sent() {
            return of == null;
        }
    }

    /** How both bases of one candidate travel. */
    record Shipment(Way g, Way a) {
        /** v3: both bases whole. */
        static Shipment whole(int dOut, int dIn) {
            return new Shipment(new Way(null, null, dOut), new Way(null, null, dIn));
        }
    }

    private final Side g = new Side();
    private final Side a = new Side();

    /**
     * How candidate {@code id}'s bases travel, given the leading columns each needs; remembers it.
     *
     * @param compact false: both sent whole, as before v4 ({@code candidate.compact})
     */
    Shipment ship(String id, int needG, int needA, int dOut, int dIn, boolean compact) {
        if (!compact) {
            g.clear();
            a.clear();
            return Shipment.whole(dOut, dIn);
        }
        return new Shipment(g.way(id, needG, dOut), a.way(id, needA, dIn));
    }

    /**
     * A refresh replaced the bases: {@code keptG}/{@code keptA} map each new column to the
     * previous one it keeps ({@code EigenbasisRefresh.Outcome.kept}), null when the vectors changed.
     */
    void refreshed(int[] keptG, int[] keptA) {
        g.refreshed(keptG);
        a.refreshed(keptA);
    }

    /** The trainer answered or declined candidate {@code id}: it holds the bases that candidate sent. */
    void heard(String id) {
        g.heard(id);
        a.heard(id);
    }

    /** Candidate {@code id} will get no usable answer: whatever it sent or named may not be held. */
    void lost(String id) {
        g.lost(id);
        a.lost(id);
    }

    private static final class Side {
        private String sentBy;
        private int sentColumns;
        private boolean heard;
        /** Current column -> column of sentBy's basis; null when there is nothing to name. */
        private int[] fromSent;
        private final Set<String> namedBy = new HashSet<>();

        Way way(String id, int need, int side) {
            if (heard && fromSent != null && need <= fromSent.length) {
                int[] order = Arrays.copyOf(fromSent, need);
                if (Arrays.stream(order).allMatch(c -> c < sentColumns)) {
                    namedBy.add(id);
                    return new Way(sentBy, order, need);
                }
            }
            clear();
            sentBy = id;
            sentColumns = need;
            fromSent = new int[side];
            Arrays.setAll(fromSent, c -> c);
            return new Way(null, null, need);
        }

        void refreshed(int[] kept) {
            if (fromSent == null) {
                return;
            }
            if (kept == null || kept.length != fromSent.length) {
                clear();
                return;
            }
            int[] next = new int[kept.length];
            for (int c = 0; c < kept.length; c++) {
                next[c] = fromSent[kept[c]];
            }
            fromSent = next;
        }

        void heard(String id) {
            if (id.equals(sentBy)) {
                heard = true;
            }
            namedBy.remove(id); // only candidates still waiting stay here
        }

        void lost(String id) {
            if (id.equals(sentBy) || namedBy.contains(id)) {
                clear();
            }
        }

        void clear() {
            sentBy = null;
            sentColumns = 0;
            heard = false;
            fromSent = null;
            namedBy.clear();
        }
    }
}
