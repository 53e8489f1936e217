// One run, live: step states on the graph, a Gantt chart of attempts, and the event log.
// Everything arrives over one EventSource; after a dropped connection the browser
// reconnects with Last-Event-ID and the server resumes after that event.

import { h, api, enc, fmtTime, fmtDuration, statusBadge, tagChips, shortId } from "./dom.js";
import { GraphView, graphToolbar } from "./graph.js";
import { Gantt } from "./gantt.js";
import { EventLog } from "./eventlog.js";

const STATES = ["pending", "running", "retrying", "success", "failure", "skipped", "canceled"];
const STATE_LABEL = { pending: "Pending", running: "Running", retrying: "Retrying", success: "Succeeded", failure: "Failed", skipped: "Skipped", canceled: "Canceled" };
const FINISHED = new Set(["SUCCESS", "FAILURE", "CANCELED"]);

export async function runPage(root, runId, info) {
  const run = await api(`api/runs/${enc(runId)}`);
  let pipeline = null;
  try { pipeline = await api(`api/pipelines/${enc(run.pipeline_name)}`); } catch { pipeline = null; }

  const steps = new Map();
  const step = (key) => {
    let s = steps.get(key);
    if (!s) { s = { state: "pending", attempts: [] }; steps.set(key, s); }
    return s;
  };
  // A mapped node is a template, not a step: its steps ("fetch[k]") appear as items are yielded.
  const templates = pipeline ? pipeline.nodes.filter((n) => n.mapped_over).map((n) => n.name) : [];
  if (pipeline) for (const n of pipeline.nodes) if (!n.mapped_over) step(n.name);
  let status = run.status, canceling = false;
  let t0 = run.start_time, end = run.end_time, traceId = run.trace_id || null;
  const dirty = new Set();

  // --- header ---
  const badge = h("span", { "data-testid": "run-status" });
  const durationEl = h("span");
  const traceEl = h("span", { "data-testid": "trace" });
  const counts = h("div", { class: "state-counts", "data-testid": "state-counts" });
  const cancelBtn = h("button", { class: "btn danger", type: "button", "data-testid": "cancel" }, "Cancel");
  const rerunBtn = h("button", { class: "btn", type: "button", "data-testid": "rerun" }, "Re-run");
  const actionError = h("div", { class: "alert error", hidden: true });
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
    if (traceId) {
      traceEl.replaceChildren(h("code", {}, traceId), info.jaeger_url ? h("a", { class: "btn link small", href: `${info.jaeger_url}/trace/${traceId}`, target: "_blank", rel: "noopener" }, "Open in Jaeger ↗") : null);
    } else traceEl.replaceChildren(h("span", { class: "muted" }, "not traced"));
    const tally = new Map(STATES.map((s) => [s, 0]));
    for (const s of steps.values()) tally.set(s.state, tally.get(s.state) + 1);
    counts.replaceChildren(...STATES.filter((s) => tally.get(s)).map((s) => h("span", { class: `count st-${s}` }, [h("i", {}), `${tally.get(s)} ${STATE_LABEL[s].toLowerCase()}`])));
  };

  // --- body ---
  const graphBox = h("div", { class: "graph-wrap run-graph" });
  let view = null;
  if (pipeline) {
    view = new GraphView(graphBox, pipeline, { onSelect: (id) => { log.stepSelect.value = id || ""; log.setFilter({ step: id || "" }); } });
    graphBox.append(graphToolbar(view, pipeline.nodes.map((n) => n.name)));
  } else {
    graphBox.append(h("div", { class: "empty-state small" }, `Pipeline ${run.pipeline_name} is not loaded in this server, so its graph cannot be drawn.`));
  }
  const legend = h("div", { class: "legend" }, STATES.map((s) => h("span", { class: `count st-${s}` }, [h("i", {}), STATE_LABEL[s]])));
  const ganttBox = h("div", { class: "gantt-wrap" });
  const gantt = new Gantt(ganttBox);
  const logBox = h("div", { class: "log" });
  const log = new EventLog(logBox);

  root.append(h("div", { class: "page wide run-page" }, [
    h("div", { class: "run-head" }, [
      h("div", { class: "run-title" }, [
        h("h1", {}, ["Run ", h("span", { class: "mono", title: runId }, shortId(runId))]),
        badge,
        h("div", { class: "grow" }),
        actionError, cancelBtn, rerunBtn,
      ]),
      h("div", { class: "run-meta" }, [
        meta("Pipeline", pipeline ? h("a", { href: `#/pipelines/${enc(run.pipeline_name)}` }, run.pipeline_name) : run.pipeline_name),
        meta("Started", fmtTime(run.start_time)),
        meta("Duration", durationEl),
        meta("Tags", tagChips(run.tags)),
        meta("Trace", traceEl),
        run.parent_run_id ? meta("Re-run of", h("a", { href: `#/runs/${enc(run.parent_run_id)}`, class: "mono" }, shortId(run.parent_run_id))) : null,
      ]),
      counts,
    ]),
    h("div", { class: "run-top" }, [
      h("section", { class: "panel" }, [h("div", { class: "panel-head" }, [h("h2", {}, "Steps"), h("div", { class: "grow" }), legend]), graphBox]),
      h("section", { class: "panel" }, [h("div", { class: "panel-head" }, [h("h2", {}, "Timeline")]), ganttBox]),
    ]),
    h("section", { class: "panel log-panel" }, [h("div", { class: "panel-head" }, [h("h2", {}, "Event log")]), logBox]),
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
      switch (e.type) {
        case "RUN_START": status = "STARTED"; t0 = e.timestamp; traceId = (e.data && e.data.trace_id) || traceId; break;
        case "RUN_CANCELING": canceling = true; break;
        case "RUN_SUCCESS": status = "SUCCESS"; end = e.timestamp; break;
        case "RUN_FAILURE": status = "FAILURE"; end = e.timestamp; break;
        case "RUN_CANCELED": status = "CANCELED"; end = e.timestamp; break;
        case "STEP_START": step(key).state = "running"; step(key).attempts.push({ attempt: (e.data && e.data.attempt) || step(key).attempts.length + 1, start: e.timestamp }); dirty.add(key); break;
        case "STEP_UP_FOR_RETRY": step(key).state = "retrying"; close(key, "retry", e.timestamp); dirty.add(key); break;
        case "STEP_SUCCESS": step(key).state = "success"; close(key, "success", e.timestamp); dirty.add(key); break;
        case "STEP_FAILURE": step(key).state = "failure"; close(key, "failure", e.timestamp); dirty.add(key); break;
        case "STEP_SKIPPED": step(key).state = "skipped"; dirty.add(key); break;
        case "STEP_CANCELED": step(key).state = "canceled"; close(key, "canceled", e.timestamp); dirty.add(key); break;
        default: break;
      }
    }
  };
  // A mapped step's key is "node[mapping_key]": its graph node is the template "node",
  // coloured by the most telling state among its instances.
  const templateOf = (key) => { const i = key.indexOf("["); return i < 0 ? null : key.slice(0, i); };
  const RANK = { failure: 6, running: 5, retrying: 4, canceled: 3, pending: 2, skipped: 1, success: 0 };
  const paint = () => {
    if (view) {
      const templates = new Set();
      for (const key of dirty) {
        const template = templateOf(key);
        if (template === null) view.setState(key, steps.get(key).state);
        else templates.add(template);
      }
      for (const template of templates) {
        let worst = null;
        for (const [key, s] of steps) {
          if (templateOf(key) === template && (worst === null || RANK[s.state] > RANK[worst])) worst = s.state;
        }
        if (worst !== null) view.setState(template, worst);
      }
      dirty.clear();
    }
    gantt.update(steps, { t0, end, live: !FINISHED.has(status) });
    refreshHeader();
  };
  if (view) for (const key of [...steps.keys(), ...templates]) view.setState(key, "pending");
  paint();

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
  const timer = setInterval(() => { if (!FINISHED.has(status)) { refreshHeader(); gantt.update(steps, { t0, end, live: true }); } }, 1000);
  return () => { source.close(); clearInterval(timer); if (view) view.destroy(); };
}

function meta(label, value) {
  return h("div", { class: "meta" }, [h("div", { class: "meta-k" }, label), h("div", { class: "meta-v" }, value)]);
}
