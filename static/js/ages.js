// Times that age on their own: <time data-ago="epoch seconds"> says how long ago, and a badge
// with data-fresh-until="epoch seconds" turns to its stale text once that moment has passed,
// whether or not anything arrives from the server (portal/core/templatetags/live.py).
(function () {
  // the server's clock, not the browser's, decides what is "now" (see data-server-now on <body>)
  const serverNow = Number(document.body.dataset.serverNow || 0);
  const skew = serverNow ? serverNow * 1000 - Date.now() : 0;

  function agoText(seconds) { // the same words as portal.core.templatetags.live.ago_text
    if (seconds < 5) return "now";
    const sizes = [[86400, "a day", "days"], [3600, "an hour", "hours"], [60, "a minute", "minutes"]];
    for (const [size, one, many] of sizes) {
      if (seconds >= size) {
        const count = Math.floor(seconds / size);
        return count === 1 ? one + " ago" : count + " " + many + " ago";
      }
    }
    return seconds + " seconds ago";
  }

  function refresh(root) {
    const now = (Date.now() + skew) / 1000;
    (root || document).querySelectorAll("[data-ago]").forEach((element) => {
      const text = agoText(Math.floor(now - Number(element.dataset.ago)));
      if (element.textContent !== text) element.textContent = text;
    });
    (root || document).querySelectorAll("[data-fresh-until]").forEach((element) => {
      if (now < Number(element.dataset.freshUntil) || element.dataset.staled) return;
      element.classList.remove("text-bg-success");
      element.classList.add(element.dataset.staleClass || "text-bg-warning");
      element.textContent = element.dataset.staleText || "stale";
      element.dataset.staled = "true";
    });
  }

  window.fieldwatchAges = { refresh: refresh, agoText: agoText };
  document.addEventListener("htmx:afterSettle", (event) => refresh(event.detail.elt));
  setInterval(refresh, 2000);
})();
