package dev.curvewatch.service.internal;

import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.LayerRho;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;

/**
 * The write endpoints of SERVICE-CONTRACT §5 but the guard's: {@code POST /api/runs/{run}/edits}
 * (edit scope: the body checked field by field, the edit thread's own refusals answered here as
 * 404/409, then the request handed to Kafka, 202) and {@code POST /api/runs/{run}/refresh} (admin
 * scope: every layer of the run refreshed at its next chance, that refresh's candidate not paced).
 */
final class EditRoutes {
    private static final Set<String> EDIT_FIELDS = Set.of("layers", "reason", "idempotency_key");

    private final Vertx vertx;
    private final Registry registry;
    private final Outputs out;

    EditRoutes(Vertx vertx, Registry registry, Outputs out) {
        this.vertx = vertx;
        this.registry = registry;
        this.out = out;
    }

    void mount(Router r, Access access, Handler<RoutingContext> body) {
        r.post("/api/runs/:run/edits").handler(body).handler(access.require(BearerTokens.Scope.EDIT)).handler(this::edit);
        r.post("/api/runs/:run/refresh").handler(body).handler(access.require(BearerTokens.Scope.ADMIN)).handler(this::refresh);
    }

    /** The JSON object body, {} when empty; null after answering 415/400. */
    private static JsonObject body(RoutingContext ctx) {
        String text = ctx.body() == null ? null : ctx.body().asString();
        if (text == null || text.isBlank()) {
            return new JsonObject();
        }
        String type = ctx.request().getHeader(HttpHeaders.CONTENT_TYPE);
        if (type == null || !type.toLowerCase(Locale.ROOT).trim().startsWith("application/json")) {
            HttpApi.fail(ctx, 415, "the body must be application/json");
            return null;
        }
        try {
            Object v = io.vertx.core.json.Json.decodeValue(text);
            if (!(v instanceof JsonObject o)) {
                HttpApi.fail(ctx, 400, "the body must be a JSON object");
                return null;
            }
            return o;
        } catch (DecodeException e) {
            HttpApi.fail(ctx, 400, "the body is not valid JSON");
            return null;
        }
    }

    private void edit(RoutingContext ctx) {
        Registry.Run r = HttpApi.knownRun(ctx, registry);
        if (r == null) {
            return;
        }
        JsonObject body = body(ctx);
        if (body == null) {
            return;
        }
        for (String f : body.fieldNames()) {
            if (!EDIT_FIELDS.contains(f)) {
                HttpApi.fail(ctx, 400, "unknown field '" + (f.length() > 40 ? f.substring(0, 40) + "..." : f) + "' (expected " + EDIT_FIELDS + ")");
                return;
            }
        }
        if (r.info() == null) {
            HttpApi.fail(ctx, 404, "run '" + r.id() + "' is not registered");
            return;
        }
        List<LayerRho> layers = new ArrayList<>();
        Object ls = body.getValue("layers");
        if (ls != null && !(ls instanceof JsonArray)) {
            HttpApi.fail(ctx, 400, "layers must be an array of {\"layer\": name, \"rho\": number}");
            return;
        }
        if (ls != null) {
            for (Object item : (JsonArray) ls) {
                if (!(item instanceof JsonObject lo) || !(lo.getValue("layer") instanceof String name)
                        || (lo.getValue("rho") != null && !(lo.getValue("rho") instanceof Number))
                        || !Set.of("layer", "rho").containsAll(lo.fieldNames())) {
                    HttpApi.fail(ctx, 400, "each layer must be {\"layer\": name, \"rho\": number (optional)}");
                    return;
                }
                if (HttpApi.id(ctx, name, "layer") == null) {
                    return;
                }
                if (r.info().getLayers().stream().noneMatch(l -> l.getName().equals(name))) {
                    HttpApi.fail(ctx, 404, "unknown layer '" + name + "' of run '" + r.id() + "'");
                    return;
                }
                double rho = lo.getValue("rho") == null ? 0 : ((Number) lo.getValue("rho")).doubleValue();
                if (!Double.isFinite(rho) || rho > 1) {
                    HttpApi.fail(ctx, 400, "rho of layer '" + name + "' must be in (0, 1], or <= 0 / omitted for the calibrated rho");
                    return;
                }
                layers.add(new LayerRho(name, rho));
            }
        }
        Object reason = body.getValue("reason");
        if (reason != null && (!(reason instanceof String s) || s.length() > 1024)) {
            HttpApi.fail(ctx, 400, "reason must be a string of at most 1024 characters");
            return;
        }
        Object keyValue = body.getValue("idempotency_key");
        if (keyValue != null && !(keyValue instanceof String)) {
            HttpApi.fail(ctx, 400, "idempotency_key must be a string");
            return;
        }
        String key = keyValue == null ? UUID.randomUUID().toString() : (String) keyValue;
        if (HttpApi.id(ctx, key, "idempotency_key") == null) {
            return;
        }
        // the edit thread's own checks, now: a layer it would refuse is a 404/409 with the reason here, not a 202
        Optional<EditPlan.Refusal> refused = EditPlan.refusal(layers, r, registry);
        if (refused.isPresent()) {
            HttpApi.fail(ctx, refused.get().status(), refused.get().message());
            return;
        }
        EditRequest req = EditRequest.newBuilder().setIdempotencyKey(key).setRunId(r.id()).setLayers(layers)
                .setRequester(ctx.get("requester")).setReason(reason == null ? "" : (String) reason)
                .setCreatedMs(System.currentTimeMillis()).build();
        // KafkaProducer.send may block (metadata, a full buffer): never on the event loop
        vertx.executeBlocking(() -> out.editRequest(req).get(30, java.util.concurrent.TimeUnit.SECONDS), false).onComplete(res -> {
            if (res.failed()) {
                Throwable err = res.cause() instanceof java.util.concurrent.ExecutionException ee && ee.getCause() != null
                        ? ee.getCause() : res.cause();
                HttpApi.fail(ctx, 503, "the edit request could not be published: " + err);
            } else {
                HttpApi.json(ctx, 202, new JsonObject().put("idempotency_key", key).put("status", "accepted"));
            }
        });
    }

    private void refresh(RoutingContext ctx) {
        Registry.Run r = HttpApi.knownRun(ctx, registry);
        if (r == null) {
            return;
        }
        HttpApi.json(ctx, 202, new JsonObject().put("status", "accepted").put("layers", new JsonArray(r.forceRefresh())));
    }
}
