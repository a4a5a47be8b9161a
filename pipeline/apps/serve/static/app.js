// rillet's page: start a stream, show its text as it arrives, stop it, re-attach after a reload.
// Streamed text only ever goes into Text nodes: model output is untrusted, and a Text node cannot
// become markup. The one innerHTML is the finished report, sanitised on the server, and passed
// through the single Trusted Types policy the Content-Security-Policy allows.
"use strict";

(() => {
  const el = (id) => document.querySelector(`[data-testid="${id}"]`);
  const form = el("form");
  const prompt = el("prompt");
  const startButton = el("start");
  const stopButton = el("stop");
  const output = el("output");
  const statusLine = el("status");
  const outcomeField = el("outcome");
  const report = el("report");
  const reportHint = report.firstElementChild;

  const policy = window.trustedTypes
    ? window.trustedTypes.createPolicy("rillet-report", { createHTML: (html) => html })
    : null;

  const pageQuery = new URLSearchParams(window.location.search);
  let source = null;
  let view = null;
  let following = true; // the output pane keeps its newest text in view until the reader scrolls up
  let scrollPending = false;

  output.addEventListener("scroll", () => {
    following = output.scrollTop + output.clientHeight >= output.scrollHeight - 24;
  });

  function keepNewestInView() {
    if (scrollPending || !following) return;
    scrollPending = true;
    window.requestAnimationFrame(() => {
      scrollPending = false;
      if (following) output.scrollTop = output.scrollHeight;
    });
  }

  function newView(id) {
    return {
      id,
      blocks: new Map(), // block index -> Text node holding that text block
      ended: false,
      ttft: null,
      firstDeltaAt: null,
      lastDeltaAt: null,
      tokens: null,
      tokensFinal: false,
      cost: null,
      costEstimated: true,
      rate: null,
      note: "connecting…",
      outcome: "",
    };
  }

  function setRunning(running) {
    startButton.disabled = running;
    stopButton.disabled = !running;
  }

  function showStatus() {
    const parts = [];
    if (view.ttft !== null) parts.push(`TTFT ${view.ttft.toFixed(2)} s`);
    if (view.tokens !== null) {
      parts.push(`${view.tokensFinal ? "" : "≈"}${view.tokens.toLocaleString("en")} output tokens`);
      let rate = view.rate;
      if (rate === null && view.firstDeltaAt !== null && view.lastDeltaAt > view.firstDeltaAt) {
        rate = view.tokens / ((view.lastDeltaAt - view.firstDeltaAt) / 1000);
      }
      if (rate !== null) parts.push(`${rate.toFixed(1)} tokens/s`);
    }
    if (view.cost !== null && Number.isFinite(view.cost)) {
      parts.push(`$${view.cost.toFixed(4)}${view.costEstimated ? " (est.)" : ""}`);
    }
    parts.push(view.outcome || view.note);
    statusLine.textContent = parts.join(" · ");
  }

  function textNode(index) {
    let node = view.blocks.get(index);
    if (node === undefined) {
      node = document.createTextNode("");
      view.blocks.set(index, node);
      output.append(node);
    }
    return node;
  }

  const handlers = {
    message_start() {
      view.note = "streaming";
    },
    content_block_start(data) {
      if (data.content_block.type === "text") textNode(data.index).appendData(data.content_block.text || "");
    },
    "rillet.content_block_start"(data) {
      handlers.content_block_start(data); // a resumed attempt carrying on the same block
    },
    content_block_delta(data) {
      if (data.delta.type !== "text_delta") return;
      textNode(data.index).appendData(data.delta.text);
      keepNewestInView();
      const now = performance.now();
      if (view.firstDeltaAt === null) view.firstDeltaAt = now;
      view.lastDeltaAt = now;
    },
    message_delta(data) {
      if (data.usage) {
        view.tokens = data.usage.output_tokens;
        view.tokensFinal = true;
      }
    },
    "rillet.first_token"(data) {
      if (data.kind === "delta") view.ttft = data.seconds;
    },
    "rillet.cost"(data) {
      view.cost = data.usd;
      view.costEstimated = data.estimated;
      if (!view.tokensFinal) view.tokens = data.usage.output_tokens;
    },
    "rillet.attempt"(data) {
      if (data.attempt > 1) view.note = `reconnecting upstream (attempt ${data.attempt}: ${data.reason})`;
    },
    "rillet.message_start"() {
      view.note = "streaming (resumed)";
    },
    "rillet.repetition"(data) {
      view.note = `repetition detected: a ${data.period}-character passage ${data.repeats} times`;
    },
    stream_error(data) {
      view.note = `API error: ${(data.error && data.error.message) || "unknown"}`;
    },
    reset(data) {
      output.replaceChildren();
      view.blocks.clear();
      (data.message.content || []).forEach((block, index) => {
        if (block.type === "text") textNode(index).appendData(block.text || "");
      });
    },
    end(data) {
      if (data.outcome === "shutdown") {
        // The server is stopping, not the stream: EventSource reconnects with its Last-Event-ID
        // (to another replica, or to this server once back) and gets the stream's real end.
        view.note = "the server is shutting down; reconnecting…";
        return;
      }
      view.ended = true;
      view.outcome = data.outcome;
      if (data.error) view.outcome += ` (${data.error})`;
      if (data.usage && data.usage.output_tokens !== undefined) {
        view.tokens = data.usage.output_tokens;
        view.tokensFinal = true;
      }
      // A job a replica ended without a run (cancelled while queued, dead-lettered) has no figures.
      if (data.ttft_s != null) view.ttft = data.ttft_s;
      if (data.cost_usd != null) {
        view.cost = data.cost_usd;
        view.costEstimated = data.cost_estimated;
      }
      view.rate = data.tokens_per_s ?? null;
      outcomeField.textContent = data.outcome;
      source.close();
      setRunning(false);
      showReport(view.id);
    },
  };

  function listen(name, handler) {
    const current = view;
    source.addEventListener(name, (event) => {
      if (view !== current) return;
      handler(JSON.parse(event.data));
      showStatus();
    });
  }

  async function showReport(id) {
    const response = await fetch(`/api/streams/${encodeURIComponent(id)}`);
    if (!response.ok || view.id !== id) return;
    const state = await response.json();
    if (typeof state.html === "string") {
      report.innerHTML = policy ? policy.createHTML(state.html) : state.html;
    }
  }

  function attach(id) {
    if (source !== null) source.close();
    view = newView(id);
    output.replaceChildren();
    outcomeField.textContent = "";
    report.replaceChildren(reportHint);
    following = true;
    setRunning(true);
    source = new EventSource(`/api/streams/${encodeURIComponent(id)}/events?after=0`);
    for (const [name, handler] of Object.entries(handlers)) listen(name, handler);
    const current = view;
    source.addEventListener("open", () => {
      if (view === current && !view.ended && view.note.startsWith("reconnecting…")) view.note = "streaming";
      showStatus();
    });
    source.addEventListener("error", () => {
      if (view !== current || view.ended) return;
      if (source.readyState === EventSource.CLOSED) {
        view.note = "disconnected: the stream is gone (expired, or the server stopped)";
        setRunning(false);
      } else {
        view.note = "reconnecting…";
      }
      showStatus();
    });
    showStatus();
  }

  async function start(event) {
    event.preventDefault();
    const body = { prompt: prompt.value };
    const maxTokens = pageQuery.get("max_tokens");
    if (maxTokens) body.max_tokens = Number(maxTokens);
    if (pageQuery.get("model")) body.model = pageQuery.get("model");
    const simulator = {};
    for (const name of ["scenario", "ttft_ms", "tokens_per_s"]) {
      const value = pageQuery.get(name);
      if (value) simulator[name] = name === "scenario" ? value : Number(value);
    }
    if (Object.keys(simulator).length) body.simulator = simulator;
    startButton.disabled = true;
    let response;
    let answer;
    try {
      response = await fetch("/api/streams", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      answer = await response.json();
    } catch (error) {
      answer = { error: `the server cannot be reached (${error.message})` };
    }
    if (!response || !response.ok) {
      statusLine.textContent = `Could not start: ${answer.error}`;
      startButton.disabled = false;
      return;
    }
    window.history.replaceState(null, "", `?stream=${encodeURIComponent(answer.id)}`);
    attach(answer.id);
  }

  async function stop() {
    if (view === null || view.ended) return;
    stopButton.disabled = true;
    view.note = "stopping…";
    showStatus();
    try {
      const response = await fetch(`/api/streams/${encodeURIComponent(view.id)}/cancel`, { method: "POST" });
      if (!response.ok) throw new Error((await response.json()).error);
    } catch (error) {
      view.note = `could not stop: ${error.message}`;
      stopButton.disabled = false;
      showStatus();
    }
  }

  async function reattach(id) {
    const response = await fetch(`/api/streams/${encodeURIComponent(id)}`);
    if (!response.ok) {
      statusLine.textContent = "That stream is gone (it expired, or the server restarted).";
      return;
    }
    attach(id);
  }

  form.addEventListener("submit", start);
  stopButton.addEventListener("click", stop);
  const existing = pageQuery.get("stream");
  if (existing) reattach(existing);
})();
