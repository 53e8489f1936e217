// Schedules and sensors: on/off toggles, next ticks, the last outcome, and each one's tick history.

import { h, api, enc, fmtTime, shortId } from "./dom.js";

const TICK_LABEL = { STARTED: "Evaluating", SUCCESS: "Started a run", SKIPPED: "Skipped", FAILURE: "Failed" };
const TICK_CLASS = { STARTED: "started", SUCCESS: "success", SKIPPED: "not_started", FAILURE: "failure" };

export function tickBadge(tick) {
  if (!tick) return h("span", { class: "muted" }, "—");
  return h("span", { class: `badge status-${TICK_CLASS[tick.status] || "not_started"}`, "data-tick-status": tick.status }, TICK_LABEL[tick.status] || tick.status);
}

function runLinks(ids) {
  if (!ids || !ids.length) return null;
  return h("span", { class: "chips" }, ids.map((id) => h("a", { class: "mono", href: `#/runs/${enc(id)}`, title: id, "data-run-link": id }, shortId(id))));
}

function when(item) {
  if (item.type === "schedule") return [h("code", {}, item.cron_schedule), h("span", { class: "muted small" }, ` ${item.execution_timezone}`)];
  return h("span", {}, `every ${item.minimum_interval_seconds}s`);
}

function nextTicks(item, count) {
  if (item.status !== "RUNNING") return h("span", { class: "muted" }, "off");
  const shown = item.next_ticks.slice(0, count);
  if (!shown.length) return h("span", { class: "muted" }, "—");
  return h("ul", { class: "next-ticks", "data-testid": `next-ticks-${item.name}` }, shown.map((t) => h("li", { class: "mono small", title: t.local }, t.local.replace("T", " "))));
}

export function toggle(item, onChange) {
  const box = h("input", { type: "checkbox", role: "switch", "data-testid": `toggle-${item.name}`, "aria-label": `${item.name} on or off` });
  box.checked = item.status === "RUNNING";
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      const updated = await api(`api/automation/${enc(item.name)}/status`, { json: { status: box.checked ? "RUNNING" : "STOPPED" } });
      onChange(updated);
    } catch (err) {
      box.checked = !box.checked;
      alert(err.message);
    } finally {
      box.disabled = false;
    }
  });
  return h("label", { class: "switch" }, [box, h("span", { class: "slider" })]);
}

function lastTick(item) {
  const tick = item.last_tick;
  if (!tick) return h("span", { class: "muted" }, "no tick yet");
  const why = tick.error ? tick.error.message : tick.skip_reason;
  return h("div", { class: "last-tick" }, [
    tickBadge(tick),
    h("span", { class: "muted small" }, ` ${fmtTime(tick.tick_time)} `),
    runLinks(tick.run_ids),
    why ? h("div", { class: "muted small ellipsis", title: why }, why) : null,
  ]);
}

export async function automationPage(root) {
  let items = [];
  let selected = null;
  const tbody = h("tbody", { "data-testid": "automation-table" });
  const history = h("div", { class: "panel table-panel ticks-panel", "data-testid": "tick-history" });
  const note = h("span", { class: "muted" });

  const replace = (updated) => {
    items = items.map((i) => (i.name === updated.name ? updated : i));
    render();
  };
  const render = () => {
    tbody.replaceChildren(...items.map((item) => h("tr", { "data-instigator": item.name, class: item.name === selected ? "selected" : "", onclick: (e) => { if (!e.target.closest("label, a")) select(item.name); } }, [
      h("td", {}, toggle(item, replace)),
      h("td", {}, [h("b", {}, item.name), h("div", { class: "muted small" }, item.type)]),
      h("td", {}, h("a", { href: `#/pipelines/${enc(item.pipeline)}` }, item.pipeline)),
      h("td", {}, when(item)),
      h("td", {}, nextTicks(item, 3)),
      h("td", {}, lastTick(item)),
    ])));
    if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "empty-row" }, "No schedules or sensors. Define them with @schedule or @sensor in the file given to -f.")));
  };
  const select = async (name) => {
    selected = name;
    render();
    const { ticks } = await api(`api/automation/${enc(name)}/ticks?limit=100`);
    history.replaceChildren(
      h("div", { class: "panel-head" }, [h("b", {}, `Ticks of ${name}`), h("span", { class: "muted small" }, `${ticks.length} shown, newest first`)]),
      h("table", { class: "table" }, [
        h("thead", {}, h("tr", {}, ["Tick", "Outcome", "Runs", "Reason or error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, ticks.length ? ticks.map((t) => h("tr", { "data-tick": t.tick_time }, [
          h("td", { class: "mono small" }, t.local.replace("T", " ")),
          h("td", {}, tickBadge(t)),
          h("td", {}, runLinks(t.run_ids) || h("span", { class: "muted" }, "—")),
          h("td", { class: "small" }, t.error ? `${t.error.type}: ${t.error.message}` : (t.skip_reason || "")),
        ])) : h("tr", {}, h("td", { colspan: 4, class: "empty-row" }, "No tick yet."))),
      ]),
    );
  };
  const load = async () => {
    const body = await api("api/automation");
    items = body.automation;
    note.textContent = body.scheduler_running ? `${items.length} defined; this server runs them` : `${items.length} defined; not run by this server (--no-schedules)`;
    render();
  };

  root.append(h("div", { class: "page" }, [
    h("div", { class: "page-head" }, [h("h1", {}, "Automation"), note]),
    h("div", { class: "panel table-panel" }, h("table", { class: "table automation" }, [
      h("thead", {}, h("tr", {}, ["On", "Name", "Pipeline", "When", "Next ticks", "Last tick"].map((c) => h("th", {}, c)))),
      tbody,
    ])),
    history,
  ]));
  await load();
  const timer = setInterval(() => { load().catch(() => {}); if (selected) select(selected).catch(() => {}); }, 5000);
  return () => clearInterval(timer);
}

// A pipeline's schedules and sensors, for its overview.
export async function pipelineAutomation(name) {
  const { automation } = await api(`api/automation?pipeline=${enc(name)}`);
  if (!automation.length) return h("div", { class: "muted small", "data-testid": "pipeline-schedules" }, "No schedule or sensor.");
  return h("ul", { class: "pipeline-schedules", "data-testid": "pipeline-schedules" }, automation.map((item) => h("li", { "data-instigator": item.name }, [
    h("a", { href: "#/automation" }, item.name),
    " ",
    h("span", { class: item.status === "RUNNING" ? "pill" : "muted small" }, item.status === "RUNNING" ? "on" : "off"),
    h("div", { class: "muted small" }, item.type === "schedule" ? `${item.cron_schedule} (${item.execution_timezone})` : `every ${item.minimum_interval_seconds}s`),
  ])));
}
