package dev.curvewatch.sinks.internal;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What the HTTP sinks share: one client whose connect and request timeout is {@code timeoutMs},
 * JSON POSTs to one URL, and the counts of alerts delivered and failed for good. How a sink queues,
 * retries and stops is its own.
 */
abstract class HttpSink implements Sink {
    protected final URI url;
    private final Duration timeout;
    private final HttpClient http;
    private final AtomicLong delivered = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();

    HttpSink(URI url, long timeoutMs) {
        this.url = url;
        this.timeout = Duration.ofMillis(timeoutMs);
        this.http = HttpClient.newBuilder().connectTimeout(timeout).build();
    }

    /** A JSON POST to the URL with the request timeout; a sink adds its own headers. */
    final HttpRequest.Builder jsonPost() {
        return HttpRequest.newBuilder(url).timeout(timeout).header("Content-Type", "application/json");
    }

    /** Sends {@code request} with {@code body}; the answer read as text. */
    final HttpResponse<String> send(HttpRequest.Builder request, HttpRequest.BodyPublisher body)
            throws IOException, InterruptedException {
        return http.send(request.POST(body).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** A 2xx answer: the destination took the alerts. */
    static boolean accepted(HttpResponse<?> answer) {
        return answer.statusCode() / 100 == 2;
    }

    final void countDelivered(long alerts) {
        delivered.addAndGet(alerts);
    }

    final void countFailed(long alerts) {
        failed.addAndGet(alerts);
    }

    @Override
    public final long delivered() {
        return delivered.get();
    }

    @Override
    public final long failed() {
        return failed.get();
    }
}
