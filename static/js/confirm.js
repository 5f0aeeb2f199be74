// Forms with data-confirm ask before they submit (Promote, Roll back). The server does not
// rely on it: only a POST with the CSRF token changes anything.
(function () {
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
})();
