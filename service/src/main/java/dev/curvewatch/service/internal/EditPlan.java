package dev.curvewatch.service.internal;

import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.WeightAssembler;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * What an edit request needs from the service's state, and every check that can refuse it: the
 * layers it names (none: every watched layer), each with its rho (&lt;= 0: the calibrated one; two
 * or more such layers share one tolerance, {@link JointEdit}), its latest weight and eigenbases. The edit thread ({@link EditRequests}) and the REST endpoint use
 * the same checks, so a request the edit thread would refuse is refused at the REST call, with its
 * reason (issue 11: a 202 followed by only a dead letter told the caller nothing).
 */
final class EditPlan {
    /** A layer's factors are known but its eigenbasis is still being computed (e.g. just after a restart): worth waiting for. */
    static final class BasesPending extends RuntimeException {
        BasesPending(String message) {
            super(message);
        }
    }

    /** Why a REST edit cannot be served now: an HTTP status and the reason. */
    record Refusal(int status, String message) {
    }

    private EditPlan() {
    }

    /**
     * The layers to edit with their rho; every check that can refuse the request.
     *
     * @throws InvalidRecordException UNKNOWN_LAYER, INVALID_FIELD, NOT_READY (not calibrated, no weight, no eigenbasis), SHAPE_MISMATCH
     * @throws BasesPending           when a layer's eigenbasis is being computed
     */
    static List<SnapshotEditor.LayerInput> inputs(List<LayerRho> requested, Registry.Run run, Registry registry) {
        Map<String, LayerInfo> watched = new LinkedHashMap<>();
        run.info().getLayers().forEach(l -> watched.put(l.getName(), l));
        List<LayerRho> wanted = new ArrayList<>(requested);
        if (wanted.isEmpty()) {
            watched.keySet().forEach(name -> wanted.add(new LayerRho(name, 0.0)));
        }
        Set<String> seen = new LinkedHashSet<>();
        for (LayerRho lr : wanted) {
            String name = lr.getLayer();
            ContractChecks.requireId(name, "layer");
            if (!seen.add(name)) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "layer '" + name + "' is listed twice");
            }
            if (!watched.containsKey(name)) {
                throw new InvalidRecordException(RejectReason.UNKNOWN_LAYER, "layer '" + name + "' is not watched by run '" + run.id() + "'");
            }
        }
        Map<String, Double> joint = jointRhos(wanted, run, registry);
        List<SnapshotEditor.LayerInput> out = new ArrayList<>();
        for (LayerRho lr : wanted) {
            Double shared = joint.get(lr.getLayer());
            if (shared != null && shared >= 1) {
                continue; // the joint choice leaves this layer as it is
            }
            out.add(input(lr.getLayer(), shared != null ? shared : lr.getRho(), watched.get(lr.getLayer()), run, registry));
        }
        if (out.isEmpty()) {
            throw new InvalidRecordException(RejectReason.NOT_READY, "no layer of the joint edit of " + joint.keySet()
                    + " keeps the probes within the tolerance at any share of it: nothing to edit");
        }
        return out;
    }

    /**
     * Two or more layers at their calibrated rho (rho &lt;= 0) share one tolerance ({@link JointEdit}):
     * their rhos, 1.0 for a layer left as it is. Empty for fewer than two such layers (one is
     * edited at its own calibrated rho).
     */
    private static Map<String, Double> jointRhos(List<LayerRho> wanted, Registry.Run run, Registry registry) {
        Map<String, JointEdit.Curve> curves = new LinkedHashMap<>();
        for (LayerRho lr : wanted) {
            if (!(lr.getRho() <= 0)) {
                continue;
            }
            String name = lr.getLayer();
            LayerState.EditView v = registry.existing(run.id(), name).map(LayerState::editView).orElseThrow(() ->
                    new InvalidRecordException(RejectReason.NOT_READY, "layer '" + name + "' has no factors yet"));
            if (!(v.calibratedRho() > 0 && v.calibratedRho() <= 1)) {
                throw new InvalidRecordException(RejectReason.NOT_READY, "layer '" + name + "' has no calibrated rho: " + v.noRhoBecause()
                        + "; give an explicit rho to edit it anyway");
            }
            curves.put(name, v.probeCosts());
        }
        if (curves.size() < 2) {
            return Map.of();
        }
        for (Map.Entry<String, JointEdit.Curve> e : curves.entrySet()) {
            if (e.getValue() == null) {
                throw new InvalidRecordException(RejectReason.NOT_READY, "layer '" + e.getKey() + "': its calibrated rho comes from "
                        + "the service's history, without the probe costs a joint edit of " + curves.keySet() + " shares the tolerance "
                        + "by; they come with its next calibration (or give explicit rhos)");
            }
        }
        return JointEdit.choose(curves).rhos();
    }

    private static SnapshotEditor.LayerInput input(String name, double requestedRho, LayerInfo info, Registry.Run run, Registry registry) {
        double rho = requestedRho;
        if (Double.isNaN(rho) || rho > 1) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "layer '" + name + "': rho " + rho
                    + " is not in (0, 1] (or <= 0 for the calibrated rho)");
        }
        LayerState.EditView v = registry.existing(run.id(), name).map(LayerState::editView).orElseThrow(() ->
                new InvalidRecordException(RejectReason.NOT_READY, "layer '" + name + "' has no factors yet"));
        if (rho <= 0) {
            rho = v.calibratedRho();
            if (!(rho > 0 && rho <= 1)) {
                throw new InvalidRecordException(RejectReason.NOT_READY, "layer '" + name + "' has no calibrated rho: " + v.noRhoBecause()
                        + "; give an explicit rho to edit it anyway");
            }
        }
        if (v.weight() == null) {
            throw new InvalidRecordException(RejectReason.NOT_READY, "layer '" + name + "' has no weight snapshot yet");
        }
        WeightAssembler.Assembled w = v.weight();
        if (w.dOut() != info.getDOut() || w.dIn() != info.getDIn() || w.weight().length != (long) info.getDOut() * info.getDIn()
                || (w.bias() != null && w.bias().length != info.getDOut())) {
            // e.g. the run re-registered the layer with other sides after this weight arrived
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "layer '" + name + "': the latest weight (step "
                    + w.step() + ") is " + w.dOut() + " x " + w.dIn() + " with " + w.weight().length + " values"
                    + (w.bias() == null ? "" : " and a bias of " + w.bias().length) + ", the layer is registered as "
                    + info.getDOut() + " x " + info.getDIn());
        }
        if (v.g() == null || v.a() == null) {
            if (v.refreshPending() || !registry.owns(run.id())) { // another instance owns the run: its edit thread decides
                throw new BasesPending("layer '" + name + "' has factors (version " + v.factorVersion() + ") but no eigenbasis yet");
            }
            throw new InvalidRecordException(RejectReason.NOT_READY, "layer '" + name + "' has no eigenbasis yet");
        }
        if (v.g().size() != info.getDOut() || v.a().size() != info.getDIn()) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, "layer '" + name + "': eigenbases are " + v.g().size() + " and "
                    + v.a().size() + ", the layer is registered as " + info.getDOut() + " x " + info.getDIn());
        }
        return new SnapshotEditor.LayerInput(name, info.getDOut(), info.getDIn(), w.weight(), w.bias(), w.step(), v.g(), v.a(), rho,
                v.basesVersion());
    }

    /**
     * Whether a REST edit could be served now; empty when it could (or waits only for an
     * eigenbasis being computed, which the edit thread waits for). 404 for an unknown layer, 400
     * for a bad field, 409 for a layer not ready (no calibrated rho, weight or eigenbasis) or whose
     * state does not fit its registration.
     */
    static Optional<Refusal> refusal(List<LayerRho> requested, Registry.Run run, Registry registry) {
        try {
            inputs(requested, run, registry);
            return Optional.empty();
        } catch (BasesPending e) {
            return Optional.empty();
        } catch (InvalidRecordException e) {
            int status = switch (e.reason()) {
                case UNKNOWN_LAYER, UNKNOWN_RUN -> 404;
                case INVALID_FIELD -> 400;
                default -> 409;
            };
            return Optional.of(new Refusal(status, e.getMessage()));
        }
    }
}
