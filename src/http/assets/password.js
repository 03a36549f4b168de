// Live feedback for the password page. The page works without this
// file; it only marks each rule as the user types and shows zxcvbn's
// strength and advice. The candidate goes to the check endpoint in a POST
// body (never a URL), and nothing is written to the console or stored.
(function () {
  "use strict";
  var form = document.getElementById("change");
  if (!form || !window.fetch) { return; }
  var url = form.getAttribute("data-check-url");
  var login = document.getElementById("login");
  var pw = document.getElementById("new");
  var confirm = document.getElementById("confirm");
  var list = document.getElementById("rules");
  var policy = document.getElementById("policy");
  var meter = document.getElementById("strength");
  var text = document.getElementById("strength-text");
  var confirmText = document.getElementById("confirm-text");
  var labels = ["very weak", "weak", "fair", "strong", "very strong"];
  var marks = { pass: "\u2713", fail: "\u2717", not_checked: "\u2022", info: "\u2139" };
  var timer = null;
  var seq = 0;

  function render(report) {
    policy.textContent = report.policy;
    while (list.firstChild) { list.removeChild(list.firstChild); }
    report.verdicts.forEach(function (v) {
      var li = document.createElement("li");
      li.setAttribute("data-rule", v.rule);
      li.className = "rule " + (v.outcome === "not_checked" ? "unchecked" : v.outcome);
      var mark = document.createElement("span");
      mark.className = "mark";
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = marks[v.outcome] || "";
      var req = document.createElement("span");
      req.className = "requirement";
      req.textContent = v.requirement;
      li.appendChild(mark);
      li.appendChild(req);
      if (v.message) {
        var why = document.createElement("span");
        why.className = "why";
        why.textContent = v.message;
        li.appendChild(document.createTextNode(" "));
        li.appendChild(why);
      }
      list.appendChild(li);
    });
    if (report.strength && pw.value.length > 0) {
      meter.hidden = false;
      meter.value = report.strength.score;
      var advice = [report.strength.warning].concat(report.strength.suggestions || []).filter(Boolean);
      text.textContent = "Strength: " + labels[report.strength.score] + (advice.length ? ". " + advice.join(" ") : "");
    } else {
      meter.hidden = true;
      text.textContent = "";
    }
  }

  function check() {
    var mine = ++seq;
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: login.value, password: pw.value })
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (report) { if (report && mine === seq) { render(report); } })
      .catch(function () { /* the server checks again on submit */ });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(check, 150);
  }

  function compare() {
    if (!confirm.value) { confirmText.textContent = ""; return; }
    confirmText.textContent = confirm.value === pw.value ? "The two passwords match." : "The two passwords differ.";
  }

  pw.addEventListener("input", function () { later(); compare(); });
  login.addEventListener("change", later);
  confirm.addEventListener("input", compare);
})();
