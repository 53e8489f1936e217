// A Gantt chart of step attempts against time, redrawn as events arrive and,
// while the run goes on, on a one-second local clock so running bars grow.
//
// Virtual, like the event log: rows have a fixed height and only those in view
// (plus a margin) exist in the DOM, so a run of 100,000 steps costs a screenful
// of rows.  Rows come in order of each step's first start, which is the order
// the run page hands them over in, so the order is kept by appending.

import { h, fmtDuration } from "./dom.js";

const ROW_H = 24;
const OVERSCAN = 10;

export class Gantt {
  constructor(container) {
    this.scroller = container;
    this.axis = h("div", { class: "gantt-axis" });
    this.window = h("div", { class: "gantt-window" });
    this.body = h("div", { class: "gantt-body", "data-testid": "gantt" }, this.window);
    this.empty = h("div", { class: "gantt-empty muted" }, "No step has started yet.");
    container.append(h("div", { class: "gantt" }, [this.axis, this.body, this.empty]));
    this.order = [];        // step keys, in order of first start
    this.steps = new Map(); // step -> {attempts: [{attempt, start, end, outcome}]}
    this.t0 = null;
    this.end = null;
    this.live = true;
    container.addEventListener("scroll", () => this.drawSoon(), { passive: true });
  }

  // order: step keys in first-start order (appended to as steps start); steps: their attempts.
  update(steps, order, { t0, end, live }) {
    this.steps = steps;
    this.order = order;
    this.t0 = t0;
    this.end = end;
    this.live = live;
    this.drawSoon();
  }

  drawSoon() {
    if (!this._raf) this._raf = requestAnimationFrame(() => { this._raf = null; this.draw(); });
  }

  draw() {
    if (this.t0 === null) return;
    const now = Date.now() / 1000;
    const tMax = this.end ?? (this.live ? now : this.lastSeen());
    const span = Math.max(tMax - this.t0, 0.001);
    const pct = (t) => `${(100 * (t - this.t0)) / span}%`;
    const count = this.order.length;
    this.empty.hidden = count > 0;
    this.body.style.height = `${count * ROW_H}px`;
    const top = Math.max(0, this.scroller.scrollTop - this.body.offsetTop);
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(count, Math.ceil((top + this.scroller.clientHeight) / ROW_H) + OVERSCAN);
    this.window.style.transform = `translateY(${first * ROW_H}px)`;
    const rows = [];
    for (let i = first; i < last; i++) {
      const key = this.order[i];
      const s = this.steps.get(key);
      const bars = s.attempts.map((a) => {
        const stop = a.end ?? (this.live ? now : a.start);
        const outcome = a.outcome || "running";
        const bar = h("div", {
          class: `gantt-bar o-${outcome}`,
          title: `${key} · attempt ${a.attempt} · ${outcome} · ${fmtDuration(stop - a.start)}`,
        });
        // Through the CSSOM, not a style attribute: a strict CSP allows only this.
        bar.style.left = pct(a.start);
        bar.style.width = `max(3px, ${(100 * (stop - a.start)) / span}%)`;
        return bar;
      });
      rows.push(h("div", { class: "gantt-row", "data-step": key }, [h("div", { class: "gantt-label", title: key }, key), h("div", { class: "gantt-track" }, bars)]));
    }
    this.window.replaceChildren(...rows);
    const ticks = 5;
    this.axis.replaceChildren(
      h("div", { class: "gantt-label" }, count > 1000 ? `${count.toLocaleString()} steps` : ""),
      h("div", { class: "gantt-ticks" }, Array.from({ length: ticks + 1 }, (_, i) => {
        const tick = h("span", {}, fmtDuration((span * i) / ticks));
        tick.style.left = `${(100 * i) / ticks}%`;
        return tick;
      })),
    );
  }

  // A finished run without an end time (its process died): the latest attempt's end.
  lastSeen() {
    let t = this.t0;
    for (const key of this.order) for (const a of this.steps.get(key).attempts) t = Math.max(t, a.end ?? a.start);
    return t;
  }
}
