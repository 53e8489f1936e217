// A Gantt chart of step attempts against time, redrawn as events arrive and,
// while the run goes on, on a one-second local clock so running bars grow.

import { h, fmtDuration } from "./dom.js";

export class Gantt {
  constructor(container) {
    this.axis = h("div", { class: "gantt-axis" });
    this.body = h("div", { class: "gantt-body", "data-testid": "gantt" });
    this.empty = h("div", { class: "gantt-empty muted" }, "No step has started yet.");
    container.append(h("div", { class: "gantt" }, [this.axis, this.body, this.empty]));
    this.rows = new Map(); // step -> {el, track, bars: Map(attempt -> el)}
    this.t0 = null;
    this.end = null;
    this.live = true;
    this._dirty = false;
  }

  // steps: Map step -> {attempts: [{attempt, start, end, outcome}]}
  update(steps, { t0, end, live }) {
    this.steps = steps;
    this.t0 = t0;
    this.end = end;
    this.live = live;
    if (!this._raf) this._raf = requestAnimationFrame(() => { this._raf = null; this.draw(); });
  }

  draw() {
    const steps = this.steps;
    if (!steps || this.t0 === null) return;
    const now = Date.now() / 1000;
    let tMax = this.end ?? now;
    for (const s of steps.values()) for (const a of s.attempts) tMax = Math.max(tMax, a.end ?? (this.live ? now : a.start));
    const span = Math.max(tMax - this.t0, 0.001);
    const pct = (t) => `${(100 * (t - this.t0)) / span}%`;
    const ordered = [...steps.entries()].filter(([, s]) => s.attempts.length).sort((a, b) => a[1].attempts[0].start - b[1].attempts[0].start);
    this.empty.hidden = ordered.length > 0;
    for (const [key, s] of ordered) {
      let row = this.rows.get(key);
      if (!row) {
        const track = h("div", { class: "gantt-track" });
        const el = h("div", { class: "gantt-row", "data-step": key }, [h("div", { class: "gantt-label", title: key }, key), track]);
        row = { el, track, bars: new Map() };
        this.rows.set(key, row);
      }
      this.body.append(row.el); // keeps rows in start order; append moves existing nodes
      for (const a of s.attempts) {
        let bar = row.bars.get(a.attempt);
        if (!bar) {
          bar = h("div", { class: "gantt-bar" });
          row.bars.set(a.attempt, bar);
          row.track.append(bar);
        }
        const stop = a.end ?? (this.live ? now : a.start);
        bar.style.left = pct(a.start);
        bar.style.width = `max(3px, ${(100 * (stop - a.start)) / span}%)`;
        bar.className = `gantt-bar o-${a.outcome || "running"}`;
        bar.title = `${key} · attempt ${a.attempt} · ${a.outcome || "running"} · ${fmtDuration(stop - a.start)}`;
      }
    }
    const ticks = 5;
    this.axis.replaceChildren(
      h("div", { class: "gantt-label" }, ""),
      h("div", { class: "gantt-ticks" }, Array.from({ length: ticks + 1 }, (_, i) => h("span", { style: `left:${(100 * i) / ticks}%` }, fmtDuration((span * i) / ticks)))),
    );
  }
}
