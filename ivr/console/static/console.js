// Centralino console: what every page shares. Plain JavaScript, no build step.
"use strict";

const Console = (() => {
  const csrf = () => document.querySelector('meta[name="csrf"]').content;

  // Live data: calls onData(object) for every update the server sends; shows a banner while the
  // stream is down (EventSource reconnects by itself).
  function live(url, onData) {
    const banner = document.getElementById("live-lost");
    const source = new EventSource(url);
    source.onmessage = (ev) => {
      if (banner) banner.hidden = true;
      onData(JSON.parse(ev.data));
    };
    source.onerror = () => { if (banner) banner.hidden = false; };
    return source;
  }

  // POST JSON to the console's API with the session's CSRF token; resolves to the JSON answer,
  // rejects with the server's message.
  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify(body || {}),
    });
    const text = await res.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (e) { data = {error: text}; }
    if (!res.ok) throw new Error(data.error || text || res.statusText);
    return data;
  }

  // Build an element: el("td", {class: "x", text: "..."}, child...). Text is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c);
    return node;
  }

  // "3:07" for 187 seconds; "1:02:03" past an hour.
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  // Unix seconds shown in the page's local time.
  function localTimes(root) {
    (root || document).querySelectorAll("[data-unix]").forEach((node) => {
      const t = parseFloat(node.dataset.unix);
      if (!isNaN(t) && t > 0) node.textContent = new Date(t * 1000).toLocaleString();
    });
  }

  document.addEventListener("DOMContentLoaded", () => localTimes());
  return {live, post, el, duration, csrf, localTimes};
})();
