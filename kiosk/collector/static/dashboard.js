// The dashboard works without this script; it only adds conveniences: a character counter for
// notes, and a confirmation before a unit is ordered closed.
"use strict";

(function () {
  function counters() {
    document.querySelectorAll("textarea[data-counter]").forEach(function (area) {
      var out = document.getElementById(area.dataset.counter);
      if (!out) { return; }
      var limit = Number(area.getAttribute("maxlength")) || 500;
      function update() { out.textContent = String(limit - area.value.length); }
      area.addEventListener("input", update);
      update();
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      var question = form.dataset.confirm;
      if (!question) { return; }
      form.addEventListener("submit", function (event) {
        if (!window.confirm(question)) { event.preventDefault(); }
      });
    });
  }

  function start() {
    counters();
    confirmations();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
