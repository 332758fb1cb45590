"use strict";
// The attendant's page: mask keys, recent decisions (no personal data), overrides.
(() => {
  const secret = document.getElementById("secret");
  const attendant = document.getElementById("attendant");
  const result = document.getElementById("mask-result");
  const rows = document.getElementById("decisions");
  const problem = document.getElementById("decisions-error");
  const warnings = document.getElementById("warnings");

  async function post(path, body, extra) {
    const response = await fetch(path, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, extra || {}),
      body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await response.json(); } catch (err) { /* an empty answer */ }
    return { ok: response.ok, status: response.status, answer };
  }

  async function mask(state) {
    const { ok, answer } = await post("/api/mask", { mask: state });
    result.textContent = ok ? `✓ ${state}` : `✕ ${answer.detail || "error"}`;
  }

  async function override(entryId) {
    const note = window.prompt("备注 · Note (≤ 200)", "") || "";
    const { ok, answer } = await post(
      "/api/override",
      { attendant: attendant.value.trim(), note: note.slice(0, 200), entry_id: entryId },
      { "X-Attendant-Secret": secret.value },
    );
    if (!ok) window.alert(answer.detail || "error");
    refresh();
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  async function refresh() {
    if (!secret.value) return;
    const response = await fetch("/api/decisions", { headers: { "X-Attendant-Secret": secret.value } });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      problem.textContent = answer.detail || `error ${response.status}`;
      problem.hidden = false;
      return;
    }
    problem.hidden = true;
    // The door's own warnings (storage nearly full, ...), zh first as on the door.
    warnings.replaceChildren(...(answer.warnings || []).map((w) => {
      const li = document.createElement("li");
      li.dataset.code = w.code;
      li.textContent = `${w.zh} · ${w.en}`;
      return li;
    }));
    warnings.hidden = warnings.children.length === 0;
    rows.replaceChildren(...answer.decisions.map((d) => {
      const tr = document.createElement("tr");
      tr.className = d.decision;
      const action = document.createElement("td");
      if (d.decision === "deny" && !d.overridden) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "放行 · Override";
        button.addEventListener("click", () => override(d.entry_id));
        action.append(button);
      }
      tr.append(cell(d.seq), cell(d.ts), cell(d.override_of ? "allow (override)" : d.decision),
        cell(d.reasons.join(", ")), cell(d.temperature_c ?? ""), cell(d.mask), action);
      return tr;
    }));
  }

  document.getElementById("mask-on").addEventListener("click", () => mask("on"));
  document.getElementById("mask-off").addEventListener("click", () => mask("off"));
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement) return;
    if (event.key === "1") mask("on");
    if (event.key === "0") mask("off");
  });
  secret.addEventListener("change", refresh);
  setInterval(refresh, 3000);
})();
