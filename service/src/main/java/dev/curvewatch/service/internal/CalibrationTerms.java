package dev.curvewatch.service.internal;

import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.avro.EditCandidate;

import java.util.List;

/**
 * What the service asks of a trainer with every EditCandidate (v3, part 0) and holds its answer
 * to: how to search (ALL or BISECT), the tolerances of the calibration rule, the candidate
 * indices at which training examples are evaluated besides the rho found, and k of the
 * per-example peak statistic (0: not asked). One value per service (its configuration).
 */
public record CalibrationTerms(CalibrationSearch search, double accuracyTolerance, double lossTolerance, List<Integer> trainCandidates,
                               int peakTokens) {
    /** The schema defaults: what a v1 trainer assumes. */
    public static final CalibrationTerms DEFAULTS = new CalibrationTerms(CalibrationSearch.ALL, 0.01, Math.log(1.05), List.of(), 0);

    public CalibrationTerms {
        trainCandidates = List.copyOf(trainCandidates);
        if (!(accuracyTolerance >= 0) || !(lossTolerance >= 0) || peakTokens < 0) {
            throw new IllegalArgumentException("tolerances and peak tokens must be >= 0: " + accuracyTolerance + ", " + lossTolerance + ", "
                    + peakTokens);
        }
    }

    /** The same terms with other tolerances. */
    public CalibrationTerms withTolerances(double accuracy, double loss) {
        return new CalibrationTerms(search, accuracy, loss, trainCandidates, peakTokens);
    }

    /** Writes the terms into a candidate's part 0. */
    EditCandidate.Builder into(EditCandidate.Builder b) {
        return b.setSearch(search).setAccuracyTolerance(accuracyTolerance).setLossTolerance(lossTolerance)
                .setTrainCandidates(trainCandidates).setPeakTokens(peakTokens);
    }
}
