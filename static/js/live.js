// Live elements (portal/core/live.py): an element with data-live-every polls its hx-get URL.
// It asks only while the tab is visible (and at once when it becomes visible again), waits
// twice as long after each failed try (up to MAX_BACKOFF seconds), and stops on status 286.
// Only answers carrying the X-Fieldwatch-Live header are swapped in: a sign-in page that a
// redirect produced after the session ended is never pasted into the page.
(function () {
  const MAX_BACKOFF = 300; // seconds; portal.core.live.MAX_BACKOFF_SECONDS says the same
  const STOP = 286;
  const TICK = 250; // ms; the shortest interval an element may ask for (templatetags/live.py MIN_EVERY)
  const states = new Map(); // element id -> {due: ms, failures, stopped}; ids survive swaps

  function isLive(element) {
    return element && element.dataset && element.dataset.liveEvery !== undefined;
  }

  function state(element) {
    const key = element.id || element.getAttribute("hx-get");
    if (!states.has(key)) {
      states.set(key, { due: Date.now() + every(element) * 1000, failures: 0, stopped: false });
    }
    return states.get(key);
  }

  function every(element) {
    return Math.max(TICK / 1000, Number(element.dataset.liveEvery) || 10);
  }

  function delay(element, failures) {
    return Math.min(every(element) * Math.pow(2, failures), MAX_BACKOFF) * 1000;
  }

  function requester(event) {
    const config = event.detail && event.detail.requestConfig;
    return (config && config.elt) || event.detail.elt || event.target;
  }

  function tick() {
    if (document.visibilityState !== "visible") return;
    const now = Date.now();
    document.querySelectorAll("[data-live-every]").forEach((element) => {
      const current = state(element);
      if (current.stopped || now < current.due) return;
      current.due = now + delay(element, current.failures); // until the answer says otherwise
      htmx.trigger(element, "fw:live");
    });
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    const element = requester(event);
    if (!isLive(element)) return;
    const xhr = event.detail.xhr;
    if (xhr.status === STOP || !xhr.getResponseHeader("X-Fieldwatch-Live")) {
      event.detail.shouldSwap = false;
    }
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const element = requester(event);
    if (!isLive(element)) return;
    const current = state(element);
    const xhr = event.detail.xhr;
    const ok = xhr && (xhr.status === 200 || xhr.status === 204) && xhr.getResponseHeader("X-Fieldwatch-Live");
    if (xhr && xhr.status === STOP) {
      current.stopped = true;
      element.removeAttribute("data-live-every");
      return;
    }
    current.failures = ok ? 0 : current.failures + 1;
    current.due = Date.now() + delay(element, current.failures);
    document.documentElement.dataset.liveFailures = String(current.failures); // for tests and curious people
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    states.forEach((current) => { current.due = 0; });
    tick();
  });

  setInterval(tick, TICK);
})();
