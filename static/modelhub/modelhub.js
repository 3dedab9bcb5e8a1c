// Batch upload: once a CSV is chosen, send its first bytes to the preview endpoint, which reads them
// with the same code as the scoring job, picks the text column (the longest text-like one) and
// shows the first rows exactly as they will be scored. Changing the column asks again.
// Without JS the plain "Text column" box still works (blank = chosen on the server the same way).
(function () {
  "use strict";

  function setupBatch(form) {
    var file = form.querySelector("input[type=file]");
    var holder = form.querySelector("[data-column-picker]");
    if (!file || !holder || !form.dataset.previewUrl) return;
    var limit = parseInt(form.dataset.previewBytes || "65536", 10);
    var pending = 0;

    function preview(column) {
      if (!file.files.length) return;
      var chosen = file.files[0];
      var body = new FormData();
      body.append("csrfmiddlewaretoken", form.querySelector("input[name=csrfmiddlewaretoken]").value);
      body.append("file", chosen.slice(0, limit), chosen.name);
      body.append("text_column", column || "");
      if (chosen.size > limit) body.append("partial", "on");
      var ticket = ++pending;
      holder.setAttribute("aria-busy", "true");
      fetch(form.dataset.previewUrl, { method: "POST", body: body, credentials: "same-origin",
                                       headers: { "X-Requested-With": "fetch" } })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          if (ticket !== pending) return;  // an older answer arriving late
          holder.innerHTML = html;
          holder.removeAttribute("aria-busy");
        });
    }

    file.addEventListener("change", function () { preview(""); });
    holder.addEventListener("change", function (event) {
      if (event.target && event.target.name === "text_column") preview(event.target.value);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#batch-form").forEach(setupBatch);
  });
})();

// Ctrl+Enter (Cmd+Enter on a Mac) in a text box submits its form, as the button would (htmx included).
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var box = event.target;
    if (!box || box.tagName !== "TEXTAREA" || !box.form) return;
    event.preventDefault();
    var button = box.form.querySelector("button[type=submit]:not([name]), button:not([type]):not([name])");
    if (box.form.requestSubmit) box.form.requestSubmit(button || undefined); else box.form.submit();
  });
})();
