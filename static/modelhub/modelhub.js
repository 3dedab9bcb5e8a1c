// Batch upload: once a CSV is chosen, read its header row in the browser and turn the
// "Text column" box into a picker of the file's columns. Without JS the box still works.
(function () {
  "use strict";

  function parseHeader(line) {
    var cells = [], cell = "", quoted = false;
    for (var i = 0; i < line.length; i++) {
      var ch = line[i];
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') { cell += '"'; i++; }
        else if (ch === '"') { quoted = false; }
        else { cell += ch; }
      } else if (ch === '"') { quoted = true; }
      else if (ch === ",") { cells.push(cell); cell = ""; }
      else { cell += ch; }
    }
    cells.push(cell);
    return cells.map(function (c) { return c.replace(/^\uFEFF/, "").replace(/\r$/, ""); });
  }

  function setup(form) {
    var file = form.querySelector("input[type=file]");
    var holder = form.querySelector("[data-column-picker]");
    if (!file || !holder) return;
    file.addEventListener("change", function () {
      if (!file.files.length) return;
      var reader = new FileReader();
      reader.onload = function () {
        var text = String(reader.result || "");
        var columns = parseHeader(text.split("\n")[0] || "").filter(function (c) { return c.trim(); });
        if (!columns.length) return;
        var current = holder.querySelector("input, select");
        var wanted = current ? current.value : "text";
        var select = document.createElement("select");
        select.name = "text_column";
        select.id = "id_text_column";
        columns.forEach(function (name) {
          var option = document.createElement("option");
          option.value = name; option.textContent = name;
          if (name === wanted || (!columns.includes(wanted) && /text|content|body/i.test(name) && !select.value)) option.selected = true;
          select.appendChild(option);
        });
        holder.replaceChildren(select);
      };
      reader.readAsText(file.files[0].slice(0, 64 * 1024));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#batch-form").forEach(setup);
  });
})();
