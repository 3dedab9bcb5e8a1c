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

// The text box follows the URL (issue 25): results are swapped by htmx and the URL pushed, so Back and Forward
// restore results from htmx's history; the box outside the swapped part is filled from the URL's text= and
// model= on every history move (and on load), so it always shows the text whose results are on screen.
(function () {
  "use strict";
  function formFromUrl() {
    var form = document.getElementById("link-form");
    if (!form) return;
    var params = new URLSearchParams(window.location.search);
    var box = form.querySelector("textarea[name=text], input[name=text]");
    if (box) box.value = params.get("text") || "";
    var model = form.querySelector("select[name=model]");
    if (model && params.get("model")) {
      for (var i = 0; i < model.options.length; i++) {
        if (model.options[i].value === params.get("model")) model.selectedIndex = i;
      }
    }
  }
  document.addEventListener("htmx:historyRestore", formFromUrl);
  window.addEventListener("popstate", function () { window.setTimeout(formFromUrl, 0); });
  window.addEventListener("pageshow", formFromUrl);
})();
