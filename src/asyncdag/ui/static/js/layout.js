// Layered DAG layout (Sugiyama-style), computed in the browser.
//
// 1. layers by longest path from the sources, so every edge points down;
// 2. edges spanning several layers get a dummy node per crossed layer, so they
//    route between nodes instead of through them;
// 3. each layer is ordered by the barycentre of its neighbours, sweeping down
//    and up a few times, which removes most crossings;
// 4. x positions are pulled towards the neighbours' mean and then separated,
//    so a chain stays straight and siblings centre under their parent.
// Cost is O((V + E + dummies) * sweeps): a 500-node graph lays out in milliseconds.

export const NODE_H = 46;
const LAYER_GAP = 86;
const NODE_GAP = 28;
const DUMMY_W = 12;
const SWEEPS = 12;

export function nodeWidth(label) {
  return Math.max(150, Math.min(320, 7.4 * label.length + 44));
}

export function layout(nodes, edges) {
  // nodes: [{id, label}], edges: [{from, to, input}]
  const byId = new Map();
  for (const n of nodes) byId.set(n.id, { ...n, w: nodeWidth(n.label), h: NODE_H, dummy: false });
  const preds = new Map(), succs = new Map();
  for (const id of byId.keys()) { preds.set(id, []); succs.set(id, []); }
  const realEdges = edges.filter((e) => byId.has(e.from) && byId.has(e.to) && e.from !== e.to);
  for (const e of realEdges) { preds.get(e.to).push(e.from); succs.get(e.from).push(e.to); }

  // 1. longest-path layering over a topological order (Kahn).
  const indeg = new Map([...byId.keys()].map((id) => [id, preds.get(id).length]));
  const queue = [...byId.keys()].filter((id) => indeg.get(id) === 0);
  const layerOf = new Map(queue.map((id) => [id, 0]));
  const topo = [];
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    topo.push(id);
    for (const s of succs.get(id)) {
      layerOf.set(s, Math.max(layerOf.get(s) ?? 0, layerOf.get(id) + 1));
      indeg.set(s, indeg.get(s) - 1);
      if (indeg.get(s) === 0) queue.push(s);
    }
  }
  for (const id of byId.keys()) if (!layerOf.has(id)) { layerOf.set(id, 0); topo.push(id); } // cycles: never from the engine

  // 2. dummy chains for long edges.
  const adjDown = new Map(), adjUp = new Map();
  const vertex = (id) => { if (!adjDown.has(id)) { adjDown.set(id, []); adjUp.set(id, []); } };
  for (const id of byId.keys()) vertex(id);
  const routes = [];
  let dummyCount = 0;
  for (const e of realEdges) {
    const chain = [e.from];
    for (let l = layerOf.get(e.from) + 1; l < layerOf.get(e.to); l++) {
      const d = `\u0000d${dummyCount++}`;
      byId.set(d, { id: d, label: "", w: DUMMY_W, h: 0, dummy: true });
      layerOf.set(d, l);
      vertex(d);
      chain.push(d);
    }
    chain.push(e.to);
    for (let i = 0; i + 1 < chain.length; i++) { adjDown.get(chain[i]).push(chain[i + 1]); adjUp.get(chain[i + 1]).push(chain[i]); }
    routes.push({ edge: e, chain });
  }

  // 3. barycentre ordering.
  const layerCount = Math.max(0, ...layerOf.values()) + 1;
  const layers = Array.from({ length: layerCount }, () => []);
  const topoIndex = new Map(topo.map((id, i) => [id, i]));
  for (const id of byId.keys()) layers[layerOf.get(id)].push(id);
  for (const layer of layers) layer.sort((a, b) => (topoIndex.get(a) ?? 1e9) - (topoIndex.get(b) ?? 1e9));
  const pos = new Map();
  const renumber = (layer) => layer.forEach((id, i) => pos.set(id, i));
  layers.forEach(renumber);
  const reorder = (layer, adj) => {
    const key = new Map();
    for (const id of layer) {
      const ns = adj.get(id);
      key.set(id, ns.length ? ns.reduce((s, n) => s + pos.get(n), 0) / ns.length : pos.get(id));
    }
    layer.sort((a, b) => key.get(a) - key.get(b) || pos.get(a) - pos.get(b));
    renumber(layer);
  };
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    if (sweep % 2 === 0) for (let l = 1; l < layerCount; l++) reorder(layers[l], adjUp);
    else for (let l = layerCount - 2; l >= 0; l--) reorder(layers[l], adjDown);
  }

  // 4. coordinates: pack, then pull towards neighbours and separate again.
  const x = new Map();
  for (const layer of layers) {
    let cursor = 0;
    for (const id of layer) { const w = byId.get(id).w; x.set(id, cursor + w / 2); cursor += w + NODE_GAP; }
  }
  const separate = (layer) => {
    for (let i = 1; i < layer.length; i++) {
      const a = byId.get(layer[i - 1]), b = byId.get(layer[i]);
      const min = x.get(layer[i - 1]) + (a.w + b.w) / 2 + NODE_GAP;
      if (x.get(layer[i]) < min) x.set(layer[i], min);
    }
    for (let i = layer.length - 2; i >= 0; i--) {
      const a = byId.get(layer[i]), b = byId.get(layer[i + 1]);
      const max = x.get(layer[i + 1]) - (a.w + b.w) / 2 - NODE_GAP;
      if (x.get(layer[i]) > max) x.set(layer[i], max);
    }
  };
  const pull = (layer, adj) => {
    let wanted = 0;
    for (const id of layer) {
      const ns = adj.get(id);
      if (ns.length) x.set(id, ns.reduce((s, n) => s + x.get(n), 0) / ns.length);
      wanted += x.get(id);
    }
    separate(layer);
    // Separating pushes a crowded layer to one side; shift it back so it stays centred
    // on where its nodes want to be, or the drift compounds layer after layer.
    let actual = 0;
    for (const id of layer) actual += x.get(id);
    const shift = (wanted - actual) / (layer.length || 1);
    for (const id of layer) x.set(id, x.get(id) + shift);
  };
  for (let round = 0; round < 6; round++) {
    for (let l = 1; l < layerCount; l++) pull(layers[l], adjUp);
    for (let l = layerCount - 2; l >= 0; l--) pull(layers[l], adjDown);
  }
  let minX = Infinity, maxX = -Infinity;
  for (const [id, cx] of x) { const w = byId.get(id).w; minX = Math.min(minX, cx - w / 2); maxX = Math.max(maxX, cx + w / 2); }
  if (!isFinite(minX)) { minX = 0; maxX = 0; }

  const boxes = new Map();
  for (const [id, n] of byId) {
    if (n.dummy) continue;
    const cx = x.get(id) - minX, top = layerOf.get(id) * (NODE_H + LAYER_GAP);
    boxes.set(id, { id, label: n.label, x: cx - n.w / 2, y: top, w: n.w, h: NODE_H, layer: layerOf.get(id) });
  }

  // Edge routes: leave the source's bottom centre, enter the target at the port of its input.
  const portsOf = new Map();
  for (const r of routes) {
    const list = portsOf.get(r.edge.to) || [];
    if (!list.includes(r.edge.input)) list.push(r.edge.input);
    portsOf.set(r.edge.to, list);
  }
  for (const [id, list] of portsOf) {
    const order = byId.get(id).inputOrder;
    if (order) list.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  }
  const paths = routes.map(({ edge, chain }) => {
    const src = boxes.get(edge.from), dst = boxes.get(edge.to);
    const ports = portsOf.get(edge.to);
    const portX = dst.x + (dst.w * (ports.indexOf(edge.input) + 1)) / (ports.length + 1);
    const points = [[src.x + src.w / 2, src.y + src.h]];
    for (const d of chain.slice(1, -1)) {
      const top = layerOf.get(d) * (NODE_H + LAYER_GAP);
      points.push([x.get(d) - minX, top], [x.get(d) - minX, top + NODE_H]);
    }
    points.push([portX, dst.y]);
    return { ...edge, points, label: { x: portX, y: dst.y - 7 } };
  });
  return {
    nodes: [...boxes.values()],
    edges: paths,
    width: maxX - minX,
    height: layerCount * (NODE_H + LAYER_GAP) - LAYER_GAP,
  };
}

export function pathData(points) {
  // Vertical cubic curves between consecutive points: smooth, and straight when aligned.
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1], [x1, y1] = points[i];
    if (x0 === x1) { d += ` L${x1},${y1}`; continue; }
    const my = (y0 + y1) / 2;
    d += ` C${x0},${my} ${x1},${my} ${x1},${y1}`;
  }
  return d;
}
