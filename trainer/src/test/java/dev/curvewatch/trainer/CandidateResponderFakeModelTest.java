package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroSerializer;
import org.junit.jupiter.api.Test;

import java.io.OutputStream;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

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
        boolean hold;

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
                    if (weight != null && hold) {
                        scoring.countDown();
                        try {
                            release.await(60, TimeUnit.SECONDS);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
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

    private static byte[] candidate(String id, double rho, double tau) {
        Eigenbasis e = new Eigenbasis(2, new double[] {2, 1}, new double[] {1, 0, 0, 1}, 1, Precision.FLOAT64);
        return ENCODER.serialize("t", Candidates.builder(id, "r", "l", 1, new Candidates.Bases(e, e), new double[] {rho},
                new double[] {tau}).build());
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
    void anAnswerStillScoringAtCloseIsAbandonedAndItsSessionClosedOnlyAfterItEnds() throws Exception {
        FakeModel m = new FakeModel();
        m.hold = true;
        List<ProbeResult> out = new ArrayList<>();
        CandidateResponder r = new CandidateResponder("r", m, out::add, new PrintStream(OutputStream.nullOutputStream()), null);
        r.offer("r", candidate("c", 1.0, 0.0));
        assertTrue(r.poll(1).isEmpty());
        assertTrue(m.scoring.await(60, TimeUnit.SECONDS), "the worker is scoring");
        r.close(Duration.ofMillis(50));
        assertEquals(1, r.failed(), "abandoned and counted");
        assertTrue(out.isEmpty(), "nothing published");
        assertEquals(1, m.closed.getCount(), "the session is not freed under the running task");
        m.release.countDown();
        assertTrue(m.closed.await(60, TimeUnit.SECONDS), "closed once the task ended");
    }
}
