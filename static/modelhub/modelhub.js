// Batch upload: once a CSV is chosen, send its first bytes to the preview endpoint, which reads them
// with the same code as the scoring job, picks the text column (the longest text-like one) and
// shows the first rows exactly as they will be scored. Changing the column asks again.
// Without JS the plain "Text column" box still works (blank = chosen on the server the same way).
(function () {
  "use strict";

  function setBusy(form, indicator, busy) {
    if (indicator) indicator.classList.toggle("is-busy", busy);
    form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (button) {
      if (busy) {
        if (!button.disabled) { button.disabled = true; button.dataset.disabledByBusy = "1"; }
      } else if (button.dataset.disabledByBusy) {
        button.disabled = false; delete button.dataset.disabledByBusy;
      }
    });
  }

  function setupBatch(form) {
    var file = form.querySelector("input[type=file]");
    var holder = form.querySelector("[data-column-picker]");
    var previewBusy = document.getElementById("batch-preview-busy");
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
      showRequestError(form, "");
      setBusy(form, previewBusy, true);  // the upload waits for the preview: same column, no double work
      fetch(form.dataset.previewUrl, { method: "POST", body: body, credentials: "same-origin",
                                       headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (!response.ok && response.status !== 429) throw new Error(refusal(response.status, response.statusText));
          return response.text();
        })
        .then(function (html) {
          if (ticket !== pending) return;  // an older answer arriving late
          holder.innerHTML = html;
        })
        .catch(function (error) {
          if (ticket !== pending) return;
          showRequestError(form, error && error.message && error.message.indexOf("The server") === 0
            ? error.message : "The server could not be reached: check the connection and try again.");
        })
        .finally(function () {
          if (ticket !== pending) return;
          holder.removeAttribute("aria-busy");
          setBusy(form, previewBusy, false);
        });
    }

    file.addEventListener("change", function () { preview(""); });
    holder.addEventListener("change", function (event) {
      if (event.target && event.target.name === "text_column") preview(event.target.value);
    });
    // The upload itself is a plain form post (the job page follows): busy until the next page comes.
    form.addEventListener("submit", function () {
      var busy = document.getElementById("batch-busy");
      window.setTimeout(function () { setBusy(form, busy, true); }, 0);  // after the browser took the button's value
    });
    // Back to this page from the browser's cache: not busy any more.
    window.addEventListener("pageshow", function () { setBusy(form, document.getElementById("batch-busy"), false); });
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

// A request the server refused before the page could answer it (413 body too large, 414 URL too long, from
// gunicorn, nginx or Django's upload limit; a 5xx; no connection): htmx swaps nothing for these, so say it in
// the form's [data-request-error] box instead of leaving the page as it was. The busy state (hx-indicator,
// hx-disabled-elt) is undone by htmx whatever the answer.
function refusal(status, statusText) {
  "use strict";
  if (status === 413) {
    return "The server refused the input as too large (413). Send fewer or shorter texts: compare takes at most 200 lines, "
      + "a text at most 20,000 characters.";
  }
  if (status === 414) {
    return "The server refused the address as too long (414). Use the form (it sends the text in the request body) "
      + "rather than a long link.";
  }
  if (status === 400) {
    return "The server refused the request (400). If you sent a lot of text, send less: compare takes at most 200 lines, "
      + "a text at most 20,000 characters.";
  }
  if (status === 404) return "Not found (404): the model, version or stored input of this link no longer exists.";
  if (status >= 500) return "The server failed to answer (" + status + "). Try again; if it persists, tell an administrator.";
  return "The server refused the request (" + status + (statusText ? " " + statusText : "") + ").";
}

function showRequestError(form, message) {
  "use strict";
  var box = form && form.querySelector("[data-request-error]");
  if (!box) box = document.querySelector("[data-request-error]");
  if (!box) return;
  box.textContent = message;
}

(function () {
  "use strict";
  function formOf(event) {
    var elt = event.detail && event.detail.elt;
    return elt ? (elt.tagName === "FORM" ? elt : elt.closest("form")) : null;
  }
  document.addEventListener("htmx:beforeRequest", function (event) { showRequestError(formOf(event), ""); });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    showRequestError(formOf(event), refusal(xhr.status, xhr.statusText));
  });
  document.addEventListener("htmx:sendError", function (event) {
    showRequestError(formOf(event), "The server could not be reached: check the connection and try again.");
  });
})();
