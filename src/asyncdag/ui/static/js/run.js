// One run, live: what failed and why, step states on the graph, a Gantt chart of
// attempts, the outputs it stored, and the event log.  A finished run is re-executed
// from here: from its failure, or for steps picked on the graph.  Everything arrives over one EventSource; after a
// dropped connection the browser reconnects with Last-Event-ID and the server
// resumes after that event.  Work per event is constant (state counts per graph
// node are kept up to date, not recounted), and the Gantt and the log draw only
// the rows in view, so a run of 100,000 steps loads as fast as its events arrive.

import { h, api, enc, fmtTime, fmtDuration, fmtBytes, statusBadge, tagChips, shortId } from "./dom.js";
import { GraphView, graphToolbar } from "./graph.js";
import { Gantt } from "./gantt.js";
import { EventLog, errorText } from "./eventlog.js";

const STATES = ["pending", "running", "retrying", "success", "reused", "failure", "skipped", "canceled"];
const STATE_LABEL = { pending: "Pending", running: "Running", retrying: "Retrying", success: "Succeeded", reused: "Reused", failure: "Failed", skipped: "Skipped", canceled: "Canceled" };
// How many stored outputs the outputs panel lists (the event log has every one).
const OUTPUT_ROWS = 200;
const FINISHED = new Set(["SUCCESS", "FAILURE", "CANCELED"]);

