package dev.curvewatch.service;

/**
 * What the service knows about one watched layer, as of now.
 *
 * @param factorVersion   newest factor manifest version seen (-1 none)
 * @param factorTokens    tokens behind it
 * @param refreshedVersion factor version of the last successful refresh (-1 none)
 * @param step            step of the last refresh (the manifest's step_last), -1 none
 * @param calibratedRho   latest calibrated rho, NaN before the first calibration
 * @param calibratedVersion factor version the calibrated rho was computed at (-1 none)
 * @param status          a short human-readable state ("refreshed", "calibrating", "refresh failed: ...")
 * @param lastFailure     reason of the latest failed refresh, or null
 * @param weightStep      step of the latest assembled weight, -1 none
 * @param calibrationValid whether the latest calibration means something: 1 yes, 0 no (see calibrationProblem), -1 none yet
 * @param calibrationProblem why the latest calibration is invalid, or null
 * @param warning         a calibrated rho stuck at a grid edge, or null
 * @param candidatesDeclined candidates the trainer declined
 * @param candidateBackoff the candidate pacing's back-off level (the step gap is multiplied by 2^level)
 * @param candidatePaced  why the latest refresh sent no candidate, or null
 * @param deadLetters     the layer's dead letters read from topic dead-letters (captures, factors, weights, ...)
 */
public record LayerStatus(String runId, String layer, int dIn, int dOut, boolean hasBias, long factorVersion, long factorTokens,
                          long refreshedVersion, long step, double calibratedRho, long calibratedVersion, long keptPairs,
                          String status, String lastFailure, long lastRefreshMs, int refreshes, int failedRefreshes,
                          long candidatesSent, int calibrationTimeouts, long weightStep, int calibrationValid,
                          String calibrationProblem, String warning, int candidatesDeclined, int candidateBackoff,
                          String candidatePaced, DeadLetterSummary deadLetters) {
}
