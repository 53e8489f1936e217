// The playground: run config as YAML, checked by the server as you type, then "Launch run".

import { h, api, enc, debounce } from "./dom.js";
import { pipelineTabs } from "./pipelines.js";

const drafts = new Map(); // pipeline -> {yaml, tags}: survives moving between tabs

export async function playgroundPage(root, name) {
  const pipeline = await api(`api/pipelines/${enc(name)}`);
  const draft = drafts.get(name) || { yaml: "", tags: [] };
  drafts.set(name, draft);

  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const editor = h("textarea", { class: "editor", spellcheck: "false", "data-testid": "config-editor", placeholder: "# Run config as YAML, for example:\n# solids:\n#   my_solid:\n#     config: {...}\n# execution:\n#   max_concurrency: 4" });
  editor.value = draft.yaml;
  const status = h("div", { class: "validity", "data-testid": "validity" });
  const errorList = h("ul", { class: "errors", "data-testid": "config-errors" });
  const launch = h("button", { class: "btn primary", type: "button", disabled: true, "data-testid": "launch" }, "Launch run");
  const launchError = h("div", { class: "alert error", hidden: true });
  const tagRows = h("div", { class: "tag-rows" });

  const lines = () => {
    const n = editor.value.split("\n").length;
    gutter.textContent = Array.from({ length: n }, (_, i) => i + 1).join("\n");
    gutter.scrollTop = editor.scrollTop;
  };
  editor.addEventListener("scroll", () => { gutter.scrollTop = editor.scrollTop; });
  editor.addEventListener("keydown", (ev) => {
    if (ev.key === "Tab") {
      ev.preventDefault();
      const { selectionStart: s, selectionEnd: e } = editor;
      editor.setRangeText("  ", s, e, "end");
      editor.dispatchEvent(new Event("input"));
    }
  });

  const goToLine = (line) => {
    const offsets = editor.value.split("\n");
    let pos = 0;
    for (let i = 0; i < line - 1 && i < offsets.length; i++) pos += offsets[i].length + 1;
    editor.focus();
    editor.setSelectionRange(pos, pos + (offsets[line - 1] || "").length);
  };

  let valid = false, seq = 0;
  const setStatus = (kind, text) => { status.className = `validity ${kind}`; status.dataset.state = kind; status.textContent = text; };
  const validate = async () => {
    const mine = ++seq;
    setStatus("checking", "Checking…");
    try {
      const result = await api(`api/pipelines/${enc(name)}/validate`, { json: { yaml: editor.value } });
      if (mine !== seq) return;
      valid = result.valid;
      errorList.replaceChildren(...result.errors.map((e) => h("li", { class: "error-item", "data-path": e.path }, [
        h("div", { class: "error-path" }, [h("code", {}, e.path || "(root)"), e.line ? h("button", { class: "btn link small", type: "button", onclick: () => goToLine(e.line) }, `line ${e.line}`) : null]),
        h("div", { class: "error-msg" }, e.message),
      ])));
      if (valid) setStatus("valid", "Config is valid");
      else setStatus("invalid", `${result.errors.length} error${result.errors.length === 1 ? "" : "s"}`);
    } catch (err) {
      if (mine !== seq) return;
      valid = false;
      setStatus("invalid", `Could not check: ${err.message}`);
    }
    launch.disabled = !valid;
  };
  const validateSoon = debounce(validate, 300);
  editor.addEventListener("input", () => {
    draft.yaml = editor.value;
    launch.disabled = true;
    setStatus("checking", "Checking…");
    lines();
    validateSoon();
  });

  const tagRow = (tag) => {
    const key = h("input", { class: "input small", placeholder: "key", value: tag.key, "data-testid": "tag-key" });
    const value = h("input", { class: "input small", placeholder: "value", value: tag.value, "data-testid": "tag-value" });
    key.addEventListener("input", () => { tag.key = key.value; });
    value.addEventListener("input", () => { tag.value = value.value; });
    const row = h("div", { class: "tag-row" }, [key, value, h("button", { class: "btn icon", type: "button", title: "Remove tag", onclick: () => { draft.tags.splice(draft.tags.indexOf(tag), 1); row.remove(); } }, "×")]);
    return row;
  };
  for (const t of draft.tags) tagRows.append(tagRow(t));
  const addTag = h("button", { class: "btn small", type: "button", "data-testid": "add-tag", onclick: () => { const t = { key: "", value: "" }; draft.tags.push(t); tagRows.append(tagRow(t)); } }, "+ Add tag");

  const scaffold = h("button", { class: "btn", type: "button", "data-testid": "scaffold", onclick: async () => {
    const result = await api(`api/pipelines/${enc(name)}/scaffold`);
    editor.value = result.yaml;
    editor.dispatchEvent(new Event("input"));
  } }, "Scaffold config");

  launch.addEventListener("click", async () => {
    launch.disabled = true;
    launchError.hidden = true;
    const tags = Object.fromEntries(draft.tags.filter((t) => t.key.trim()).map((t) => [t.key.trim(), t.value]));
    try {
      const result = await api("api/runs", { json: { pipeline: name, yaml: editor.value, tags } });
      location.hash = `#/runs/${enc(result.run_id)}`;
    } catch (err) {
      launchError.textContent = err.message;
      launchError.hidden = false;
      launch.disabled = !valid;
    }
  });

  root.append(h("div", { class: "page wide" }, [
    h("div", { class: "page-head" }, [h("h1", {}, pipeline.name), pipelineTabs(name, "playground")]),
    h("div", { class: "playground" }, [
      h("section", { class: "panel editor-panel" }, [
        h("div", { class: "panel-head" }, [h("h2", {}, "Run config"), h("span", { class: "muted small" }, "YAML"), h("div", { class: "grow" }), scaffold]),
        h("div", { class: "editor-wrap" }, [gutter, editor]),
      ]),
      h("section", { class: "panel side-panel" }, [
        h("div", { class: "panel-head" }, [h("h2", {}, "Validation")]),
        status,
        errorList,
        h("div", { class: "panel-head" }, [h("h2", {}, "Tags")]),
        tagRows,
        addTag,
        h("div", { class: "launch-bar" }, [launchError, launch]),
      ]),
    ]),
  ]));
  lines();
  validate();
  return () => validateSoon.cancel();
}
