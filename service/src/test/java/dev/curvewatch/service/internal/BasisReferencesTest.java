package dev.curvewatch.service.internal;

import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.curvature.EigenbasisRefresh;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** When a candidate may name a basis the trainer holds instead of sending it (EditCandidate v4). */
class BasisReferencesTest {
    private static final int[] PERMUTED = {1, 0, 2, 3};

    @Test
    void aBasisIsNamedOnlyOnceTheTrainerWasHeardAboutTheCandidateThatSentIt() {
        BasisReferences r = new BasisReferences();
        BasisReferences.Shipment c1 = r.ship("c1", 3, 2, 4, 4, true);
        assertTrue(c1.g().sent() && c1.a().sent());
        assertEquals(3, c1.g().columns(), "only the leading columns the masks use");
        assertTrue(r.ship("c2", 3, 2, 4, 4, true).g().sent(), "c1 unanswered: the trainer may not hold it");
        r.heard("c2");
        BasisReferences.Shipment c3 = r.ship("c3", 2, 2, 4, 4, true);
        assertEquals("c2", c3.g().of());
        assertArrayEquals(new int[]{0, 1}, c3.g().order());
        assertEquals("c2", c3.a().of());
    }

    @Test
    void skippedRefreshesComposeTheOrderAndChangedVectorsEndTheReference() {
        BasisReferences r = new BasisReferences();
        r.ship("c1", 4, 4, 4, 4, true);
        r.heard("c1");
        r.refreshed(PERMUTED, new int[]{0, 1, 2, 3});
        r.refreshed(new int[]{0, 2, 1, 3}, null); // A's vectors changed (WARM or FULL)
        BasisReferences.Shipment c2 = r.ship("c2", 4, 4, 4, 4, true);
        assertEquals("c1", c2.g().of());
        // column c now = previous column kept[c] = c1's column PERMUTED[kept[c]]
        assertArrayEquals(new int[]{1, 2, 0, 3}, c2.g().order());
        assertTrue(c2.a().sent(), "A changed: sent again");
    }

    @Test
    void moreColumnsThanWereSentOrAnyDoubtSendsTheBasisAgain() {
        BasisReferences r = new BasisReferences();
        r.ship("c1", 2, 2, 4, 4, true);
        r.heard("c1");
        BasisReferences.Shipment c2 = r.ship("c2", 3, 2, 4, 4, true);
        assertTrue(c2.g().sent(), "a third column was never sent");
        assertEquals("c1", c2.a().of());
        r.heard("c2");
        BasisReferences.Shipment c3 = r.ship("c3", 3, 2, 4, 4, true);
        assertEquals("c2", c3.g().of());
        assertEquals("c1", c3.a().of());
        r.lost("c3"); // c3 named c2's bases and timed out: the trainer may have restarted without them
        BasisReferences.Shipment c4 = r.ship("c4", 3, 2, 4, 4, true);
        assertTrue(c4.g().sent() && c4.a().sent());
        r.heard("c4");
        BasisReferences.Shipment v3 = r.ship("c5", 3, 2, 4, 4, false);
        assertTrue(v3.g().sent() && v3.g().columns() == 4 && v3.a().columns() == 4, "candidate.compact=false: whole, as v3");
        assertTrue(r.ship("c6", 3, 2, 4, 4, true).g().sent(), "nothing held after whole candidates");
    }

    /** Through LayerState, as the refresh thread and the ingest thread drive it. */
    @Test
    void aLayerNamesItsBasesAfterAnAnsweredCandidateAndASkippedRefresh() {
        LayerState l = new LayerState("run-1", "fc");
        l.register(LayerInfo.newBuilder().setName("fc").setDIn(12).setDOut(8).build());
        double[] a = LayerRefreshTest.spd(12, 1, 0);
        double[] g = LayerRefreshTest.spd(8, 2, 0);
        LayerRefresh.Outcome first = LayerRefreshTest.refresher().refresh(LayerRefreshTest.input(1, a, g), null, null);
        l.refreshed(first, 1);
        PendingCandidate c1 = candidate("c1", first);
        BasisReferences.Shipment s1 = l.sent(c1, LayerRefresh.neededColumns(first), true);
        assertTrue(s1.g().sent() && s1.a().sent());
        assertTrue(l.answered(c1));
        LayerRefresh.Outcome second = LayerRefreshTest.refresher().refresh(LayerRefreshTest.input(2, a, g), first.g(), first.a());
        assertEquals(EigenbasisRefresh.Mode.SKIPPED, second.modeG(), "the same factors: no drift");
        l.refreshed(second, 2);
        PendingCandidate c2 = candidate("c2", second);
        BasisReferences.Shipment s2 = l.sent(c2, LayerRefresh.neededColumns(second), true);
        assertEquals("c1", s2.g().of());
        assertEquals("c1", s2.a().of());
        var named = LayerRefreshTest.refresher().candidate(second, "c2", 3, s2);
        assertEquals(0, named.getBasisG().getShape().get(0), "no rows of a named basis");
        assertEquals(s2.g().columns(), named.getBasisGOrder().size());
        assertNull(LayerRefreshTest.refresher().candidate(first, "c1", 3, s1).getBasisGOf());
        assertTrue(l.expire(Long.MAX_VALUE, 0).contains(c2), "c2 times out");
        LayerRefresh.Outcome third = LayerRefreshTest.refresher().refresh(LayerRefreshTest.input(3, a, g), second.g(), second.a());
        l.refreshed(third, 3);
        assertTrue(l.sent(candidate("c3", third), LayerRefresh.neededColumns(third), true).g().sent(),
                "after a timeout of a candidate that named them, the bases are sent again");
    }

    private static PendingCandidate candidate(String id, LayerRefresh.Outcome o) {
        LayerRefresh.CandidatePlan p = o.plan().orElseThrow();
        return new PendingCandidate(id, "run-1", "fc", o.input().step(), o.input().factorVersion(), p.rhos(), p.thresholds(),
                p.keptPairs(), 96, 0);
    }
}