export async function runPage(root, runId, info) {
  const run = await api(`api/runs/${enc(runId)}`);
  let pipeline = null;
  // The graph to draw: the pipeline's own, or past a few thousand nodes one collapsed into groups.
  try { pipeline = await api(`api/pipelines/${enc(run.pipeline_name)}/graph`); } catch { pipeline = null; }

  // Which graph node shows a step: itself; a mapped step ("fetch[k]") its template ("fetch");
  // in a collapsed graph, the group holding either.
  const groupOf = new Map();
  if (pipeline) for (const n of pipeline.nodes) for (const m of n.members || []) groupOf.set(m, n.name);
  const templateOf = (key) => { const i = key.indexOf("["); return i < 0 || !key.endsWith("]") ? null : key.slice(0, i); };
  const nodeOf = (key) => {
    const template = templateOf(key);
    const own = template === null ? key : template;
    return groupOf.get(own) ?? own;
  };
  // Per graph node, how many of its steps are in each state; the node shows the most telling.
  const nodeTally = new Map();
  const totals = new Map(STATES.map((s) => [s, 0]));
  const dirty = new Set();
  const count = (key, state, by) => {
    const node = nodeOf(key);
    let tally = nodeTally.get(node);
    if (!tally) { tally = new Map(); nodeTally.set(node, tally); }
    tally.set(state, (tally.get(state) || 0) + by);
    totals.set(state, totals.get(state) + by);
    dirty.add(node);
  };
  const steps = new Map();
  const started = []; // step keys in order of first start: the Gantt's rows
  const step = (key) => {
    let s = steps.get(key);
    if (!s) { s = { state: "pending", attempts: [] }; steps.set(key, s); count(key, "pending", 1); }
    return s;
  };
  const setState = (key, state) => {
    const s = step(key);
    if (s.state === state) return s;
    count(key, s.state, -1);
    count(key, state, 1);
    s.state = state;
    return s;
  };
  // A mapped node is a template, not a step: its steps ("fetch[k]") appear as items are yielded.
  const templates = pipeline ? pipeline.nodes.filter((n) => n.mapped_over).map((n) => n.name) : [];
  if (pipeline) for (const n of pipeline.nodes) if (!n.mapped_over) for (const m of n.members || [n.name]) step(m);
  let status = run.status, canceling = false;
  let t0 = run.start_time, end = run.end_time, traceId = run.trace_id || null;

  // --- header ---
  const badge = h("span", { "data-testid": "run-status" });
  const durationEl = h("span");
  const traceEl = h("span", { "data-testid": "trace" });
  const counts = h("div", { class: "state-counts", "data-testid": "state-counts" });
  const cancelBtn = h("button", { class: "btn danger", type: "button", "data-testid": "cancel" }, "Cancel");
  const rerunBtn = h("button", { class: "btn", type: "button", "data-testid": "rerun" }, "Re-run");
  const fromFailureBtn = h("button", { class: "btn primary", type: "button", "data-testid": "reexecute-failure", hidden: true }, "Re-execute from failure");
  const pickBtn = h("button", { class: "btn", type: "button", "data-testid": "select-steps", "aria-pressed": "false", hidden: true }, "Select steps");
  const selectedBtn = h("button", { class: "btn", type: "button", "data-testid": "reexecute-selected", hidden: true }, "Re-execute selected");
  const actionError = h("div", { class: "alert error", hidden: true });
  // Steps picked on the graph for "Re-execute selected" (graph node names: a mapped node stands
  // for all of its items, a collapsed group for each of its members).
  const picked = new Set();
  let picking = false;
  const reexecute = async (btn, body) => {
    btn.disabled = true;
    try {
      const result = await api(`api/runs/${enc(runId)}/reexecute`, { json: body });
      location.hash = `#/runs/${enc(result.run_id)}`;
    } catch (err) { actionError.textContent = err.message; actionError.hidden = false; btn.disabled = false; }
  };
  fromFailureBtn.addEventListener("click", () => reexecute(fromFailureBtn, { from_failure: true }));
  selectedBtn.addEventListener("click", () => {
    const steps = [];
    for (const id of picked) for (const m of membersOf.get(id) || [id]) steps.push(m);
    reexecute(selectedBtn, { steps });
  });
  pickBtn.addEventListener("click", () => {
    picking = !picking;
    pickBtn.classList.toggle("on", picking);
    pickBtn.setAttribute("aria-pressed", String(picking));
    if (!picking) { for (const id of picked) view?.setPicked(id, false); picked.clear(); }
    refreshHeader();
  });
  cancelBtn.addEventListener("click", async () => {
    cancelBtn.disabled = true;
    cancelBtn.textContent = "Canceling…";
    try { await api(`api/runs/${enc(runId)}/cancel`, { method: "POST" }); canceling = true; }
    catch (err) { actionError.textContent = err.message; actionError.hidden = false; }
    refreshHeader();
  });
  rerunBtn.addEventListener("click", async () => {
    rerunBtn.disabled = true;
    try {
      const result = await api(`api/runs/${enc(runId)}/rerun`, { method: "POST" });
      location.hash = `#/runs/${enc(result.run_id)}`;
    } catch (err) { actionError.textContent = err.message; actionError.hidden = false; rerunBtn.disabled = false; }
  });

  const refreshHeader = () => {
    const shown = canceling && !FINISHED.has(status) ? "CANCELING" : status;
    badge.replaceChildren(statusBadge(shown));
    const stop = end ?? (FINISHED.has(status) ? t0 : Date.now() / 1000);
    durationEl.textContent = t0 ? fmtDuration(stop - t0) : "—";
    cancelBtn.hidden = FINISHED.has(status);
    if (!canceling) { cancelBtn.disabled = !run.live && status !== "STARTED"; cancelBtn.textContent = "Cancel"; }
    rerunBtn.disabled = !pipeline || !FINISHED.has(status);
    const done = FINISHED.has(status) && !!pipeline;
    fromFailureBtn.hidden = !done || status === "SUCCESS";
    pickBtn.hidden = !done;
    selectedBtn.hidden = !done || !picking;
    selectedBtn.disabled = picked.size === 0;
    selectedBtn.textContent = picked.size ? `Re-execute selected (${picked.size})` : "Re-execute selected";
    if (traceId) {
      traceEl.replaceChildren(h("code", {}, traceId), info.jaeger_url ? h("a", { class: "btn link small", href: `${info.jaeger_url}/trace/${traceId}`, target: "_blank", rel: "noopener" }, "Open in Jaeger ↗") : null);
    } else traceEl.replaceChildren(h("span", { class: "muted" }, "not traced"));
    counts.replaceChildren(...STATES.filter((s) => totals.get(s)).map((s) => h("span", { class: `count st-${s}` }, [h("i", {}), `${totals.get(s).toLocaleString()} ${STATE_LABEL[s].toLowerCase()}`])));
  };

  // --- what failed, and why: at the top, as soon as it is known ---
  const failureBox = h("div", { class: "run-failure", hidden: true, "data-testid": "run-failure" });
  const failures = new Map(); // step key -> {key, error, verb}
  const resourceErrors = new Map();
  let shownTrace = false;
  const addFailure = (key, error, verb) => {
    if (!error || failures.has(key)) return;
    failures.set(key, { key, error, verb });
    renderFailure();
  };
  const renderFailure = () => {
    const [first, ...rest] = failures.values();
    if (!first) { failureBox.hidden = true; return; }
    const trace = h("pre", { class: "failure-trace", "data-testid": "failure-traceback", hidden: !shownTrace }, errorText({ data: { error: first.error } }));
    const toggle = h("button", { class: "btn link small", type: "button", "data-testid": "failure-traceback-toggle" }, shownTrace ? "Hide traceback" : "Traceback");
    toggle.addEventListener("click", () => { shownTrace = !shownTrace; renderFailure(); });
    const inLog = h("button", { class: "btn link small", type: "button" }, "Show in log");
    inLog.addEventListener("click", () => { log.stepSelect.value = first.key; log.setFilter({ step: first.key }); logPanel.scrollIntoView({ behavior: "smooth", block: "start" }); });
    const more = rest.length ? [h("div", { class: "more" }, `${rest.length} more: ${rest.slice(0, 5).map((f) => `${f.key} (${f.error.type})`).join(", ")}${rest.length > 5 ? ", …" : ""}`)] : [];
    failureBox.replaceChildren(
      h("div", { class: "run-failure-line", "data-testid": "failure-summary" }, [
        "Step ", h("span", { class: "step", "data-testid": "failed-step" }, first.key), ` ${first.verb}: `,
        h("span", { class: "err-type", "data-testid": "failure-type" }, first.error.type), ": ",
        h("span", { class: "emsg", "data-testid": "failure-message" }, first.error.message),
        toggle, inLog,
      ]),
      trace,
      ...more,
    );
    failureBox.hidden = false;
  };

  // --- body ---
  const graphBox = h("div", { class: "graph-wrap run-graph" });
  let view = null;
  const membersOf = new Map(pipeline ? pipeline.nodes.map((n) => [n.name, n.members || [n.name]]) : []);
  if (pipeline) {
    // A group stands for many steps: selecting it clears the log's step filter.
    const single = new Set(pipeline.nodes.filter((n) => !n.members || n.members.length === 1).map((n) => (n.members ? n.members[0] : n.name)));
    const stepOfNode = new Map(pipeline.nodes.map((n) => [n.name, n.members && n.members.length === 1 ? n.members[0] : n.name]));
    view = new GraphView(graphBox, pipeline, { onSelect: (id) => {
      if (picking) {
        if (!id) return;
        if (picked.has(id)) picked.delete(id); else picked.add(id);
        view.setPicked(id, picked.has(id));
        refreshHeader();
        return;
      }
      const key = id && single.has(stepOfNode.get(id)) ? stepOfNode.get(id) : "";
      log.stepSelect.value = key; log.setFilter({ step: key });
    } });
    graphBox.append(graphToolbar(view, pipeline.nodes.map((n) => n.name)));
  } else {
    graphBox.append(h("div", { class: "empty-state small" }, `Pipeline ${run.pipeline_name} is not loaded in this server, so its graph cannot be drawn.`));
  }
  const legend = h("div", { class: "legend" }, STATES.map((s) => h("span", { class: `count st-${s}` }, [h("i", {}), STATE_LABEL[s]])));
  const ganttBox = h("div", { class: "gantt-wrap" });
  const gantt = new Gantt(ganttBox);
  // --- outputs the run stored (or reused): where, and how big ---
  const outputRows = h("tbody", { "data-testid": "outputs-table" });
  const outputNote = h("span", { class: "muted" }, "none stored");
  let outputCount = 0, outputBytes = 0;
  const addOutput = (e) => {
    const data = e.data || {};
    if (!data.path) return;
    outputCount += 1;
    outputBytes += Number(data.size) || 0;
    outputNote.textContent = `${outputCount.toLocaleString()} stored, ${fmtBytes(outputBytes)}${outputCount > OUTPUT_ROWS ? ` (the first ${OUTPUT_ROWS} listed; the log has all)` : ""}`;
    if (outputCount > OUTPUT_ROWS) return;
    const name = data.mapping_key ? `${data.output}[${data.mapping_key}]` : data.output;
    const from = data.loaded_from ? h("a", { href: `#/runs/${enc(data.loaded_from)}`, class: "mono" }, `reused from ${shortId(data.loaded_from)}`) : h("span", { class: "muted" }, "this run");
    outputRows.append(h("tr", { "data-step": e.step_key }, [
      h("td", { class: "mono" }, e.step_key), h("td", { class: "mono" }, name),
      h("td", { class: "mono path", title: data.path }, data.path), h("td", {}, fmtBytes(data.size)), h("td", {}, from),
    ]));
  };
  const outputsPanel = h("section", { class: "panel outputs-panel" }, [
    h("div", { class: "panel-head" }, [h("h2", {}, "Stored outputs"), outputNote]),
    h("div", { class: "table-scroll" }, h("table", { class: "table outputs" }, [
      h("thead", {}, h("tr", {}, ["Step", "Output", "Location", "Size", "From"].map((c) => h("th", {}, c)))),
      outputRows,
    ])),
  ]);
  const logBox = h("div", { class: "log" });
  const log = new EventLog(logBox);
  const logPanel = h("section", { class: "panel log-panel" }, [h("div", { class: "panel-head" }, [h("h2", {}, "Event log")]), logBox]);

  root.append(h("div", { class: "page wide run-page" }, [
    h("div", { class: "run-head" }, [
      h("div", { class: "run-title" }, [
        h("h1", {}, ["Run ", h("span", { class: "mono", title: runId }, shortId(runId))]),
        badge,
        h("div", { class: "grow" }),
        actionError, cancelBtn, fromFailureBtn, pickBtn, selectedBtn, rerunBtn,
      ]),
      h("div", { class: "run-meta" }, [
        meta("Pipeline", pipeline ? h("a", { href: `#/pipelines/${enc(run.pipeline_name)}` }, run.pipeline_name) : run.pipeline_name),
        meta("Started", fmtTime(run.start_time)),
        meta("Duration", durationEl),
        meta("Tags", tagChips(run.tags)),
        meta("Trace", traceEl),
        run.parent_run_id ? meta("Parent", h("a", { href: `#/runs/${enc(run.parent_run_id)}`, class: "mono", "data-testid": "parent-link" }, shortId(run.parent_run_id))) : null,
        run.root_run_id ? meta("Root", h("a", { href: `#/runs/${enc(run.root_run_id)}`, class: "mono", "data-testid": "root-link" }, shortId(run.root_run_id))) : null,
      ]),
      counts,
      failureBox,
    ]),
    h("div", { class: "run-top" }, [
      h("section", { class: "panel" }, [h("div", { class: "panel-head" }, [h("h2", {}, "Steps"), h("div", { class: "grow" }), legend]), graphBox]),
      h("section", { class: "panel" }, [h("div", { class: "panel-head" }, [h("h2", {}, "Timeline")]), ganttBox]),
    ]),
    outputsPanel,
    logPanel,
  ]));

  // --- events ---
  const close = (key, outcome, ts) => {
    const s = step(key);
    const a = s.attempts[s.attempts.length - 1];
    if (a && a.end === undefined) { a.end = ts; a.outcome = outcome; }
  };
  const apply = (batch) => {
    for (const e of batch) {
      const key = e.step_key;
      const data = e.data || {};
      switch (e.type) {
        case "RUN_START": status = "STARTED"; t0 = e.timestamp; traceId = data.trace_id || traceId; break;
        case "RUN_CANCELING": canceling = true; break;
        case "RUN_SUCCESS": status = "SUCCESS"; end = e.timestamp; break;
        case "RUN_FAILURE": status = "FAILURE"; end = e.timestamp; break;
        case "RUN_CANCELED": status = "CANCELED"; end = e.timestamp; break;
        case "RESOURCE_INIT_FAILURE": if (data.error) resourceErrors.set(data.resource, data.error); break;
        case "STEP_START": {
          const s = setState(key, "running");
          if (!s.attempts.length) started.push(key);
          s.attempts.push({ attempt: data.attempt || s.attempts.length + 1, start: e.timestamp });
          break;
        }
        case "STEP_UP_FOR_RETRY": setState(key, "retrying"); close(key, "retry", e.timestamp); break;
        case "STEP_SUCCESS": setState(key, data.loaded_from ? "reused" : "success"); close(key, "success", e.timestamp); break;
        case "STEP_OUTPUT": addOutput(e); break;
        case "STEP_FAILURE": setState(key, "failure"); close(key, "failure", e.timestamp); addFailure(key, data.error, "failed"); break;
        case "STEP_SKIPPED": setState(key, "skipped"); addFailure(key, resourceErrors.get(data.resource), "could not start"); break;
        case "STEP_CANCELED": setState(key, "canceled"); close(key, "canceled", e.timestamp); break;
        default: break;
      }
    }
  };
  const RANK = { failure: 6, running: 5, retrying: 4, canceled: 3, pending: 2, skipped: 1, success: 0, reused: 0 };
  const paint = () => {
    if (view) {
      for (const node of dirty) {
        let worst = null;
        for (const [state, n] of nodeTally.get(node) || []) if (n > 0 && (worst === null || RANK[state] > RANK[worst])) worst = state;
        view.setState(node, worst ?? "pending");
      }
    }
    dirty.clear();
    gantt.update(steps, started, { t0, end, live: !FINISHED.has(status) });
    refreshHeader();
  };
  if (view) for (const node of templates) view.setState(groupOf.get(node) ?? node, "pending");
  paint();
  // A finished (or running) run's failures, before its events have all arrived.
  if (status !== "SUCCESS") {
    api(`api/runs/${enc(runId)}/steps?status=FAILURE,SKIPPED`).then(({ steps: failed }) => {
      for (const s of failed) if (s.error) addFailure(s.key, s.error, s.status === "FAILURE" ? "failed" : "could not start");
    }).catch(() => { /* the events will tell */ });
  }

  const source = new EventSource(`api/runs/${enc(runId)}/events/stream`);
  source.addEventListener("events", (msg) => {
    const batch = JSON.parse(msg.data);
    apply(batch);
    log.append(batch);
    paint();
  });
  source.addEventListener("end", (msg) => {
    source.close();
    const final = JSON.parse(msg.data).run;
    if (final) { status = final.status; end = end ?? final.end_time; run.live = false; }
    paint();
  });
  const timer = setInterval(() => { if (!FINISHED.has(status)) { refreshHeader(); gantt.update(steps, started, { t0, end, live: true }); } }, 1000);
  return () => { source.close(); clearInterval(timer); if (view) view.destroy(); };
}

function meta(label, value) {
  return h("div", { class: "meta" }, [h("div", { class: "meta-k" }, label), h("div", { class: "meta-v" }, value)]);
}
