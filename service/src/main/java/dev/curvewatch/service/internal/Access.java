package dev.curvewatch.service.internal;

import dev.curvewatch.service.internal.BearerTokens.Scope;
import io.vertx.core.Handler;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.RoutingContext;

import java.util.Optional;

/**
 * Who may call what (SERVICE-CONTRACT §5): route handlers that require a token {@link Scope}, and
 * the response headers every answer carries.
 * <ul>
 *   <li>{@link #require}: no configured token = 403 (never open), a missing or wrong token = 401, a
 *       token without the scope = 403 naming it. The token comes from {@code Authorization: Bearer},
 *       or on the live endpoints (SSE, WebSocket), which browsers open without custom headers,
 *       from {@code ?access_token=}.</li>
 *   <li>{@link #read}: the same for {@link Scope#READ} when reads are protected
 *       ({@code auth.read.required}), else open.</li>
 *   <li>{@link #headers}: Content-Security-Policy (own origin only, no inline script, no framing),
 *       X-Content-Type-Options nosniff, X-Frame-Options DENY, Referrer-Policy no-referrer.</li>
 * </ul>
 */
public final class Access {
    /** The dashboard loads only its own files and talks only to this origin; nothing may frame it. */
    public static final String CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
            + "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private final BearerTokens tokens;
    private final boolean readRequired;

    public Access(BearerTokens tokens, boolean readRequired) {
        this.tokens = tokens;
        this.readRequired = readRequired;
    }

    public boolean readRequired() {
        return readRequired;
    }

    /** Security headers on every answer, the API's JSON and the dashboard's files alike. */
    public static void headers(RoutingContext ctx) {
        ctx.response().putHeader("Content-Security-Policy", CSP)
                .putHeader("X-Content-Type-Options", "nosniff")
                .putHeader("X-Frame-Options", "DENY")
                .putHeader("Referrer-Policy", "no-referrer");
        ctx.next();
    }

    /** Requires a token with {@code scope}; on success the requester ({@code http:token-xxxxxxxx}) is in the context. */
    public Handler<RoutingContext> require(Scope scope) {
        return ctx -> check(ctx, scope);
    }

    /** Requires {@link Scope#READ} when reads are protected; otherwise lets everyone read. */
    public Handler<RoutingContext> read() {
        return ctx -> {
            if (readRequired) {
                check(ctx, Scope.READ);
            } else {
                ctx.next();
            }
        };
    }

    private void check(RoutingContext ctx, Scope scope) {
        if (tokens.isEmpty()) {
            deny(ctx, 403, "no token configured: set auth.tokens or auth.tokens.file to enable this endpoint");
            return;
        }
        String presented = presented(ctx);
        if (presented == null) {
            ctx.response().putHeader("WWW-Authenticate", "Bearer realm=\"curvewatch\", scope=\"" + name(scope) + "\"");
            deny(ctx, 401, "missing bearer token (Authorization: Bearer <token> with scope " + name(scope) + ")");
            return;
        }
        Optional<BearerTokens.Principal> who = tokens.match(presented);
        if (who.isEmpty()) {
            ctx.response().putHeader("WWW-Authenticate", "Bearer realm=\"curvewatch\", error=\"invalid_token\"");
            deny(ctx, 401, "wrong bearer token");
            return;
        }
        if (!who.get().scope().includes(scope)) {
            ctx.response().putHeader("WWW-Authenticate", "Bearer realm=\"curvewatch\", error=\"insufficient_scope\", scope=\""
                    + name(scope) + "\"");
            deny(ctx, 403, "token " + who.get().name() + " has scope " + name(who.get().scope()) + "; this needs " + name(scope));
            return;
        }
        ctx.put("requester", "http:" + who.get().name());
        ctx.next();
    }

    /** The Authorization header's token, or on /api/events and /api/ws the access_token query parameter; null if none. */
    private static String presented(RoutingContext ctx) {
        String h = ctx.request().getHeader(HttpHeaders.AUTHORIZATION);
        if (h != null && h.length() >= 8 && h.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return h.substring(7).trim();
        }
        String path = ctx.normalizedPath();
        if (path.equals("/api/events") || path.equals("/api/ws")) {
            String q = ctx.queryParams().get("access_token");
            return q == null || q.isBlank() ? null : q.trim();
        }
        return null;
    }

    private static String name(Scope s) {
        return s.name().toLowerCase(java.util.Locale.ROOT);
    }

    private static void deny(RoutingContext ctx, int status, String message) {
        ctx.response().setStatusCode(status).putHeader(HttpHeaders.CONTENT_TYPE, "application/json; charset=utf-8")
                .end(new JsonObject().put("error", message).encode());
    }
}
