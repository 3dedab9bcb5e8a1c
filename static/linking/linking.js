// Ctrl+Enter (Cmd+Enter on a Mac) in the text box links the text, as the button would.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var box = event.target;
    if (!box || box.tagName !== "TEXTAREA" || !box.form) return;
    event.preventDefault();
    if (box.form.requestSubmit) box.form.requestSubmit(); else box.form.submit();
  });
})();
