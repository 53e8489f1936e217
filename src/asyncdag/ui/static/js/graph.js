// The pipeline graph as SVG: laid out by layout.js, panned by dragging, zoomed by the wheel.
// Edge labels and subtitles hide when zoomed far out, so 500 nodes stay readable.  A graph
// the server collapsed (past a few thousand nodes) arrives as groups: a node per group,
// its subtitle saying how many steps it stands for.  Fitting keeps the graph clear of the
// search and zoom toolbar floating over its top-right corner.

import { layout, pathData } from "./layout.js";
import { svg } from "./dom.js";

const MIN_SCALE = 0.02;
const READABLE_SCALE = 0.5;
const MAX_SCALE = 2.5;
const DETAIL_SCALE = 0.45;

export class GraphView {
  constructor(container, pipeline, { onSelect } = {}) {
    this.container = container;
    this.onSelect = onSelect || (() => {});
    this.nodeEls = new Map();
    this.selected = null;
    this.view = { x: 0, y: 0, k: 1 };
    const nodes = pipeline.nodes.map((n) => ({
      id: n.name,
      label: n.name,
      inputOrder: n.inputs.map((i) => i.name),
      sub: (n.count > 1 ? `${n.solid} · ${n.count.toLocaleString()} steps` : n.solid !== n.name ? n.solid : n.is_async ? "async" : "sync") + (n.mapped_over ? ` · each ${n.mapped_over.node}.${n.mapped_over.output}` : ""),
    }));
    const subs = new Map(nodes.map((n) => [n.id, n.sub]));
    this.layout = layout(nodes, pipeline.edges);

    this.svg = svg("svg", { class: "graph", "data-testid": "graph" });
    const defs = svg("defs", {}, [
      svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, [
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
      ]),
    ]);
    this.viewport = svg("g", { class: "viewport" });
    const edgeLayer = svg("g", { class: "edges" });
    const labelLayer = svg("g", { class: "edge-labels" });
    const nodeLayer = svg("g", { class: "nodes" });
    for (const e of this.layout.edges) {
      edgeLayer.append(svg("path", { d: pathData(e.points), class: "edge", "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
      const text = svg("text", { x: e.label.x, y: e.label.y, class: "edge-label", "text-anchor": "middle" });
      text.textContent = e.input ?? "after";
      labelLayer.append(text);
    }
    for (const b of this.layout.nodes) {
      const g = svg("g", { class: "node", transform: `translate(${b.x},${b.y})`, "data-node": b.id, "data-state": "none", tabindex: "0" });
      g.append(
        svg("rect", { class: "node-box", width: b.w, height: b.h, rx: 8 }),
        svg("rect", { class: "node-stripe", width: 5, height: b.h - 2, x: 1, y: 1, rx: 3 }),
      );
      const name = svg("text", { class: "node-name", x: 16, y: 20 });
      name.textContent = b.label;
      const sub = svg("text", { class: "node-sub", x: 16, y: 36 });
      sub.textContent = subs.get(b.id);
      const title = svg("title");
      title.textContent = b.label;
      g.append(name, sub, title);
      g.addEventListener("click", (ev) => { if (!this.dragged) { ev.stopPropagation(); this.select(b.id); } });
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.select(b.id); });
      this.nodeEls.set(b.id, g);
      nodeLayer.append(g);
    }
    this.viewport.append(edgeLayer, labelLayer, nodeLayer);
    this.svg.append(defs, this.viewport);
    container.append(this.svg);
    this._bindPanZoom();
    this.resizeObserver = new ResizeObserver(() => { if (!this.fitted) this.fit(); });
    this.resizeObserver.observe(container);
    requestAnimationFrame(() => this.fit());
  }

  destroy() {
    this.resizeObserver.disconnect();
    window.removeEventListener("pointermove", this._move);
    window.removeEventListener("pointerup", this._up);
  }

  select(id) {
    if (this.selected) this.nodeEls.get(this.selected)?.classList.remove("selected");
    this.selected = id;
    if (id) this.nodeEls.get(id)?.classList.add("selected");
    this.onSelect(id);
  }

  // A node picked for "Re-execute selected", apart from the one selected to filter the log.
  setPicked(id, on) {
    this.nodeEls.get(id)?.classList.toggle("picked", on);
  }

  setState(id, state) {
    const el = this.nodeEls.get(id);
    if (el && el.dataset.state !== state) el.dataset.state = state;
  }

