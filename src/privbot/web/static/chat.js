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

  function normal(text) { return text.replace(/\s+/g, " ").trim(); }

  var OPENING = "\"\u201c\u201e\u00ab\u00bb\u2018\u201a'";
  var CLOSING = "\"\u201d\u201c\u00bb\u00ab\u2019\u2018'";

  // The section a paragraph introduces, or null. The reply is mail text, wrapped at 76
  // columns, so a long heading spans lines and the reader's language words it: a heading
  // is a paragraph ending in ':' that names, in quotation marks, a section the answer cites.
  function sectionOf(text, sections) {
    if (text.charAt(text.length - 1) !== ":") { return null; }
    for (var i = 0; i < sections.length; i++) {
      var name = normal(sections[i]);
      var at = name ? text.indexOf(name) : -1;
      while (at > 0) {
        var before = text.charAt(at - 1);
        var after = text.charAt(at + name.length);
        if (OPENING.indexOf(before) !== -1 && CLOSING.indexOf(after) !== -1) { return sections[i]; }
        at = text.indexOf(name, at + 1);
      }
    }
    var english = text.match(/^Our privacy policy, section "(.+)":$/);
    return english ? english[1] : null;
  }

  // The reply is the same text a mail would carry: a heading before each section quoted,
  // and '> ' quotations. Shown as headings and quotes, still as plain text.
  function render(div, data) {
    var sections = data.sections || [];
    var quote = [];
    var prose = [];
    function flushProse() {
      if (!prose.length) { return; }
      var text = normal(prose.join(" "));
      prose = [];
      var section = sectionOf(text, sections);
      if (section) { para(div, "cite", "Privacy policy · " + section); }
      else { para(div, "", text); }
    }
    function flushQuote() {
      if (quote.length) { para(div, "quote", normal(quote.join(" "))); quote = []; }
    }
    data.reply.split("\n").forEach(function (line) {
      if (line.indexOf(">") === 0) {
        flushProse();
        var text = line.replace(/^>\s?/, "");
        if (text.trim() === "") { flushQuote(); } else { quote.push(text); }
        return;
      }
      flushQuote();
      if (line.trim() === "") { flushProse(); return; }
      prose.push(line.trim());
    });
    flushProse();
    flushQuote();
    if (sections.length) {
      para(div, "sources", "Cited: " + sections.join(", "));
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
