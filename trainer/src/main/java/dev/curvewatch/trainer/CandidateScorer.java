package dev.curvewatch.trainer;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.trainer.CandidateValidator.Prepared;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The answer to a checked candidate (SERVICE-CONTRACT §1): per example of a frozen model, the loss
 * and correctness under W and under every candidate edit W'_k. Stateless; runs on any thread.
 */
public final class CandidateScorer {
    private CandidateScorer() {
    }

    /** A scored answer and how many of its losses were non-finite (sent as ±Float.MAX_VALUE). */
    record Answer(ProbeResult result, long nonFiniteLosses) {
    }

    /** Scores the session's examples under W and every W'_k and builds the answer (any thread). */
    public static ProbeResult answer(Prepared p, EditEvaluator.Session session, String runId, long step) {
        return measure(p, session, runId, step).result();
    }

    /**
     * {@link #answer}, with the count of non-finite losses it replaced. A mask that keeps every
     * pair is the unedited layer (SERVICE-CONTRACT §1: its losses are loss_now exactly), so it reuses
     * the unedited scores instead of a round trip through the float32 bases that would move them by
     * rounding and could flip a flag on a near-tie. The masks of one candidate all come from one
     * spectrum's thresholds ({@code λ_i μ_j ≥ τ_k}), so they are nested and two keeping the same
     * number of pairs keep the same pairs: one forward pass serves both.
     */
    static Answer measure(Prepared p, EditEvaluator.Session session, String runId, long step) {
        String layer = p.layer().name();
        EditEvaluator.Scores now = session.score(layer, null);
        long allPairs = (long) p.layer().dOut() * p.layer().dIn();
        List<EditEvaluator.Scores> edited = new ArrayList<>(p.masks().size());
        Map<Long, EditEvaluator.Scores> byKeptPairs = new HashMap<>();
        CurvatureEdit.Coordinates coordinates = null; // once for all ρ (only the mask changes), and only if some ρ edits
        for (KeepMassMask m : p.masks()) {
            if (m.keptPairs() == allPairs) {
                edited.add(now);
                continue;
            }
            EditEvaluator.Scores s = byKeptPairs.get(m.keptPairs());
            if (s == null) {
                if (coordinates == null) {
                    coordinates = p.edit().coordinates(session.weight(layer).clone());
                }
                s = session.score(layer, p.edit().applyFloat32(coordinates, m));
                byKeptPairs.put(m.keptPairs(), s);
            }
            edited.add(s);
        }
        List<String> ids = session.sampleIds();
        boolean[] probe = session.probe();
        boolean correct = session.hasCorrect();
        long[] nonFinite = {0};
        List<ExampleLosses> examples = new ArrayList<>(ids.size());
        for (int i = 0; i < ids.size(); i++) {
            List<Float> losses = new ArrayList<>(edited.size());
            List<Boolean> flags = new ArrayList<>(correct ? edited.size() : 0);
            for (EditEvaluator.Scores s : edited) {
                losses.add(sentinel(s.loss()[i], nonFinite));
                if (correct) {
                    flags.add(s.correct()[i]);
                }
            }
            examples.add(ExampleLosses.newBuilder().setSampleId(ids.get(i)).setProbe(probe[i])
                    .setLossNow(sentinel(now.loss()[i], nonFinite)).setCorrectNow(correct && now.correct()[i])
                    .setLossEdited(losses).setCorrectEdited(flags).build());
        }
        ProbeResult result = ProbeResult.newBuilder().setRunId(runId).setCandidateId(p.candidate().getCandidateId())
                .setLayer(layer).setStep(step).setRhos(new ArrayList<>(p.candidate().getRhos())).setExamples(examples)
                .setTimestampMs(System.currentTimeMillis()).build();
        return new Answer(result, nonFinite[0]);
    }

    /**
     * A loss as SERVICE-CONTRACT §1 sends it: finite ones as they are, NaN and +∞ as
     * {@link Float#MAX_VALUE} (as bad as a loss gets), −∞ as −{@link Float#MAX_VALUE}; the service
     * leaves an example with such a loss out instead of dead-lettering the whole answer.
     */
    static float sentinel(float loss, long[] nonFinite) {
        if (Float.isFinite(loss)) {
            return loss;
        }
        nonFinite[0]++;
        return loss < 0 ? -Float.MAX_VALUE : Float.MAX_VALUE;
    }

}
