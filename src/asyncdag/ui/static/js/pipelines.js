// Pipelines list, and one pipeline's graph with the selected solid's details.

import { h, api, enc } from "./dom.js";
import { GraphView, graphToolbar } from "./graph.js";
import { pipelineAutomation } from "./automation.js";

export async function pipelinesPage(root) {
  const { pipelines } = await api("api/pipelines");
  const cards = pipelines.map((p) =>
    h("a", { class: "card pipeline-card", href: `#/pipelines/${enc(p.name)}`, "data-pipeline": p.name }, [
      h("div", { class: "card-title" }, [h("span", { class: "pipeline-icon" }, "◆"), p.name]),
      h("p", { class: "card-desc" }, p.description || "No description."),
      h("div", { class: "card-meta" }, [
        h("span", {}, `${p.step_count} ${p.step_count === 1 ? "solid" : "solids"}`),
        p.resources.length ? h("span", {}, `resources: ${p.resources.join(", ")}`) : null,
        ...Object.entries(p.tags).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)),
      ]),
    ]));
  root.append(h("div", { class: "page" }, [
    h("div", { class: "page-head" }, [h("h1", {}, "Pipelines"), h("span", { class: "muted" }, `${pipelines.length} loaded`)]),
    pipelines.length ? h("div", { class: "card-grid" }, cards) : h("div", { class: "empty-state" }, "No pipelines loaded. Start the UI with -f FILE or -m MODULE."),
  ]));
}

export function pipelineTabs(name, active) {
  return h("div", { class: "tabs" }, [
    h("a", { class: `tab ${active === "graph" ? "active" : ""}`, href: `#/pipelines/${enc(name)}` }, "Overview"),
    h("a", { class: `tab ${active === "playground" ? "active" : ""}`, href: `#/pipelines/${enc(name)}/playground`, "data-testid": "tab-playground" }, "Playground"),
    h("a", { class: "tab", href: `#/runs?pipeline=${enc(name)}` }, "Runs"),
  ]);
}

function kv(label, value) {
  return h("div", { class: "kv" }, [h("div", { class: "kv-k" }, label), h("div", { class: "kv-v" }, value)]);
}

function code(value) { return h("code", {}, value); }

function sourceText(src) {
  if (!src) return "";
  if (src.kind === "output") return `← ${src.node}${src.output !== "result" ? "." + src.output : ""}`;
  if (src.kind === "fan_in") return `← [${src.sources.map(sourceText).map((s) => s.replace("← ", "")).join(", ")}]`;
  if (src.kind === "constant") return `= ${src.value}`;
  if (src.kind === "config") return "from run config";
  return "";
}

export function solidDetails(node) {
  if (!node) return null;
  const policy = node.retry_policy;
  return h("div", { class: "details", "data-testid": "solid-details" }, [
    h("div", { class: "details-head" }, [
      h("h2", {}, node.name),
      node.solid !== node.name ? h("div", { class: "muted small" }, ["solid ", code(node.solid)]) : null,
      h("span", { class: "pill" }, node.is_async ? "async" : "sync"),
    ]),
    h("p", { class: "details-desc" }, node.description || h("span", { class: "muted" }, "No description.")),
    node.count > 1 ? kv("Group", `${node.count.toLocaleString()} solids: ${node.members[0]} … ${node.members[node.members.length - 1]}`) : null,
    h("h3", {}, "Inputs"),
    node.inputs.length
      ? h("table", { class: "mini" }, node.inputs.map((i) => h("tr", {}, [h("td", {}, code(i.name)), h("td", { class: "type" }, i.type), h("td", { class: "muted" }, sourceText(i.source))])))
      : h("div", { class: "muted small" }, "None"),
    h("h3", {}, "Outputs"),
    h("table", { class: "mini" }, node.outputs.map((o) => h("tr", {}, [h("td", {}, code(o.name)), h("td", { class: "type" }, o.type + (o.dynamic ? " · fan-out" : o.required === false ? " · optional" : ""))]))),
    h("h3", {}, "Execution"),
    kv("Pool", node.pool ? code(node.pool) : h("span", { class: "muted" }, "none")),
    node.priority ? kv("Priority", `${node.priority} (higher starts first)`) : null,
    kv("Timeout", node.timeout ? `${node.timeout} s per attempt` : h("span", { class: "muted" }, "none")),
    kv("Retry policy", policy
      ? `${policy.max_retries} retr${policy.max_retries === 1 ? "y" : "ies"}${policy.delay ? `, ${policy.delay}s delay` : ""}${policy.backoff ? `, ${policy.backoff} backoff` : ""}${policy.jitter ? `, ${policy.jitter} jitter` : ""} on ${policy.retry_on.join(", ")}`
      : h("span", { class: "muted" }, "none")),
    kv("Resources", node.required_resources.length ? node.required_resources.map((r) => h("span", { class: "chip" }, r)) : h("span", { class: "muted" }, "none")),
    Object.keys(node.tags).length ? kv("Tags", Object.entries(node.tags).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`))) : null,
    h("h3", {}, "Config schema"),
    node.config_schema
      ? h("pre", { class: "schema" }, JSON.stringify(stripDialect(node.config_schema), null, 2))
      : h("div", { class: "muted small" }, "Takes no config."),
  ]);
}

function stripDialect(schema) { const { $schema, ...rest } = schema; return rest; }

export async function pipelinePage(root, name) {
  // Past a few thousand nodes the server collapses the graph into groups (see graph.js).
  const pipeline = await api(`api/pipelines/${enc(name)}/graph`);
  const nodes = new Map(pipeline.nodes.map((n) => [n.name, n]));
  const side = h("aside", { class: "sidebar" });
  const schedules = h("div", { class: "kv-block" });
  pipelineAutomation(name).then((el) => schedules.replaceChildren(el)).catch(() => {});
  const overview = () => side.replaceChildren(h("div", { class: "details" }, [
    h("h2", {}, pipeline.name),
    h("p", { class: "details-desc" }, pipeline.description || h("span", { class: "muted" }, "No description.")),
    kv("Solids", (pipeline.node_count ?? pipeline.nodes.length).toLocaleString()),
    pipeline.collapsed ? h("p", { class: "muted small hint", "data-testid": "collapsed-note" }, `Drawn as ${pipeline.nodes.length.toLocaleString()} groups: solids that run the same solid in the same place share one node.`) : null,
    kv("Edges", String(pipeline.edges.length)),
    kv("Resources", pipeline.resources.length ? pipeline.resources.map((r) => h("span", { class: "chip" }, r)) : h("span", { class: "muted" }, "none")),
    h("h3", {}, "Schedules and sensors"),
    schedules,
    h("p", { class: "muted small hint" }, "Click a solid to see its inputs, outputs, config schema and execution settings. Drag to pan, scroll to zoom."),
    h("a", { class: "btn primary", href: `#/pipelines/${enc(name)}/playground` }, "Open the playground"),
  ]));
  const canvas = h("div", { class: "graph-wrap" });
  const view = new GraphView(canvas, pipeline, {
    onSelect: (id) => (id ? side.replaceChildren(solidDetails(nodes.get(id))) : overview()),
  });
  overview();
  canvas.append(graphToolbar(view, [...nodes.keys()]));
  root.append(h("div", { class: "page wide" }, [
    h("div", { class: "page-head" }, [h("h1", {}, pipeline.name), pipelineTabs(name, "graph")]),
    h("div", { class: "split" }, [canvas, side]),
  ]));
  return () => view.destroy();
}
