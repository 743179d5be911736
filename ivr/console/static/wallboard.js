// Centralino wallboard: tiles per queue, agents, calls in progress, updated in place from
// /wallboard/live. Nodes are kept and reused (a wall screen stays on for days): rows are made
// once per agent or call and removed when they go.
"use strict";

(() => {
  const root = document.getElementById("wallboard");
  if (!root) return;
  const tv = root.dataset.tv === "1";
  const everyone = root.dataset.everyone === "1";
  const supervisor = root.dataset.supervisor;
  let noticeSeq = parseInt(root.dataset.noticeSeq, 10) || 0;
  const words = {};
  document.getElementById("wb-words").content.querySelectorAll("[data-key]")
    .forEach((n) => { words[n.dataset.key] = n.textContent; });
  const t = (key) => words[key] || key;
  const stateWord = (state) => words["wb.state." + state] || state;
  const MODES = ["listen", "whisper", "barge"];
  const COMMANDS = ["login", "logout", "pause", "unpause"];
  const RATIOS = ["sl_hour", "sl2_hour", "sl_today", "sl2_today"];
  const COUNTS = ["answered", "abandoned", "escalated"];
  const esc = (s) => String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  // as /metrics writes a sample: labels sorted by name
  const metric = (name, labels) => name + "{" + Object.entries(labels).sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => k + '="' + esc(v) + '"').join(",") + "}";
  const ratio = (r) => (r === null || r === undefined) ? "\u2013" : Math.round(r * 100) + "%";
  const dur = (s) => (s === null || s === undefined) ? "\u2013" : Console.duration(s);

  // Figures that grow by themselves between messages (waits, time in state): [node, seconds at
  // receipt]; rebuilt on each message.
  let ticking = [];
  let received = performance.now();

  function setFigure(node, value, text) {
    const raw = (value === null || value === undefined) ? "" : String(value);
    if (node.dataset.value !== raw) node.dataset.value = raw;
    if (node.textContent !== text) node.textContent = text;
  }

  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

  // -- summary: calls in progress and agents by state --------------------------------------
  const stateList = document.getElementById("wb-states");
  function stateNode(state) {
    let node = stateList.querySelector('[data-agents-state="' + esc(state) + '"]');
    if (!node) {
      node = Console.el("b", {"data-agents-state": state});
      stateList.append(Console.el("span", {class: "wb-state-count"},
        Console.el("span", {class: "state " + state, text: stateWord(state)}), " ", node));
    }
    return node;
  }

  // -- queue tiles ----------------------------------------------------------------------------
  const tiles = document.getElementById("wb-queues");
  function tileFor(name) {
    let tile = tiles.querySelector('[data-queue="' + esc(name) + '"]');
    if (tile) return tile;
    const fig = (figure, metricName) => {
      const node = Console.el("div", {class: "big", "data-figure": figure});
      if (metricName) node.dataset.metric = metric(metricName, {queue: name});
      return node;
    };
    const kv = Console.el("dl", {class: "kv wb-figures"});
    for (const f of RATIOS.concat(COUNTS)) {
      kv.append(Console.el("dt", {text: t("wb." + f)}), Console.el("dd", {"data-figure": f}));
    }
    tile = Console.el("div", {class: "tile wb-queue", "data-queue": name},
      Console.el("div", {class: "wb-queue-name", text: name}),
      Console.el("div", {class: "wb-main"},
        Console.el("div", {}, Console.el("div", {class: "label", text: t("wb.waiting")}),
          fig("waiting", "ivr_queue_callers_waiting")),
        Console.el("div", {}, Console.el("div", {class: "label", text: t("wb.longest_wait")}),
          fig("longest_wait", "ivr_queue_longest_wait_seconds"))),
      kv, windowLine(), Console.el("div", {class: "wb-queue-agents"}));
    tiles.append(tile);
    return tile;
  }

  // sl and sl2 as /metrics has them (the switchboard's window since it started)
  const windowTemplate = document.querySelector(".wb-window");
  function windowLine() {
    if (windowTemplate) return windowTemplate.cloneNode(true);
    const line = Console.el("p", {class: "muted wb-window", hidden: true});
    for (const d of ["sl", "sl2"]) {
      line.append(Console.el("span", {class: "wb-window-figure"}, d.toUpperCase() + " ",
        Console.el("b", {"data-figure": d + "_window"})), " ");
    }
    return line;
  }

  function updateTile(name, q) {
    const tile = tileFor(name);
    tile.classList.toggle("warn", q.level === "warn");
    tile.classList.toggle("bad", q.level === "bad");
    setFigure(tile.querySelector('[data-figure="waiting"]'), q.waiting, String(q.waiting));
    const longest = tile.querySelector('[data-figure="longest_wait"]');
    setFigure(longest, q.longest_wait, dur(q.longest_wait));
    if (q.waiting > 0) ticking.push([longest, q.longest_wait]);
    for (const f of RATIOS) setFigure(tile.querySelector('[data-figure="' + f + '"]'), q[f], ratio(q[f]));
    for (const f of COUNTS) setFigure(tile.querySelector('[data-figure="' + f + '"]'), q[f], String(q[f]));
    const line = tile.querySelector(".wb-window");
    line.hidden = !windowShown;
    for (const d of ["sl", "sl2"]) {
      const node = line.querySelector('[data-figure="' + d + '_window"]');
      const r = (q.window || {})[d];
      setText(node, ratio(r));
      if (r === null || r === undefined) {
        delete node.dataset.value;
        delete node.dataset.metric;
      } else {
        node.dataset.value = String(r);
        node.dataset.metric = metric("ivr_queue_service_level_ratio", {queue: name, definition: d});
      }
    }
    const box = tile.querySelector(".wb-queue-agents");
    const seen = new Set();
    for (const [state, n] of Object.entries(q.agents || {})) {
      seen.add(state);
      let node = box.querySelector('[data-queue-agents="' + esc(state) + '"]');
      if (!node) {
        node = Console.el("span", {class: "state " + state, "data-queue-agents": state,
          "data-metric": metric("ivr_queue_agents", {queue: name, state})});
        box.append(node, " ");
      }
      setFigure(node, n, stateWord(state) + " " + n);
    }
    box.querySelectorAll("[data-queue-agents]").forEach((node) => {
      if (!seen.has(node.dataset.queueAgents)) node.remove();
    });
  }

  // -- agents ---------------------------------------------------------------------------------
  const agentRows = document.getElementById("wb-agent-rows");
  function agentRow(name) {
    let row = agentRows.querySelector('tr[data-agent="' + esc(name) + '"]');
    if (row) return row;
    const cell = (field, cls) => Console.el("td", {class: cls || "", "data-field": field});
    row = Console.el("tr", {"data-agent": name}, Console.el("td", {text: name}),
      Console.el("td", {}, Console.el("span", {class: "state", "data-field": "state"})),
      cell("in_state", "num"), cell("answered", "num"), cell("aht", "num"),
      cell("caller_wait", "num"), cell("path"));
    if (!tv) {
      const actions = Console.el("td", {class: "wb-actions"});
      for (const mode of MODES) {
        actions.append(Console.el("button", {type: "button", class: "secondary",
          "data-action": mode, "data-agent": name, text: t("wb." + mode)}));
      }
      for (const command of COMMANDS) {
        actions.append(Console.el("button", {type: "button", class: "secondary",
          "data-command": command, "data-agent": name, text: t("wb." + command)}));
      }
      row.append(actions);
    }
    agentRows.append(row);
    return row;
  }

  function updateAgent(a) {
    const row = agentRow(a.name);
    const state = row.querySelector('[data-field="state"]');
    state.className = "state " + a.state;
    setFigure(state, a.state, stateWord(a.state) + (a.pause_reason ? " \u00b7 " + a.pause_reason : "")
      + (a.supervised.length ? " \u00b7 " + a.supervised.join(", ") : ""));
    const since = row.querySelector('[data-field="in_state"]');
    setFigure(since, a.in_state, dur(a.in_state));
    ticking.push([since, a.in_state]);
    setFigure(row.querySelector('[data-field="answered"]'), a.answered, String(a.answered));
    setFigure(row.querySelector('[data-field="aht"]'), a.aht, dur(a.aht));
    const wait = row.querySelector('[data-field="caller_wait"]');
    setFigure(wait, a.caller_wait, a.on_call ? dur(a.caller_wait) : "");
    if (a.caller_wait_ticks) ticking.push([wait, a.caller_wait]);
    setText(row.querySelector('[data-field="path"]'), a.path.join(" \u203a "));
    row.querySelectorAll("button[data-action]").forEach((b) => { b.disabled = !a.on_call; });
  }

  // -- calls in progress ----------------------------------------------------------------------
  const callRows = document.getElementById("wb-call-rows");
  function callRow(id) {
    let row = callRows.querySelector('tr[data-call="' + esc(id) + '"]');
    if (row) return row;
    const cell = (field, cls) => Console.el("td", {class: cls || "", "data-field": field});
    row = Console.el("tr", {"data-call": id}, cell("caller"), cell("phase"), cell("queue"),
      cell("wait", "num"), cell("agent"), cell("path"));
    callRows.append(row);
    return row;
  }

  function updateCall(c) {
    const row = callRow(c.call_id);
    for (const f of ["caller", "queue", "agent"]) setText(row.querySelector('[data-field="' + f + '"]'), c[f]);
    setFigure(row.querySelector('[data-field="phase"]'), c.phase, words["wb.phase." + c.phase] || c.phase);
    const wait = row.querySelector('[data-field="wait"]');
    setFigure(wait, c.wait, dur(c.wait));
    if (c.wait_ticks) ticking.push([wait, c.wait]);
    setText(row.querySelector('[data-field="path"]'), c.path.join(" \u203a "));
  }

  // Rows whose key is not in *keep* go; the rest are put in the payload's order (moving a
  // node keeps it).
  function prune(body, attr, keep) {
    body.querySelectorAll("tr[" + attr + "]").forEach((row) => {
      if (!keep.has(row.getAttribute(attr))) row.remove();
    });
  }

  function order(body, attr, names) {
    names.forEach((name, i) => {
      const row = body.querySelector("tr[" + attr + '="' + esc(name) + '"]');
      if (row && body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    });
  }

  let windowShown = false;
  function apply(data) {
    received = performance.now();
    windowShown = data.window_minutes > 0;
    ticking = [];
    const calls = document.querySelector('[data-figure="calls_in_progress"]');
    setFigure(calls, data.calls_in_progress, String(data.calls_in_progress));
    for (const [state, n] of Object.entries(data.agents_by_state)) {
      // /metrics has a sample only for the states some agent is in
      const node = stateNode(state);
      setFigure(node, n, String(n));
      if (everyone && n > 0) node.dataset.metric = metric("ivr_agents", {state});
      else delete node.dataset.metric;
    }
    // what the switchboard answered to this supervisor's last command (its phone called,
    // a refusal)
    const notice = supervisor && data.notices[supervisor];
    if (notice && notice.seq > noticeSeq) {
      noticeSeq = notice.seq;
      show(notice.ok, notice.text);
    }
    for (const [name, q] of Object.entries(data.queues)) updateTile(name, q);
    tiles.querySelectorAll("[data-queue]").forEach((tile) => {
      if (!(tile.dataset.queue in data.queues)) tile.remove();
    });
    data.agents.forEach(updateAgent);
    prune(agentRows, "data-agent", new Set(data.agents.map((a) => a.name)));
    order(agentRows, "data-agent", data.agents.map((a) => a.name));
    document.getElementById("wb-no-agents").hidden = data.agents.length > 0;
    data.calls.forEach(updateCall);
    prune(callRows, "data-call", new Set(data.calls.map((c) => c.call_id)));
    order(callRows, "data-call", data.calls.map((c) => c.call_id));
    document.getElementById("wb-no-calls").hidden = data.calls.length > 0;
    const statsAt = document.getElementById("wb-stats-at");
    if (data.stats_at) {
      statsAt.dataset.unix = String(data.stats_at);
      Console.localTimes(statsAt.parentNode);
    }
  }

  // Waits and times in state go on between messages (data-value keeps what the server said).
  setInterval(() => {
    const extra = (performance.now() - received) / 1000;
    for (const [node, seconds] of ticking) setText(node, Console.duration(seconds + extra));
  }, 1000);

  // -- buttons ----------------------------------------------------------------------------------
  const result = document.getElementById("supervise-result");
  function show(ok, text) {
    result.hidden = false;
    result.dataset.ok = ok ? "1" : "0";
    result.classList.toggle("bad", !ok);
    result.textContent = text;
  }

  root.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-agent]");
    if (!button) return;
    const agent = button.dataset.agent;
    try {
      let answer;
      if (button.dataset.action) {
        answer = await Console.post("/wallboard/supervise", {agent, mode: button.dataset.action});
      } else {
        const command = button.dataset.command;
        let reason = "";
        if (command === "pause") {
          reason = window.prompt(t("wb.pause"), "") ;
          if (reason === null) return;
        }
        answer = await Console.post("/wallboard/agent-state", {agent, command, reason});
      }
      show(true, answer.message || "");
    } catch (err) {
      show(false, err.message);
    }
  });

  Console.live(root.dataset.live, apply);
})();
