// The ticket page: a reply in one step. Choosing a template fills the reply box in place,
// Preview shows the mail as it will be sent, without a reload. Without this script the
// same forms post and reload the page. Text only: everything goes in with textContent or
// a textarea's value, never as HTML.
(function () {
  "use strict";
  var templateForm = document.getElementById("template-form");
  var templateSelect = document.getElementById("reply-template");
  var replyForm = document.getElementById("reply-form");
  var body = document.getElementById("reply-body");
  var previewButton = document.getElementById("preview-button");
  var preview = document.getElementById("reply-preview");
  var errorBox = document.getElementById("reply-error");
  var filled = body ? body.value : "";

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  // JSON, or the reason it is not: a signed-out session answers with the login page.
  function json(response) {
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === -1) {
      throw new Error("Your session has ended: reload the page and sign in again.");
    }
    return response.json().then(function (data) {
      if (!response.ok) { throw new Error(data.error || "Something went wrong."); }
      return data;
    });
  }

  function loadTemplate(name) {
    var edited = body.value.trim() !== "" && body.value !== filled;
    if (edited && !window.confirm("Replace the text in the reply box with the template?")) {
      return;
    }
    showError("");
    fetch(templateForm.dataset.url + "?name=" + encodeURIComponent(name), {
      headers: { Accept: "application/json" },
      credentials: "same-origin"
    }).then(json).then(function (data) {
      body.value = data.body;
      filled = data.body;
      replyForm.elements.template.value = data.template;
      preview.hidden = true;
      body.focus();
      body.setSelectionRange(0, 0);
      body.scrollTop = 0;
    }).catch(function (error) { showError(error.message); });
  }

  function showPreview() {
    showError("");
    fetch(replyForm.dataset.preview, {
      method: "POST",
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(replyForm))
    }).then(json).then(function (data) {
      ["to", "subject", "body"].forEach(function (field) {
        preview.querySelector("[data-field=" + field + "]").textContent = data[field];
      });
      preview.hidden = false;
      preview.scrollIntoView({ block: "nearest" });
    }).catch(function (error) { showError(error.message); });
  }

  if (templateForm && replyForm && body) {
    templateForm.addEventListener("submit", function (event) {
      event.preventDefault();
      loadTemplate(templateSelect.value);
    });
    templateSelect.addEventListener("change", function () { loadTemplate(templateSelect.value); });
    previewButton.addEventListener("click", function (event) {
      event.preventDefault();
      showPreview();
    });
    body.addEventListener("input", function () { preview.hidden = true; });
  }

  // A link to a message folded into "show all": open the fold so the link lands.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    var fold = target && target.closest("details");
    if (fold && !fold.open) {
      fold.open = true;
      target.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
