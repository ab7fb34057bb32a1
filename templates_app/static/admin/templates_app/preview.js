// "Test with sample data" on the payload template change form: posts the unsaved template
// fields to the admin preview view (CSRF token from the form) and shows the rendered body and
// headers, or the sandbox's error with its line. Nothing is saved. No CDN, no inline script.
(function () {
  "use strict";
  function value(id) {
    var field = document.getElementById(id);
    return field ? field.value : "";
  }
  function start() {
    var box = document.getElementById("template-preview");
    if (!box) { return; }
    var output = document.getElementById("preview-output");
    var status = document.getElementById("preview-status");
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    var timer = null;
    var sequence = 0;
    function render() {
      var mine = ++sequence;
      var body = new FormData();
      body.append("form", value("id_form") || "json");
      body.append("body", value("id_body"));
      body.append("content_type", value("id_content_type"));
      body.append("header_templates", value("id_header_templates"));
      body.append("event_type", value("preview-event-type"));
      body.append("data", value("preview-data"));
      status.textContent = "Rendering…";
      fetch(box.getAttribute("data-preview-url"), {
        method: "POST", body: body, credentials: "same-origin",
        headers: {"X-CSRFToken": token ? token.value : ""}
      }).then(function (response) { return response.json(); }).then(function (result) {
        if (mine !== sequence) { return; }
        if (result.ok) {
          var headers = Object.keys(result.headers || {}).map(function (k) { return k + ": " + result.headers[k]; });
          output.textContent = "Content-Type: " + result.content_type + (headers.length ? "\n" + headers.join("\n") : "") +
            "\n\n" + (typeof result.output === "string" ? result.output : JSON.stringify(result.output, null, 2));
          output.setAttribute("data-ok", "true");
          status.textContent = "Rendered (not saved).";
        } else {
          var d = result.error.details || {};
          var where = [d.field, d.path, d.line ? "line " + d.line : null, d.column ? "column " + d.column : null]
            .filter(Boolean).join(", ");
          output.textContent = result.error.code + ": " + result.error.message + (where ? "\n(" + where + ")" : "");
          output.setAttribute("data-ok", "false");
          status.textContent = "Error.";
        }
      }).catch(function (error) { status.textContent = "Preview failed: " + error.message; });
    }
    document.getElementById("preview-button").addEventListener("click", render);
    ["id_form", "id_body", "id_content_type", "id_header_templates", "preview-event-type", "preview-data"].forEach(function (id) {
      var field = document.getElementById(id);
      if (!field) { return; }
      field.addEventListener("input", function () {
        if (!document.getElementById("preview-live").checked) { return; }
        window.clearTimeout(timer);
        timer = window.setTimeout(render, 600);
      });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
