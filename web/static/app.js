// Dispatch pages: live parts and small conveniences, no framework.
// An element with data-live="/url" is refreshed from that URL (a server-
// rendered fragment) every 2 s while the tab is visible.
(function () {
  "use strict";
  const PERIOD_MS = 2000;

  function refresh(el) {
    if (document.hidden) return;
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        if (res.redirected || !res.ok) throw new Error("status " + res.status);
        return res.text();
      })
      .then(function (html) {
        el.innerHTML = html;
        el.dataset.refreshed = String(Date.now());
        el.removeAttribute("data-stale");
      })
      .catch(function () { el.setAttribute("data-stale", "true"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      setInterval(function () { refresh(el); }, PERIOD_MS);
    });
    // A form sent back with an error: bring the field at fault into view.
    const firstError = Array.from(document.querySelectorAll(".field-error"))
      .find(function (e) { return e.textContent.trim() !== ""; });
    if (firstError) {
      const field = firstError.closest(".field");
      const input = field && field.querySelector("input:not([type=hidden]), select, textarea");
      firstError.scrollIntoView({ block: "center" });
      if (input) input.focus({ preventScroll: true });
    }
    // Choosing another plugin or version redraws the form with its fields.
    document.querySelectorAll("select[data-reload]").forEach(function (sel) {
      sel.addEventListener("change", function () {
        const button = document.getElementById("reload");
        if (button) button.click();
      });
    });
  });
})();
