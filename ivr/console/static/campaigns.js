// Campaigns: live figures from the switchboard's view (/campaigns/live), the store's counts and
// KPIs every few seconds (/campaigns/figures), and adding a number to the do-not-call list.
"use strict";

(() => {
  const page = document.getElementById("campaigns-page");
  if (!page) return;
  const words = JSON.parse(page.dataset.words || "{}");
  const t = (key) => words[key] || key;
  const labels = JSON.parse(page.dataset.dispositions || "{}");
  const FIGURES_EVERY = 10000;

  const sections = () => page.querySelectorAll("section.campaign[data-campaign]");
  const percent = (v) => (v === null || v === undefined) ? "–" : (v * 100).toFixed(1) + "%";

  function liveText(field, value) {
    if (field === "window_open") return value ? t("campaigns.open") : t("campaigns.closed");
    if (field === "paused_reason") return value || t("campaigns.not_paused");
    return String(value === null || value === undefined ? "–" : value);
  }

  function showLive(data) {
    const campaigns = data.campaigns || {};
    for (const section of sections()) {
      const c = campaigns[section.dataset.campaign];
      section.querySelector(".campaign-not-running").hidden = !!c;
      for (const node of section.querySelectorAll("[data-live]")) {
        node.textContent = c ? liveText(node.dataset.live, c[node.dataset.live]) : "–";
      }
    }
  }

  function showFigures(data) {
    const campaigns = data.campaigns || {};
    for (const section of sections()) {
      const f = campaigns[section.dataset.campaign];
      if (!f) continue;
      for (const node of section.querySelectorAll("[data-state-count]")) {
        node.textContent = String(f.states[node.dataset.stateCount] || 0);
      }
      for (const node of section.querySelectorAll("[data-outcome-count]")) {
        node.textContent = String(f.outcomes[node.dataset.outcomeCount] || 0);
      }
      for (const node of section.querySelectorAll("[data-figure]")) {
        node.textContent = String(f[node.dataset.figure] || 0);
      }
      for (const node of section.querySelectorAll("[data-kpi]")) {
        const v = f.kpis[node.dataset.kpi];
        node.textContent = node.dataset.kpi.endsWith("_rate") ? percent(v) : String(v);
      }
      const agents = Object.keys(f.agents || {}).sort();
      if (agents.length) {
        section.querySelector("[data-agents]").replaceChildren(...agents.map((name) =>
          Console.el("tr", {"data-agent": name}, Console.el("td", {text: name}),
            Console.el("td", {class: "num", text: String(f.agents[name].calls)}),
            Console.el("td", {class: "num", text: Console.duration(f.agents[name].talk)}))));
      }
      const body = section.querySelector("[data-conversions]");
      const codes = Object.keys(f.dispositions).sort();
      if (!codes.length) continue;
      body.replaceChildren(...codes.map((code) => Console.el("tr", {"data-disposition": code},
        Console.el("td", {text: code + (labels[code] ? " · " + labels[code] : "")}),
        Console.el("td", {class: "num", text: String(f.dispositions[code])}),
        Console.el("td", {class: "num", text: percent(f.kpis.conversions[code])}))));
    }
  }

  async function refreshFigures() {
    try {
      const res = await fetch("/campaigns/figures", {credentials: "same-origin"});
      if (res.ok) showFigures(await res.json());
    } catch (e) {
      // asked again at the next turn
    }
  }

  const form = document.getElementById("dnc-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const result = document.getElementById("dnc-result");
      try {
        const data = await Console.post("/campaigns/dnc", {
          number: form.elements.number.value, note: form.elements.note.value});
        result.textContent = data.text;
        result.classList.remove("bad");
        form.reset();
      } catch (err) {
        result.textContent = err.message;
        result.classList.add("bad");
      }
      result.hidden = false;
    });
  }

  Console.live("/campaigns/live", showLive);
  setInterval(refreshFigures, FIGURES_EVERY);
})();
