// Run history, newest first, kept current by a Server-Sent Events feed of the run list.

import { h, enc, fmtTime, fmtDuration, statusBadge, tagChips, shortId } from "./dom.js";

export async function runsPage(root, info) {
  const params = new URLSearchParams((location.hash.split("?")[1]) || "");
  const filter = { text: "", status: params.get("status") || "", pipeline: params.get("pipeline") || "" };
  let runs = [];
  const text = h("input", { class: "input grow", type: "search", placeholder: "Filter by run id, pipeline or tag…", "data-testid": "runs-filter" });
  const statusSel = h("select", { class: "input", "data-testid": "runs-status" }, [["", "Any status"], ["STARTED", "Running"], ["SUCCESS", "Success"], ["FAILURE", "Failure"], ["CANCELED", "Canceled"]].map(([v, t]) => h("option", { value: v, selected: v === filter.status }, t)));
  const pipelineSel = h("select", { class: "input" }, [h("option", { value: "" }, "All pipelines"), ...(info.pipelines || []).map((p) => h("option", { value: p, selected: p === filter.pipeline }, p))]);
  const tbody = h("tbody", { "data-testid": "runs-table" });
  const summary = h("span", { class: "muted" });
  const connection = h("span", { class: "live-dot", title: "Live updates" });

  const matches = (r) => {
    if (filter.status && r.status !== filter.status) return false;
    if (filter.pipeline && r.pipeline_name !== filter.pipeline) return false;
    if (!filter.text) return true;
    const hay = [r.run_id, r.pipeline_name, ...Object.entries(r.tags || {}).map(([k, v]) => `${k}=${v}`)].join(" ").toLowerCase();
    return hay.includes(filter.text);
  };
  const render = () => {
    const now = Date.now() / 1000;
    const shown = runs.filter(matches);
    summary.textContent = `${shown.length} of ${runs.length} runs`;
    tbody.replaceChildren(...shown.map((r) => h("tr", { "data-run": r.run_id, onclick: () => { location.hash = `#/runs/${enc(r.run_id)}`; } }, [
      h("td", {}, statusBadge(r.status)),
      h("td", {}, [
        h("a", { class: "mono", href: `#/runs/${enc(r.run_id)}`, title: r.run_id }, shortId(r.run_id)),
        // A re-execution links to the run it re-executed (the run page links its root too).
        r.parent_run_id ? h("a", { class: "mono parent-of", href: `#/runs/${enc(r.parent_run_id)}`, title: `re-execution of ${r.parent_run_id}`, "data-testid": "run-parent", onclick: (ev) => ev.stopPropagation() }, `↳ ${shortId(r.parent_run_id)}`) : null,
      ]),
      h("td", {}, r.pipeline_name),
      h("td", {}, fmtTime(r.start_time)),
      h("td", {}, r.start_time ? fmtDuration((r.end_time ?? now) - r.start_time) : "—"),
      h("td", {}, tagChips(r.tags)),
    ])));
    if (!shown.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "empty-row" }, runs.length ? "No run matches the filter." : "No runs yet. Launch one from a pipeline's playground.")));
  };
  text.addEventListener("input", () => { filter.text = text.value.toLowerCase(); render(); });
  statusSel.addEventListener("change", () => { filter.status = statusSel.value; render(); });
  pipelineSel.addEventListener("change", () => { filter.pipeline = pipelineSel.value; render(); });

  root.append(h("div", { class: "page" }, [
    h("div", { class: "page-head" }, [h("h1", {}, "Runs"), connection, summary]),
    h("div", { class: "filters" }, [text, statusSel, pipelineSel]),
    h("div", { class: "panel table-panel" }, h("table", { class: "table runs" }, [
      h("thead", {}, h("tr", {}, ["Status", "Run", "Pipeline", "Started", "Duration", "Tags"].map((c) => h("th", {}, c)))),
      tbody,
    ])),
  ]));
  render();

  const source = new EventSource("api/runs/stream?limit=500");
  source.addEventListener("runs", (msg) => { runs = JSON.parse(msg.data).runs; connection.classList.add("on"); render(); });
  source.addEventListener("error", () => connection.classList.remove("on"));
  const timer = setInterval(() => { if (runs.some((r) => r.status === "STARTED")) render(); }, 1000);
  return () => { source.close(); clearInterval(timer); };
}
