// Keyboard-first labeling: a label's key submits it; the card swaps in through htmx.
(function () {
  let shownAt = performance.now();
  document.body.addEventListener("htmx:afterSwap", function () { shownAt = performance.now(); });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.matches("input, textarea, select")) return;
    const button = document.querySelector('#label-form button[data-key="' + CSS.escape(event.key) + '"]');
    if (!button) return;
    event.preventDefault();
    // htmx wires up a swapped-in card only when it settles (20 ms later); a key pressed
    // before that would submit the form natively and reload the page. Processing is idempotent.
    if (window.htmx) htmx.process(button.form);
    button.click();
  });

  document.body.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.id === "label-form") {
      event.detail.parameters["duration_ms"] = String(Math.round(performance.now() - shownAt));
    }
  });
})();