  centerOn(id) {
    const b = this.layout.nodes.find((n) => n.id === id);
    if (!b) return;
    const { width, height } = this.svg.getBoundingClientRect();
    const k = Math.max(this.view.k, 0.8);
    this._setView(width / 2 - (b.x + b.w / 2) * k, height / 2 - (b.y + b.h / 2) * k, k);
  }

  // Fits the whole graph below the toolbar; a graph too big to read that way (hundreds of
  // nodes) opens at a readable scale on its top layers instead, unless `whole` is asked for.
  fit(whole = false) {
    const { width, height } = this.svg.getBoundingClientRect();
    if (!width || !height) return;
    this.fitted = true;
    const pad = 36;
    const top = Math.max(pad, this.toolbarBottom() + 12);
    const free = height - top - pad;
    const w = this.layout.width + 2 * pad;
    let k = Math.max(MIN_SCALE, Math.min(1.1, width / w, free / Math.max(this.layout.height, 1)));
    if (k >= READABLE_SCALE || whole) {
      const y = top + Math.max(0, (free - this.layout.height * k) / 2);
      this._setView((width - this.layout.width * k) / 2, y, k);
      return;
    }
    k = Math.max(READABLE_SCALE, Math.min(1, width / w));
    const roots = this.layout.nodes.filter((n) => n.layer === 0).map((n) => n.x + n.w / 2).sort((a, b) => a - b);
    const centre = roots.length ? roots[roots.length >> 1] : this.layout.width / 2;
    this._setView(width / 2 - centre * k, top, k);
  }

  // How far down the graph's box the floating toolbar reaches (0 when there is none).
  toolbarBottom() {
    const bar = this.container.querySelector(".graph-toolbar");
    if (!bar) return 0;
    return bar.getBoundingClientRect().bottom - this.svg.getBoundingClientRect().top;
  }

  zoomBy(factor, cx, cy) {
    const rect = this.svg.getBoundingClientRect();
    cx ??= rect.width / 2; cy ??= rect.height / 2;
    const k = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.view.k * factor));
    const f = k / this.view.k;
    this._setView(cx - (cx - this.view.x) * f, cy - (cy - this.view.y) * f, k);
  }

  _setView(x, y, k) {
    this.view = { x, y, k };
    this.viewport.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
    this.svg.classList.toggle("far", k < DETAIL_SCALE);
  }

  _bindPanZoom() {
    let start = null;
    this.svg.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      start = { px: ev.clientX, py: ev.clientY, x: this.view.x, y: this.view.y };
      this.dragged = false;
    });
    window.addEventListener("pointermove", this._move = (ev) => {
      if (!start) return;
      const dx = ev.clientX - start.px, dy = ev.clientY - start.py;
      if (!this.dragged && Math.hypot(dx, dy) < 4) return;
      if (!this.dragged) { this.dragged = true; this.svg.classList.add("panning"); }
      this._setView(start.x + dx, start.y + dy, this.view.k);
    });
    window.addEventListener("pointerup", this._up = () => {
      start = null;
      this.svg.classList.remove("panning");
      setTimeout(() => { this.dragged = false; }, 0);
    });
    this.svg.addEventListener("click", () => { if (!this.dragged) this.select(null); });
    this.svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const rect = this.svg.getBoundingClientRect();
      this.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - rect.left, ev.clientY - rect.top);
    }, { passive: false });
  }
}

export function graphToolbar(view, names) {
  const wrap = document.createElement("div");
  wrap.className = "graph-toolbar";
  const find = document.createElement("input");
  find.type = "search";
  find.placeholder = "Find a solid…";
  find.className = "input small";
  const list = document.createElement("datalist");
  list.id = `solids-${Math.random().toString(36).slice(2)}`;
  for (const n of names) { const o = document.createElement("option"); o.value = n; list.append(o); }
  find.setAttribute("list", list.id);
  find.addEventListener("change", () => { if (names.includes(find.value)) { view.centerOn(find.value); view.select(find.value); } });
  const btn = (label, title, fn) => {
    const b = document.createElement("button");
    b.className = "btn icon"; b.textContent = label; b.title = title; b.type = "button";
    b.addEventListener("click", fn);
    return b;
  };
  wrap.append(find, list, btn("+", "Zoom in", () => view.zoomBy(1.25)), btn("−", "Zoom out", () => view.zoomBy(0.8)), btn("⤢", "Fit the whole graph", () => view.fit(true)));
  return wrap;
}
