// The run's event log: filterable, and virtual, so 200,000 events cost a screenful of DOM rows.
//
// The step filter is a text box suggesting step keys, not a list of every step: a
// <select> of 100,000 options would cost more than the log itself.
//
// Rows have a fixed height; a row whose traceback is open is taller by a fixed
// amount.  Offsets are a prefix sum over the filtered rows, rebuilt only when
// the filter or an expansion changes (appending extends it), and the visible
// window is found by binary search.

import { h } from "./dom.js";

const ROW_H = 26;
const TRACE_H = 260;
const OVERSCAN = 12;
const LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };
const STEP_SUGGESTIONS = 500;

function levelName(level) {
  if (level >= 50) return "CRITICAL";
  if (level >= 40) return "ERROR";
  if (level >= 30) return "WARNING";
  if (level >= 20) return "INFO";
  return "DEBUG";
}

function clock(ts) {
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

export function errorText(event) {
  const data = event.data || {};
  let error = data.error;
  if (!error) return null;
  const parts = [];
  while (error) { parts.push(error.traceback || `${error.type}: ${error.message}`); error = error.cause; }
  return parts.join("\nThe above exception was the direct cause of:\n\n");
}

export class EventLog {
  constructor(container) {
    this.events = [];
    this.rows = [];         // indexes into events that pass the filter
    this.offsets = [0];     // offsets[i] = top of row i; offsets[rows.length] = total height
    this.expanded = new Set();
    this.filter = { step: "", level: 0, text: "", type: "" };
    this.steps = new Set();
    this.follow = true;

    this.stepList = h("datalist", { id: `log-steps-${Math.random().toString(36).slice(2)}` });
    this.stepSelect = h("input", { class: "input small", type: "search", placeholder: "All steps", list: this.stepList.id, "data-testid": "log-step" });
    this.stepSelect.addEventListener("change", () => this.setFilter({ step: this.stepSelect.value.trim() }));
    this.stepSelect.addEventListener("search", () => this.setFilter({ step: this.stepSelect.value.trim() }));
    const levelSelect = h("select", { class: "input small", "data-testid": "log-level", onchange: (e) => this.setFilter({ level: Number(e.target.value) }) },
      [["0", "All levels"], ["20", "Info and above"], ["30", "Warnings and errors"], ["40", "Errors"]].map(([v, t]) => h("option", { value: v }, t)));
    const typeSelect = h("select", { class: "input small", onchange: (e) => this.setFilter({ type: e.target.value }) },
      [["", "All events"], ["LOG", "Logs only"], ["STEP", "Step events"], ["RUN", "Run events"]].map(([v, t]) => h("option", { value: v }, t)));
    const text = h("input", { class: "input small grow", type: "search", placeholder: "Filter messages…", "data-testid": "log-text" });
    text.addEventListener("input", () => this.setFilter({ text: text.value.toLowerCase() }));
    this.countEl = h("span", { class: "muted small", "data-testid": "log-count" });
    this.followBox = h("input", { type: "checkbox", checked: true, onchange: (e) => { this.follow = e.target.checked; if (this.follow) this.scrollToEnd(); } });
    const toolbar = h("div", { class: "log-toolbar" }, [this.stepSelect, this.stepList, levelSelect, typeSelect, text, h("label", { class: "small follow" }, [this.followBox, " Follow"]), this.countEl]);

    this.header = h("div", { class: "log-row log-head" }, [h("span", { class: "c-time" }, "Time"), h("span", { class: "c-step" }, "Step"), h("span", { class: "c-type" }, "Event"), h("span", { class: "c-msg" }, "Message")]);
    this.spacer = h("div", { class: "log-spacer" });
    this.win = h("div", { class: "log-window" });
    this.scroller = h("div", { class: "log-scroll", "data-testid": "event-log" }, [this.spacer, this.win]);
    this.scroller.addEventListener("scroll", () => {
      const atEnd = this.scroller.scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - 4;
      if (!atEnd && this.follow && this._userScroll) { this.follow = false; this.followBox.checked = false; }
      this._userScroll = true;
      this.render();
    });
    container.append(toolbar, this.header, this.scroller);
    this.renderSoon = () => { if (!this._raf) this._raf = requestAnimationFrame(() => { this._raf = null; this.render(); }); };
  }

  rowHeight(i) { return this.expanded.has(this.rows[i]) ? ROW_H + TRACE_H : ROW_H; }

  passes(e) {
    const f = this.filter;
    if (f.step && e.step_key !== f.step) return false;
    if (f.level && e.level < f.level) return false;
    if (f.type && !(f.type === "LOG" ? e.type === "LOG" : e.type.startsWith(f.type + "_"))) return false;
    if (f.text && !(e.message || "").toLowerCase().includes(f.text) && !(e.step_key || "").toLowerCase().includes(f.text)) return false;
    return true;
  }

  append(batch) {
    const start = this.events.length;
    for (const e of batch) {
      this.events.push(e);
      if (e.step_key && !this.steps.has(e.step_key)) {
        this.steps.add(e.step_key);
        if (this.steps.size <= STEP_SUGGESTIONS) this.stepList.append(h("option", { value: e.step_key }));
      }
    }
    for (let i = start; i < this.events.length; i++) {
      if (this.passes(this.events[i])) {
        this.rows.push(i);
        this.offsets.push(this.offsets[this.offsets.length - 1] + ROW_H);
      }
    }
    this.afterChange();
  }

  setFilter(change) {
    Object.assign(this.filter, change);
    this.rows = [];
    this.events.forEach((e, i) => { if (this.passes(e)) this.rows.push(i); });
    this.rebuildOffsets();
    this.afterChange();
  }

  rebuildOffsets() {
    this.offsets = [0];
    for (let i = 0; i < this.rows.length; i++) this.offsets.push(this.offsets[i] + this.rowHeight(i));
  }

  afterChange() {
    this.spacer.style.height = `${this.offsets[this.offsets.length - 1]}px`;
    this.countEl.textContent = this.rows.length === this.events.length ? `${this.events.length} events` : `${this.rows.length} of ${this.events.length} events`;
    if (this.follow) this.scrollToEnd();
    this.renderSoon();
  }

  scrollToEnd() { this._userScroll = false; this.scroller.scrollTop = this.scroller.scrollHeight; }

  toggle(index) {
    if (this.expanded.has(index)) this.expanded.delete(index); else this.expanded.add(index);
    this.rebuildOffsets();
    this.spacer.style.height = `${this.offsets[this.offsets.length - 1]}px`;
    this.render();
  }

  render() {
    const top = this.scroller.scrollTop, bottom = top + this.scroller.clientHeight;
    let lo = 0, hi = this.rows.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.offsets[mid + 1] <= top) lo = mid + 1; else hi = mid; }
    const first = Math.max(0, lo - OVERSCAN);
    let last = lo;
    while (last < this.rows.length && this.offsets[last] < bottom) last++;
    last = Math.min(this.rows.length, last + OVERSCAN);
    this.win.style.transform = `translateY(${this.offsets[first] || 0}px)`;
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(this.row(this.rows[i]));
    this.win.replaceChildren(frag);
  }

  row(index) {
    const e = this.events[index];
    const level = levelName(e.level);
    const trace = errorText(e);
    const open = this.expanded.has(index);
    const msg = h("span", { class: "c-msg", title: e.message }, e.message);
    const row = h("div", { class: `log-row lvl-${level.toLowerCase()} t-${e.type.toLowerCase()}`, "data-seq": e.seq }, [
      h("span", { class: "c-time" }, clock(e.timestamp)),
      h("span", { class: "c-step", title: e.step_key || "" }, e.step_key || ""),
      h("span", { class: "c-type" }, h("span", { class: `etype e-${e.type.toLowerCase()}` }, e.type === "LOG" ? level : e.type.replace(/_/g, " "))),
      msg,
    ]);
    if (!trace) return row;
    const toggle = h("button", { class: "btn link small trace-toggle", type: "button", "data-testid": "trace-toggle" }, open ? "Hide traceback" : "Traceback");
    toggle.addEventListener("click", () => this.toggle(index));
    msg.append(" ", toggle);
    if (!open) return row;
    return h("div", { class: "log-entry open" }, [row, h("pre", { class: "traceback", "data-testid": "traceback" }, trace)]);
  }
}

export { LEVELS };
