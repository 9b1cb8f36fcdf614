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
 */
public record LayerStatus(String runId, String layer, int dIn, int dOut, boolean hasBias, long factorVersion, long factorTokens,
                          long refreshedVersion, long step, double calibratedRho, long calibratedVersion, long keptPairs,
                          String status, String lastFailure, long lastRefreshMs, int refreshes, int failedRefreshes,
                          long candidatesSent, int calibrationTimeouts, long weightStep) {
}
