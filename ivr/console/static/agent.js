// The agent's desk: state buttons, the call offered (from the live stream at once, then its
// ticket and the caller's previous calls from /agent/context), wrap-up, transfer, calls today.
"use strict";

(() => {
  const desk = document.getElementById("agent-desk");
  if (!desk) return;
  const $ = (id) => document.getElementById(id);
  const words = JSON.parse(desk.dataset.words || "{}");
  const t = (key) => words[key] || key;
  const labels = JSON.parse(desk.dataset.dispositions || "{}");
  const disposition = (code) => code ? code + (labels[code] ? " · " + labels[code] : "") : "";
  // the server's clock: times in the view are the switchboard's wall clock
  const offset = parseFloat(desk.dataset.serverNow || "0") - Date.now() / 1000;
  const now = () => Date.now() / 1000 + offset;
  const ALLOWED = {  // the states each command is accepted in (as the server checks)
    login: ["logged_out"], logout: ["available", "paused", "wrap_up"],
    pause: ["available", "wrap_up"], unpause: ["paused"],
  };

  let slice = null;
  let shownCall = "";     // the call whose details are on the panel
  let contextFor = "";    // the call whose ticket/history were asked for
  let noticeSeq = null;
  let shownPreview = "";  // the preview contact on the panel

  function setNotice(text, ok) {
    const node = $("notice");
    node.textContent = text;
    node.dataset.ok = ok ? "1" : "0";
    node.classList.toggle("bad", !ok);
    node.hidden = !text;
  }

  function fmtTime(unix) {
    return unix ? new Date(unix * 1000).toLocaleString() : "";
  }

  // -- state ----------------------------------------------------------------------------------
  function showState(entry) {
    const state = entry ? entry.state : "";
    const node = $("agent-state");
    node.dataset.state = state;
    node.className = "state " + (state || "unknown");
    node.textContent = t("agent.state." + (state || "unknown"));
    const reason = entry && entry.state === "paused" ? entry.pause_reason : "";
    $("agent-reason").textContent = reason ? t("agent.reason." + reason) : "";
    $("agent-since").dataset.since = entry && entry.since ? entry.since : "";
    for (const [command, states] of Object.entries(ALLOWED)) {
      $("btn-" + command).disabled = !states.includes(state);
    }
    $("pause-reason").disabled = !ALLOWED.pause.includes(state);
    $("wrapup-save").disabled = !(["on_call", "wrap_up"].includes(state) && entry.call_id);
    $("btn-transfer").disabled = !(state === "on_call" && entry.call_id);
  }

  function tick() {
    const since = parseFloat($("agent-since").dataset.since);
    $("agent-since").textContent = since ? Console.duration(now() - since) : "";
    const call = slice && slice.call;
    if (call) {
      const waiting = call.queued_at && slice.agent && slice.agent.offered;
      $("call-wait").textContent = Console.duration(waiting ? now() - call.queued_at : call.wait);
    }
  }

  // -- the call -------------------------------------------------------------------------------
  function showCall(call) {
    $("call-caller").textContent = call.caller || "";
    $("call-queue").textContent = call.queue || "";
    $("call-path").textContent = (call.path || []).join(" › ");
    $("call-keys").textContent = call.keys || "";
    const vars = $("call-vars");
    vars.replaceChildren();
    for (const [k, v] of Object.entries(call.variables || {})) {
      vars.append(Console.el("dt", {text: k}), Console.el("dd", {text: String(v)}));
    }
    $("call-script").textContent = call.script || "";
  }

  function clearContext() {
    $("call-ticket").replaceChildren();
    $("call-history").replaceChildren();
  }

  function showTicket(ticket) {
    const box = $("call-ticket");
    if (!ticket) {
      box.replaceChildren(Console.el("p", {class: "muted", text: t("agent.no_ticket")}));
      return;
    }
    const head = Console.el("p", {"data-ticket": ticket.number,
      text: "#" + ticket.number + " · " + ticket.status + " · " + t("agent.ticket_level") + " " +
            ticket.level + (ticket.queue ? " · " + ticket.queue : "") +
            (ticket.agent ? " · " + ticket.agent : "")});
    const list = Console.el("ul", {class: "agent-ticket-history"});
    for (const e of ticket.history || []) {
      const bits = [fmtTime(e.at), e.kind, e.agent, e.queue, disposition(e.disposition), e.note];
      list.append(Console.el("li", {text: bits.filter((b) => b).join(" · ")}));
    }
    box.replaceChildren(head, list);
  }

  function showHistory(calls) {
    const body = $("call-history");
    body.replaceChildren();
    for (const c of calls) {
      body.append(Console.el("tr", {"data-call-id": c.call_id},
        Console.el("td", {text: fmtTime(c.started)}), Console.el("td", {text: c.outcome}),
        Console.el("td", {text: c.agent}), Console.el("td", {text: disposition(c.disposition)}),
        Console.el("td", {class: "agent-note", text: c.note})));
    }
  }

  async function loadContext(callId) {
    contextFor = callId;
    try {
      const res = await fetch("/agent/context?call_id=" + encodeURIComponent(callId),
                              {credentials: "same-origin"});
      if (!res.ok || contextFor !== callId) return;
      const data = await res.json();
      if (contextFor !== callId) return;
      showTicket(data.ticket);
      showHistory(data.history || []);
    } catch (e) {
      // the next call or a reload asks again
    }
  }

  function update(data) {
    slice = data;
    const entry = data.agent;
    showState(entry);
    const callId = (entry && entry.call_id) || "";
    const panel = $("call-panel");
    panel.dataset.callId = callId;
    panel.dataset.offered = entry && entry.offered ? "1" : "0";
    $("call-ringing").hidden = !(entry && entry.offered);
    if (callId !== shownCall) {
      shownCall = callId;
      clearContext();
      $("wrapup-form").reset();
      if (callId) setNotice("", true);  // a new call: the last one's result is old news
      else refreshCalls();
    }
    if (data.call && data.call.call_id === callId) showCall(data.call);
    $("call-none").hidden = !!callId;
    $("call-details").hidden = !callId;
    if (callId && contextFor !== callId) loadContext(callId);
    if (!callId) contextFor = "";

    showPreview(entry);
    const queues = $("agent-queues");
    queues.replaceChildren();
    for (const [name, q] of Object.entries(data.queues || {})) {
      queues.append(Console.el("li", {"data-queue": name,
        text: name + ": " + q.waiting + " " + t("agent.waiting")}));
    }
    const notice = entry && entry.notice;
    if (notice && notice.seq !== noticeSeq) {
      noticeSeq = notice.seq;
      setNotice(notice.text, notice.ok);
      refreshCalls();
      setTimeout(refreshCalls, 2000);  // the store's writer commits a moment later
    }
    tick();
  }

  // -- the preview contact (campaigns the agent starts calls of) --------------------------------
  function showAttempts(attempts) {
    const body = $("preview-attempts");
    if (!attempts.length) {
      body.replaceChildren(Console.el("tr", {},
        Console.el("td", {colSpan: 3, class: "muted", text: t("agent.preview_no_attempts")})));
      return;
    }
    body.replaceChildren(...attempts.map((a) => Console.el("tr", {},
      Console.el("td", {text: fmtTime(a.at)}),
      Console.el("td", {text: t("outbound.outcome." + a.outcome)}),
      Console.el("td", {text: a.decision}))));
  }

  async function loadAttempts(contactId) {
    try {
      const res = await fetch("/agent/preview?contact_id=" + encodeURIComponent(contactId),
                              {credentials: "same-origin"});
      if (!res.ok || shownPreview !== contactId) return;
      const data = await res.json();
      if (shownPreview === contactId) showAttempts(data.attempts || []);
    } catch (e) {
      // shown again with the next contact
    }
  }

  function showPreview(entry) {
    const preview = entry && entry.preview;
    const panel = $("preview-panel");
    const contactId = preview ? String(preview.contact_id) : "";
    panel.hidden = !preview;
    panel.dataset.contactId = contactId;
    panel.dataset.campaign = preview ? preview.campaign : "";
    $("btn-preview-call").disabled = !preview || !!(entry && entry.call_id);
    if (contactId === shownPreview) return;
    shownPreview = contactId;
    if (!preview) return;
    $("preview-campaign").textContent = preview.campaign || "";
    $("preview-name").textContent = preview.name || "";
    $("preview-number").textContent = preview.number || "";
    const vars = $("preview-vars");
    vars.replaceChildren();
    for (const k of Object.keys(preview.vars || {}).sort()) {
      vars.append(Console.el("dt", {text: k}), Console.el("dd", {text: String(preview.vars[k])}));
    }
    $("preview-script").textContent = preview.script || "";
    $("preview-attempts").replaceChildren();
    loadAttempts(contactId);
  }

  // -- calls today ----------------------------------------------------------------------------
  async function refreshCalls() {
    try {
      const res = await fetch("/agent/calls", {credentials: "same-origin"});
      if (!res.ok) return;
      const data = await res.json();
      const body = $("my-calls");
      body.replaceChildren();
      for (const c of data.calls) {
        body.append(Console.el("tr", {"data-call-id": c.call_id},
          Console.el("td", {text: fmtTime(c.started)}), Console.el("td", {text: c.caller}),
          Console.el("td", {text: c.queue}), Console.el("td", {text: c.outcome}),
          Console.el("td", {class: "num", text: Math.round(c.talk || 0) + " s"}),
          Console.el("td", {text: disposition(c.disposition)}),
          Console.el("td", {class: "agent-note", text: c.note})));
      }
    } catch (e) {
      // shown again at the next change
    }
  }

  // -- actions --------------------------------------------------------------------------------
  async function send(url, body) {
    try {
      await Console.post(url, body);
      return true;
    } catch (err) {
      setNotice(err.message, false);
      return false;
    }
  }

  for (const command of Object.keys(ALLOWED)) {
    $("btn-" + command).addEventListener("click", () => {
      const body = {command};
      if (command === "pause") body.reason = $("pause-reason").value;
      send("/agent/state", body);
    });
  }

  $("wrapup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target;
    send("/agent/wrapup", {
      call_id: $("call-panel").dataset.callId,
      disposition: form.elements.disposition.value,
      note: form.elements.note.value,
      ticket: form.elements.ticket.value,
    });
  });

  $("transfer-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const number = $("transfer-number").value.replace(/\s+/g, "");
    const target = number || $("transfer-target").value;
    if (await send("/agent/transfer", {target})) $("transfer-number").value = "";
  });

  $("btn-preview-call").addEventListener("click", async () => {
    const panel = $("preview-panel");
    const button = $("btn-preview-call");
    button.disabled = true;
    if (await send("/agent/preview-call", {contact_id: panel.dataset.contactId,
                                           campaign: panel.dataset.campaign})) {
      setNotice(t("agent.preview_calling"), true);
    } else {
      button.disabled = false;
    }
  });

  shownPreview = $("preview-panel").dataset.contactId || "";
  tick();
  setInterval(tick, 1000);
  Console.live("/agent/live", update);
})();
