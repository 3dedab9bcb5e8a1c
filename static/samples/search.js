// Sample search form: add and remove filter rows, and offer only the operators a column
// allows. Without this script the form still works: it always renders a few empty rows.
(function () {
  "use strict";

  function rowsContainer(el) { return el.closest("form").querySelector("[data-filter-rows]"); }

  function syncValueList(row) {  // suggestions for low-cardinality columns (a <datalist> per column)
    var column = row.querySelector("[data-column-picker]");
    var input = row.querySelector("input[name=val]");
    if (!column || !input) return;
    if (document.getElementById("values-" + column.value)) input.setAttribute("list", "values-" + column.value);
    else input.removeAttribute("list");
  }

  function syncOperators(row) {
    syncValueList(row);
    var column = row.querySelector("[data-column-picker]");
    var op = row.querySelector("[data-op-picker]");
    if (!column || !op) return;
    var selected = column.options[column.selectedIndex];
    var allowed = selected && selected.dataset.ops ? selected.dataset.ops.split(" ") : null;
    var firstAllowed = null;
    Array.prototype.forEach.call(op.options, function (option) {
      var ok = !allowed || allowed.indexOf(option.value) !== -1;
      option.hidden = !ok;
      option.disabled = !ok;
      if (ok && firstAllowed === null) firstAllowed = option;
    });
    if (op.selectedOptions.length && op.selectedOptions[0].disabled && firstAllowed) firstAllowed.selected = true;
  }

  function clearRow(row) {
    row.querySelectorAll("select").forEach(function (s) { s.selectedIndex = 0; });
    row.querySelectorAll("input").forEach(function (i) { i.value = ""; });
    row.querySelectorAll(".errorlist").forEach(function (e) { e.remove(); });
    syncOperators(row);
  }

  function enhance(root) {
    root.querySelectorAll("[data-add-row], [data-remove-row]").forEach(function (b) { b.hidden = false; });
    root.querySelectorAll("[data-filter-row]").forEach(syncOperators);
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-row]");
    if (add) {
      var container = rowsContainer(add);
      var rows = container.querySelectorAll("[data-filter-row]");
      var copy = rows[rows.length - 1].cloneNode(true);
      clearRow(copy);
      container.appendChild(copy);
      copy.querySelector("[data-column-picker]").focus();
      return;
    }
    var remove = event.target.closest("[data-remove-row]");
    if (remove) {
      var row = remove.closest("[data-filter-row]");
      if (rowsContainer(remove).querySelectorAll("[data-filter-row]").length > 1) row.remove();
      else clearRow(row);
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-column-picker]")) syncOperators(event.target.closest("[data-filter-row]"));
    if (event.target.matches("[data-table-picker]")) {
      window.location.search = "?table=" + encodeURIComponent(event.target.value);
    }
  });

  // Back and Forward: htmx restores the results from its history cache, but a form's typed values are
  // not part of that snapshot. Rebuild the filter rows, limit and table from the URL every time.
  var RESERVED = ["limit", "table", "format", "fallback", "confirm", "_sort", "_sort_desc", "_next", "_count",
                  "_seed", "_col", "_nocol", "_facet", "_q"];

  function fillFormFromUrl() {
    var form = document.querySelector("form.search-form");
    if (!form) return;
    var params = new URLSearchParams(window.location.search);
    if (params.get("_q")) {  // a stored search: its parameters are on the results it shows
      var results = document.getElementById("results");
      if (!results || !results.dataset.query) return;
      params = new URLSearchParams(results.dataset.query);
    }
    var filters = [];
    params.forEach(function (value, name) {
      var cut = name.lastIndexOf("__");
      if (RESERVED.indexOf(name) === -1 && cut > 0) filters.push([name.slice(0, cut), name.slice(cut + 2), value]);
    });
    var container = form.querySelector("[data-filter-rows]");
    var rows = container.querySelectorAll("[data-filter-row]");
    while (rows.length < filters.length + 1) {
      var copy = rows[rows.length - 1].cloneNode(true);
      container.appendChild(copy);
      rows = container.querySelectorAll("[data-filter-row]");
    }
    rows.forEach(function (row, index) {
      clearRow(row);
      var wanted = filters[index];
      if (!wanted) return;
      row.querySelector("[data-column-picker]").value = wanted[0];
      syncOperators(row);
      row.querySelector("[data-op-picker]").value = wanted[1];
      row.querySelector("input[name=val]").value = wanted[2];
    });
    var limit = form.querySelector("input[name=limit]");
    if (limit) limit.value = params.get("limit") || limit.defaultValue;
    var table = form.querySelector("[name=table]");
    if (table && params.get("table")) table.value = params.get("table");
    // The sort on screen travels with the next search: a hidden input, rebuilt from the URL too.
    form.querySelectorAll("[data-sort-input]").forEach(function (input) { input.remove(); });
    form.querySelectorAll("[data-view-input]").forEach(function (input) { input.remove(); });
    ["_sort", "_sort_desc", "_seed", "_col", "_nocol", "_facet"].forEach(function (name) {
      params.getAll(name).forEach(function (value) {
        var input = document.createElement("input");
        input.type = "hidden"; input.name = name; input.value = value;
        input.setAttribute(name.indexOf("_sort") === 0 || name === "_seed" ? "data-sort-input" : "data-view-input", "");
        form.appendChild(input);
      });
    });
  }

  // Long inputs: a search whose web address would be too long (a 1,000-character value; servers refuse
  // request lines of a few kB) is POSTed instead; the server stores it and answers at a short `?_q=<key>`.
  var LONG_URL = 1800;  // characters of query string (views.LONG_QUERYSTRING): a longer form is POSTed and stored
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt;
    if (!form.matches || !form.matches("form.search-form") || event.detail.verb !== "get") return;
    var query = new URLSearchParams(new FormData(form)).toString();
    if (query.length > LONG_URL) {
      event.detail.verb = "post";
      event.detail.useUrlParams = false;
      // htmx chose the headers for a GET: a form body needs its type, or the server reads no fields
      event.detail.headers["Content-Type"] = "application/x-www-form-urlencoded";
      form.setAttribute("data-posted", "");
    }
  });

  // A request the server (or a proxy before it) refused shows why, on the page: never nothing.
  function requestError(text) {
    var box = document.querySelector("[data-request-error]");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var status = xhr ? xhr.status : 0;
    if (status === 413 || status === 414 || status === 431 || (status === 400 && /too (large|long)/i.test(xhr.responseText || ""))) {
      requestError("This search is too long for the server (HTTP " + status + "). Values may have at most 1,000 " +
                   "characters, and at most 20 filters: shorten them and search again.");
    } else if (status !== 429) {
      requestError("The search failed (HTTP " + status + "). Try again; if it keeps failing, tell the team.");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    requestError("The server could not be reached. Check the connection and search again.");
  });
  // A new search clears the message; the page's own background requests (the status banner's poll every 30 s, an
  // export's progress) do not: they would hide why the user's search failed a moment after it was shown.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.closest && elt.closest("#status-banner, [hx-trigger*='every']")) return;
    requestError("");
  });

  document.addEventListener("htmx:historyRestore", fillFormFromUrl);
  window.addEventListener("popstate", function () { window.setTimeout(fillFormFromUrl, 0); });
  window.addEventListener("pageshow", fillFormFromUrl);  // also when the browser's back-forward cache shows the page

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
})();
