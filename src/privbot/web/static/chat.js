// The chat: posts to /api/v1/chat and shows the answer. Text only: every piece of the
// answer goes in with textContent, never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("ask");
  var input = document.getElementById("message");
  var log = document.getElementById("log");
  var errorBox = document.getElementById("error");
  var session = sessionStorage.getItem("privbot-chat") || "";

  function bubble(who) {
    var div = document.createElement("div");
    div.className = "msg " + who;
    log.appendChild(div);
    return div;
  }

  function para(parent, cls, text) {
    var el = document.createElement(cls === "quote" ? "blockquote" : "p");
    if (cls && cls !== "quote") el.className = cls;
    el.textContent = text;
    parent.appendChild(el);
  }

  // The reply is the same text a mail would carry: headings 'Our privacy policy, section
  // "X":' and '> ' quotations. Shown as headings and quotes, still as plain text.
  function render(div, data) {
    var quote = [];
    var prose = [];
    function flush() {
      if (prose.length) { para(div, "", prose.join(" ")); prose = []; }
      if (quote.length) { para(div, "quote", quote.join(" ").replace(/\s+/g, " ").trim()); quote = []; }
    }
    data.reply.split("\n").forEach(function (line) {
      var cite = line.match(/^Our privacy policy, section "(.+)":$/);
      if (cite) { flush(); para(div, "cite", "Privacy policy · " + cite[1]); return; }
      if (line.indexOf(">") === 0) {
        if (prose.length) { para(div, "", prose.join(" ")); prose = []; }
        var text = line.replace(/^>\s?/, "");
        if (text === "") { if (quote.length) { para(div, "quote", quote.join(" ")); quote = []; } }
        else { quote.push(text); }
        return;
      }
      if (line.trim() === "") { flush(); return; }
      if (quote.length) flush();
      prose.push(line.trim());
    });
    flush();
    if (data.sections && data.sections.length) {
      para(div, "sources", "Cited: " + data.sections.join(", "));
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    errorBox.hidden = true;
    if (!text) { return; }
    para(bubble("me"), "", text);
    input.value = "";
    var waiting = bubble("waiting");
    waiting.textContent = "…";
    fetch("/api/v1/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text, session: session })
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      waiting.remove();
      if (!result.ok) {
        errorBox.textContent = result.data.error || "Something went wrong.";
        errorBox.hidden = false;
        return;
      }
      session = result.data.session || session;
      sessionStorage.setItem("privbot-chat", session);
      render(bubble("bot"), result.data);
      log.lastChild.scrollIntoView({ behavior: "smooth", block: "start" });
    }).catch(function () {
      waiting.remove();
      errorBox.textContent = "The chat cannot be reached. Please try again.";
      errorBox.hidden = false;
    });
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
