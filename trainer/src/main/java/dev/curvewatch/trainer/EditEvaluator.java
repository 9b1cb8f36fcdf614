package dev.curvewatch.trainer;

import java.util.List;
import java.util.Optional;

/**
 * What {@link CandidateResponder} needs from a model to answer an edit candidate (SERVICE-CONTRACT
 * §1): the current weight of a watched layer, and real forward passes that score a fixed set of
 * examples with that layer's weight replaced. The noisy-label MLP implements it
 * (the experiments' {@code NoisyLabelsEvaluator}); a language model (CanariesExperiment's LM) plugs in the same way,
 * with per-position losses summed per example and no correctness flags.
 *
 * <p>{@link #layer} and {@link #begin} are called on the training thread between steps; they
 * must not change the model.
 */
public interface EditEvaluator {

    /** The watched layer of that name, or empty when the trainer does not watch it. */
    Optional<LayerShape> layer(String name);

    /**
     * Freezes one answer's inputs, on the training thread and quickly (a copy of the parameters):
     * the model as it is now and its examples, every held-out probe example the trainer holds and
     * up to {@code maxTrainingExamples} recent training examples with the labels it trains on now.
     * The session is then scored on another thread while training goes on; the caller closes it.
     */
    Session begin(int maxTrainingExamples);

    /**
     * The model and examples of one answer, frozen at {@link #begin}; every {@link #score} call
     * scores the same examples in the same order. Usable from one other thread.
     */
    interface Session extends AutoCloseable {
        /** The layer's weight as frozen, d_out x d_in row-major (the caller only reads it). */
        float[] weight(String layer);

        List<String> sampleIds();

        /** probe()[i]: example i is a held-out probe (true) or a training example (false). */
        boolean[] probe();

        /** Whether {@link Scores#correct()} is meaningful (a classifier) or absent (an LM). */
        boolean hasCorrect();

        /**
         * Per-example loss (nats) and correctness with {@code layer}'s weight replaced by
         * {@code weight} (d_out x d_in row-major); {@code null} scores the model as it is.
         */
        Scores score(String layer, float[] weight);

        /** Releases the frozen copy. */
        @Override
        void close();
    }

    /** Per-example results in {@link Session#sampleIds()} order; {@code correct} is null without correctness. */
    record Scores(float[] loss, boolean[] correct) {
    }
}
