// Keyboard-first labeling: a label's key submits it, S skips, U undoes, Z zooms, ? shows
// the keys. The card swaps in through htmx; the page never reloads.
(function () {
  let shownAt = performance.now();
  const help = document.getElementById("keys-help");

  function markSuggestion() {
    const suggestion = document.querySelector("#suggestion[data-label]");
    const wanted = suggestion ? suggestion.dataset.label : "";
    document.querySelectorAll("#label-form button[name=value]").forEach(function (button) {
      button.classList.toggle("suggested", !!wanted && button.value === wanted);
    });
  }

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id === "sample-card") shownAt = performance.now();
    markSuggestion();
  });

  function press(selector) {
    const button = document.querySelector(selector);
    if (!button) return false;
    // htmx wires up a swapped-in card only when it settles (20 ms later); a key pressed
    // before that would submit the form natively and reload the page. Processing is idempotent.
    if (window.htmx && button.form) htmx.process(button.form);
    button.click();
    return true;
  }

  function toggleZoom() {
    const figure = document.querySelector("#sample-card figure.sample");
    if (figure && figure.querySelector("img")) figure.classList.toggle("zoomed");
  }

  function toggleHelp() {
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-zoom]")) { event.preventDefault(); toggleZoom(); }
    else if (event.target.closest("[data-help]")) { event.preventDefault(); toggleHelp(); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.matches("input, textarea, select")) return;
    if (help && help.open) {
      if (event.key === "?") { event.preventDefault(); help.close(); }
      return;  // the dialog's own keys (Escape closes it)
    }
    const key = event.key;
    const label = '#label-form button[data-key="' + CSS.escape(key) + '"]';
    let handled = false;
    if (document.querySelector(label)) handled = press(label);
    else if (key === "s" || key === "S") handled = press('#skip-form button');
    else if (key === "u" || key === "U") handled = press('#undo-form button');
    else if (key === "z" || key === "Z") { toggleZoom(); handled = true; }
    else if (key === "?") { toggleHelp(); handled = true; }
    if (handled) event.preventDefault();
  });

  document.body.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.id === "label-form") {
      event.detail.parameters["duration_ms"] = String(Math.round(performance.now() - shownAt));
    }
  });
})();
