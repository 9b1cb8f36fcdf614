package dev.curvewatch.service.internal;

import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.SnapshotEvent;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;

import java.util.Optional;

/**
 * The guard's HTTP endpoints: {@code GET /api/runs/{run}/guard} (its decisions, newest first, read
 * scope when reads are protected) and {@code POST /api/runs/{run}/rollbacks/{id}} (edit scope: send
 * an offered rollback snapshot to the trainer).
 */
final class GuardRoutes {
    private final Vertx vertx;
    private final Registry registry;
    private final GuardWatch guard;

    GuardRoutes(Vertx vertx, Registry registry, GuardWatch guard) {
        this.vertx = vertx;
        this.registry = registry;
        this.guard = guard;
    }

    void mount(Router r, Access access, Handler<RoutingContext> body) {
        r.get("/api/runs/:run/guard").handler(this::decisions);
        r.post("/api/runs/:run/rollbacks/:id").handler(body).handler(access.require(BearerTokens.Scope.EDIT)).handler(this::rollback);
    }

    private void decisions(RoutingContext ctx) {
        String run = HttpApi.id(ctx, ctx.pathParam("run"), "run");
        if (run == null) {
            return;
        }
        if (registry.run(run).isEmpty()) {
            HttpApi.fail(ctx, 404, "unknown run '" + run + "'");
            return;
        }
        JsonArray a = new JsonArray();
        var list = guard.decisions(run);
        for (int i = list.size() - 1; i >= 0; i--) {
            GuardDecision d = list.get(i);
            a.add(Json.guardDecision(d));
        }
        HttpApi.json(ctx, 200, a);
    }

    private void rollback(RoutingContext ctx) {
        String run = HttpApi.id(ctx, ctx.pathParam("run"), "run");
        String id = run == null ? null : HttpApi.id(ctx, ctx.pathParam("id"), "rollback id");
        if (id == null) {
            return;
        }
        // publishing waits for the broker: never on the event loop
        vertx.<Optional<SnapshotEvent>>executeBlocking(() -> guard.rollback(run, id), false).onComplete(res -> {
            if (res.failed()) {
                HttpApi.fail(ctx, 503, "the rollback could not be published: " + res.cause());
            } else if (res.result().isEmpty()) {
                HttpApi.fail(ctx, 404, "no rollback '" + id + "' was offered for run '" + run + "'");
            } else {
                HttpApi.json(ctx, 202, new JsonObject().put("status", "accepted").put("snapshot", Json.snapshot(res.result().get())));
            }
        });
    }
}
