package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroSerializer;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The responder with a model that has no correctness flags (an LM) and whose scoring can be held. */
class CandidateResponderFakeModelTest {
    private static final AvroSerializer<EditCandidate> ENCODER = new AvroSerializer<>(EditCandidate.class);

    /** A 2 x 2 layer "l"; scoring an edited weight waits for {@code release}. */
    private static final class FakeModel implements EditEvaluator {
        final CountDownLatch scoring = new CountDownLatch(1);
        final CountDownLatch release = new CountDownLatch(1);
        final CountDownLatch closed = new CountDownLatch(1);
        final AtomicInteger editedScores = new AtomicInteger();
        volatile boolean hold;
        volatile float[] lossesNow; // replaces the losses of the unedited model when set
        volatile float[] lossesEdited; // replaces those of every edited one when set

        @Override
        public Optional<LayerShape> layer(String name) {
            return name.equals("l") ? Optional.of(new LayerShape("l", 2, 2, false)) : Optional.empty();
        }

        @Override
        public Session begin(int maxTrainingExamples) {
            return new Session() {
                @Override
                public float[] weight(String layer) {
                    return new float[] {1, 2, 3, 4};
                }

                @Override
                public List<String> sampleIds() {
                    return List.of("p", "t");
                }

                @Override
                public boolean[] probe() {
                    return new boolean[] {true, false};
                }

                @Override
                public boolean hasCorrect() {
                    return false;
                }

                @Override
                public Scores score(String layer, float[] weight) {
                    if (weight != null) {
                        editedScores.incrementAndGet();
                    }
                    if (weight != null && hold) {
                        scoring.countDown();
                        try {
                            release.await(60, TimeUnit.SECONDS);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                    float[] fixed = weight == null ? lossesNow : lossesEdited;
                    if (fixed != null) {
                        return new Scores(fixed.clone(), null);
                    }
                    float w11 = weight == null ? 4 : weight[3]; // loss = 1 + W[1][1]: the entry the test's edit drops
                    return new Scores(new float[] {1 + w11, 2 + w11}, null);
                }

                @Override
                public void close() {
                    closed.countDown();
                }
            };
        }
    }

    private static final Eigenbasis IDENTITY = new Eigenbasis(2, new double[] {2, 1}, new double[] {1, 0, 0, 1}, 1,
            Precision.FLOAT64);
    private static final PrintStream QUIET = new PrintStream(OutputStream.nullOutputStream());

    private static byte[] candidate(String id, double rho, double tau) {
        return candidate(id, 1, new double[] {rho}, new double[] {tau});
    }

    private static byte[] candidate(String id, long version, double[] rhos, double[] taus) {
        return ENCODER.serialize("t", Candidates.builder(id, "r", "l", version, new Candidates.Bases(IDENTITY, IDENTITY), rhos,
                taus).build());
    }

    /** A candidate whose one ρ drops pair (1,1) of the identity bases (curvatures 4, 2, 2, 1: τ = 2 at ρ 0.6). */
    private static byte[] editing(String id, long version) {
        return candidate(id, version, new double[] {0.6}, new double[] {2.0});
    }

    private static void await(CandidateResponder r) throws InterruptedException {
        assertTrue(r.awaitScored(Duration.ofSeconds(60)), "scored");
    }

    @Test
    void withoutCorrectnessTheAnswerCarriesLossesOnly() {
        FakeModel m = new FakeModel();
        List<ProbeResult> out = new ArrayList<>();
        CandidateResponder r = new CandidateResponder("r", m, out::add, new PrintStream(OutputStream.nullOutputStream()), null);
        // curvatures 4, 2, 2, 1 of 9: rho 0.6 crosses at 2, so tau = 2 keeps all but pair (1,1); identity bases
        r.offer("r", candidate("c", 0.6, 2.0));
        ProbeResult p = r.answerNext(3).orElseThrow();
        assertEquals(2, p.getExamples().size());
        ExampleLosses probe = p.getExamples().get(0);
        assertTrue(probe.getProbe());
        assertFalse(probe.getCorrectNow());
        assertTrue(probe.getCorrectEdited().isEmpty(), "no correctness flags from an LM-like model");
        assertEquals(5f, probe.getLossNow());
        assertEquals(List.of(1f), probe.getLossEdited(), "W'[1][1] = 0: the edit reached the model");
        assertFalse(p.getExamples().get(1).getProbe());
    }

    @Test
    void aCandidateOverTheAnswerBudgetIsRefusedOnceWithTheSizesAndNothingIsAnswered() {
        FakeModel m = new FakeModel();
        List<ProbeResult> out = new ArrayList<>();
        ByteArrayOutputStream logged = new ByteArrayOutputStream();
        long needed = CandidateResponder.answerBytes(2, 2);
        CandidateResponder r = new CandidateResponder("r", m, out::add, new PrintStream(logged, true, StandardCharsets.UTF_8), null,
                CandidateResponder.MAX_TRAINING_EXAMPLES, needed - 1);
        EditCandidate whole = Candidates.builder("big", "r", "l", 1, new Candidates.Bases(IDENTITY, IDENTITY), new double[] {0.6},
                new double[] {2.0}).build();
        // the same candidate in two row parts: refused at part 0, part 1 dropped without a second refusal
        List<EditCandidate> parts = dev.curvewatch.schemas.EditCandidateParts.split(whole, 4170); // U_G in one part, U_A in the other
        assertEquals(2, parts.size());
        for (EditCandidate part : parts) {
            r.offer("r", ENCODER.serialize("t", part));
        }
        assertEquals(1, r.refused());
        assertEquals(java.util.Map.of("OVERSIZED", 1L), r.refusalReasons());
        assertTrue(logged.toString(StandardCharsets.UTF_8).contains("over this trainer's answer budget"), logged.toString());
        assertTrue(r.answerNext(1).isEmpty(), "nothing pending");
        assertTrue(out.isEmpty());
        CandidateResponder roomy = new CandidateResponder("r", m, out::add, QUIET, null, CandidateResponder.MAX_TRAINING_EXAMPLES, needed);
        roomy.offer("r", ENCODER.serialize("t", whole));
        assertTrue(roomy.answerNext(1).isPresent(), "within the budget: answered");
    }

    @Test
    void anAnswerStillScoringAtCloseIsAbandonedAndItsSessionClosedOnlyAfterItEnds() throws Exception {
        FakeModel m = new FakeModel();
        m.hold = true;
        List<ProbeResult> out = new ArrayList<>();
        CandidateResponder r = new CandidateResponder("r", m, out::add, new PrintStream(OutputStream.nullOutputStream()), null);
        r.offer("r", editing("c", 1)); // an edit: a mask keeping every pair would not score W' at all
        assertTrue(r.poll(1).isEmpty());
        assertTrue(m.scoring.await(60, TimeUnit.SECONDS), "the worker is scoring");
        r.close(Duration.ofMillis(50));
        assertEquals(1, r.failed(), "abandoned and counted");
        assertTrue(out.isEmpty(), "nothing published");
        assertEquals(1, m.closed.getCount(), "the session is not freed under the running task");
        m.release.countDown();
        assertTrue(m.closed.await(60, TimeUnit.SECONDS), "closed once the task ended");
    }

    @Test
    void aSinkThatThrowsIsCountedOnceAndTheNextCandidateIsStillAnswered() throws Exception {
        FakeModel m = new FakeModel();
        List<ProbeResult> out = new ArrayList<>();
        AtomicInteger offered = new AtomicInteger();
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        CandidateResponder r = new CandidateResponder("r", m, p -> {
            if (offered.incrementAndGet() == 1) {
                throw new IllegalStateException("producer refused the record"); // as CapturePublisher can, synchronously
            }
            return out.add(p);
        }, new PrintStream(log, true, StandardCharsets.UTF_8), null);
        r.offer("r", editing("first", 1));
        assertTrue(r.poll(1).isEmpty());
        await(r);
        assertTrue(r.poll(2).isEmpty(), "the sink threw: nothing went out");
        assertFalse(r.answering());
        for (long step = 3; step < 6; step++) {
            assertTrue(r.poll(step).isEmpty());
        }
        assertEquals(1, offered.get(), "the failed answer is offered once, not at every poll");
        assertEquals(1, r.publishFailures());
        assertEquals(0, r.answered());
        assertTrue(log.toString(StandardCharsets.UTF_8).contains("publishing the answer to first failed: "
                + "java.lang.IllegalStateException: producer refused the record"), log.toString(StandardCharsets.UTF_8));
        r.offer("r", editing("second", 2));
        assertTrue(r.poll(6).isEmpty());
        await(r);
        assertEquals("second", r.poll(7).orElseThrow().getCandidateId());
        assertEquals(List.of("second"), out.stream().map(ProbeResult::getCandidateId).toList());
        assertEquals(1, r.answered());
        assertEquals(1L, r.summary().get("probe_result_publish_failures"));
        r.close(Duration.ofSeconds(10));
    }

    @Test
    void anObserverThatThrowsIsCountedAndTheAnswerGoesOutOnce() throws Exception {
        FakeModel m = new FakeModel();
        List<ProbeResult> out = new ArrayList<>();
        AtomicInteger calls = new AtomicInteger();
        CandidateResponder r = new CandidateResponder("r", m, out::add, QUIET, new CandidateResponder.Events() {
            @Override
            public void candidateAnswered(EditCandidate candidate, ProbeResult result, EditEvaluator.Session measured) {
                calls.incrementAndGet();
                throw new IllegalStateException("observer bug");
            }

            @Override
            public void candidateSkipped(EditCandidate candidate, String why) {
                throw new IllegalStateException("observer bug");
            }
        });
        r.offer("r", editing("first", 1));
        r.poll(1);
        await(r);
        assertEquals("first", r.poll(2).orElseThrow().getCandidateId());
        r.poll(3);
        r.poll(4);
        assertEquals(1, out.size(), "published once");
        assertEquals(1, calls.get());
        r.offer("r", editing("older", 0));
        r.offer("r", editing("newer", 5)); // skips "older": that callback throws too
        r.poll(5);
        await(r);
        assertEquals("newer", r.poll(6).orElseThrow().getCandidateId());
        assertEquals(2, r.answered());
        assertEquals(1, r.skipped());
        assertEquals(3, r.observerFailures());
        assertEquals(0, r.publishFailures());
        assertEquals(3L, r.summary().get("candidate_observer_failures"));
        r.close(Duration.ofSeconds(10));
    }

    @Test
    void closeFinishesTheAnswerInProgressOnceEvenWhenTheSinkThrows() throws Exception {
        FakeModel m = new FakeModel();
        AtomicInteger offered = new AtomicInteger();
        CandidateResponder r = new CandidateResponder("r", m, p -> {
            offered.incrementAndGet();
            throw new IllegalStateException("closed producer");
        }, QUIET, null);
        r.offer("r", editing("c", 1));
        r.poll(1);
        await(r);
        r.close(Duration.ofSeconds(10)); // does not throw
        r.close(Duration.ofSeconds(10));
        assertFalse(r.answering());
        assertEquals(1, offered.get());
        assertEquals(1, r.publishFailures());
    }

    @Test
    void pendingAtEndCountsTheAnswerInProgressWhenCloseBegan() throws Exception {
        FakeModel m = new FakeModel();
        m.hold = true;
        CandidateResponder r = new CandidateResponder("r", m, p -> true, QUIET, null);
        r.offer("r", editing("scoring", 1));
        r.poll(1);
        assertTrue(m.scoring.await(60, TimeUnit.SECONDS));
        r.offer("r", editing("waiting", 2));
        assertEquals(2L, r.summary().get("candidates_pending_at_end"), "one scoring, one waiting");
        r.close(Duration.ofMillis(50));
        assertEquals(2L, r.summary().get("candidates_pending_at_end"), "as when close began, not after it cleared the answer");
        m.release.countDown();
        assertTrue(m.closed.await(60, TimeUnit.SECONDS));
    }

    @Test
    void nonFiniteLossesAreSentAsFloatMaxAndCounted() {
        FakeModel m = new FakeModel();
        m.lossesNow = new float[] {Float.NaN, 0.5f};
        m.lossesEdited = new float[] {Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
        List<ProbeResult> out = new ArrayList<>();
        CandidateResponder r = new CandidateResponder("r", m, out::add, QUIET, null);
        r.offer("r", editing("c", 1));
        ProbeResult p = r.answerNext(1).orElseThrow();
        ExampleLosses probe = p.getExamples().get(0);
        ExampleLosses train = p.getExamples().get(1);
        assertEquals(Float.MAX_VALUE, probe.getLossNow(), "NaN: as bad as a loss gets");
        assertEquals(List.of(Float.MAX_VALUE), probe.getLossEdited());
        assertEquals(0.5f, train.getLossNow());
        assertEquals(List.of(-Float.MAX_VALUE), train.getLossEdited());
        assertEquals(3, r.nonFiniteLosses());
        assertEquals(3L, r.summary().get("candidate_nonfinite_losses"));
        for (ExampleLosses e : p.getExamples()) {
            assertTrue(Float.isFinite(e.getLossNow()) && e.getLossEdited().stream().allMatch(Float::isFinite),
                    "the service dead-letters real NaN/Inf: " + e);
        }
    }

    @Test
    void aMaskKeepingEveryPairIsNoEditAndMasksKeepingTheSamePairsShareOneForwardPass() {
        FakeModel m = new FakeModel();
        m.lossesEdited = new float[] {7, 8}; // any forward pass under a W' would show
        double[] rhos = {1.0, 0.7, 0.6, 0.3};
        Candidates.Bases bases = new Candidates.Bases(IDENTITY, IDENTITY);
        double[] taus = Candidates.thresholds(bases, rhos);
        CurvatureEdit edit = new CurvatureEdit(IDENTITY, IDENTITY);
        assertEquals(4, edit.select(1.0).keptPairs(), "rho = 1 keeps every pair");
        assertEquals(3, edit.select(0.7).keptPairs());
        assertEquals(3, edit.select(0.6).keptPairs(), "the same three pairs as 0.7");
        assertEquals(1, edit.select(0.3).keptPairs());
        List<ProbeResult> out = new ArrayList<>();
        CandidateResponder r = new CandidateResponder("r", m, out::add, QUIET, null);
        r.offer("r", candidate("c", 1, rhos, taus));
        ProbeResult p = r.answerNext(1).orElseThrow();
        assertEquals(2, m.editedScores.get(), "one forward pass per distinct edit, none for rho = 1");
        for (ExampleLosses e : p.getExamples()) {
            assertEquals(e.getLossNow(), e.getLossEdited().get(0), "no edit: exactly loss_now");
            assertEquals(e.getLossEdited().get(1), e.getLossEdited().get(2));
        }
        assertEquals(List.of(5f, 7f, 7f, 7f), p.getExamples().get(0).getLossEdited(), "loss_now, then the edits' losses");
    }
}
