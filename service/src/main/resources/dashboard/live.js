// Live updates: Server-Sent Events from /api/events?run=..., reconnecting with exponential
// backoff (1 s doubling to 30 s, with jitter). While the stream is down the page polls the REST
// API every POLL_MS instead, and goes back to the stream as soon as it reopens.
// States reported to onState: 'connecting' | 'live' | 'polling' | 'offline'.

export const EVENT_TYPES = ['signal', 'alert', 'snapshot', 'run', 'layer', 'guard'];
const POLL_MS = 5000;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

export class LiveFeed {
  /**
   * @param {object} o
   * @param {string} o.url        event-stream URL
   * @param {(type: string, data: object) => void} o.onEvent
   * @param {() => Promise<void>} o.poll  re-reads the current view from the REST API
   * @param {(state: string, detail: object) => void} o.onState
   * @param {() => void} [o.onReconnect] called when the stream reopens after being down
   */
  constructor(o) {
    this.o = o;
    this.es = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pollTimer = null;
    this.stopped = false;
    this.everOpen = false;
    this.down = false;
    this.events = 0;
    this.retryAt = 0;
    this.pollFailed = false;
  }

  start() {
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.pollTimer);
    if (this.es) this.es.close();
    this.es = null;
  }

  state(name) {
    if (!this.stopped) this.o.onState(name, { events: this.events, retryAt: this.retryAt, attempt: this.attempt });
  }

  connect() {
    if (this.stopped) return;
    this.state(this.down ? (this.pollFailed ? 'offline' : 'polling') : 'connecting');
    let es;
    try {
      es = new EventSource(this.o.url);
    } catch (e) {
      this.failed();
      return;
    }
    this.es = es;
    es.onopen = () => {
      if (this.es !== es) return;
      const wasDown = this.down || this.everOpen;
      this.attempt = 0;
      this.everOpen = true;
      this.down = false;
      this.pollFailed = false;
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
      this.state('live');
      if (wasDown && this.o.onReconnect) this.o.onReconnect(); // catch up on what the gap missed
    };
    es.onerror = () => {
      if (this.es !== es) return;
      es.close(); // our own backoff, not the browser's fixed retry
      this.es = null;
      this.failed();
    };
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (ev) => {
        if (this.es !== es) return;
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return; // a malformed event is ignored; the next poll or refresh repairs the view
        }
        this.events++;
        this.o.onEvent(type, data);
        this.state('live');
      });
    }
  }

  failed() {
    if (this.stopped) return;
    this.down = true;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt++;
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.retryAt = Date.now() + jittered;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), jittered);
    if (!this.pollTimer) this.schedulePoll(0);
    this.state(this.pollFailed ? 'offline' : 'polling');
  }

  schedulePoll(delay) {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(async () => {
      if (this.stopped || !this.down) { this.pollTimer = null; return; }
      try {
        await this.o.poll();
        this.pollFailed = false;
      } catch {
        this.pollFailed = true;
      }
      if (this.stopped || !this.down) { this.pollTimer = null; return; }
      this.state(this.pollFailed ? 'offline' : 'polling');
      this.schedulePoll(POLL_MS);
    }, delay);
  }
}
