// The single-page shell: routes the URL fragment to a page; each page returns its cleanup.

import { h, api } from "./dom.js";
import { automationPage } from "./automation.js";
import { pipelinesPage, pipelinePage } from "./pipelines.js";
import { playgroundPage } from "./playground.js";
import { runPage } from "./run.js";
import { runsPage } from "./runs.js";

const routes = [
  [/^#?\/?$/, () => ["pipelines", pipelinesPage]],
  [/^#\/pipelines\/([^/]+)$/, (m) => ["pipelines", (root, info) => pipelinePage(root, decodeURIComponent(m[1]), info)]],
  [/^#\/pipelines\/([^/]+)\/playground$/, (m) => ["pipelines", (root, info) => playgroundPage(root, decodeURIComponent(m[1]), info)]],
  [/^#\/runs\/?(\?.*)?$/, () => ["runs", runsPage]],
  [/^#\/runs\/([^/]+)$/, (m) => ["runs", (root, info) => runPage(root, decodeURIComponent(m[1]), info)]],
  [/^#\/automation\/?$/, () => ["automation", automationPage]],
];

let cleanup = null;
let info = { title: "asyncdag", version: "", jaeger_url: null, pipelines: [] };

function notFound(root) {
  root.append(h("div", { class: "page" }, h("div", { class: "empty-state" }, [h("h2", {}, "Page not found"), h("a", { href: "#/" }, "Back to pipelines")])));
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  const root = document.getElementById("main");
  root.replaceChildren();
  const hash = location.hash || "#/";
  let section = null, page = notFound;
  for (const [re, make] of routes) {
    const m = hash.match(re);
    if (m) { [section, page] = make(m); break; }
  }
  for (const a of document.querySelectorAll(".nav a")) a.classList.toggle("active", a.dataset.section === section);
  try {
    cleanup = (await page(root, info)) || null;
  } catch (err) {
    root.replaceChildren(h("div", { class: "page" }, h("div", { class: "alert error" }, err.message)));
  }
}

async function start() {
  try { info = await api("api/info"); } catch { /* the pages report their own errors */ }
  document.title = info.title || "asyncdag";
  document.getElementById("version").textContent = info.version ? `v${info.version}` : "";
  window.addEventListener("hashchange", route);
  route();
}

start();
