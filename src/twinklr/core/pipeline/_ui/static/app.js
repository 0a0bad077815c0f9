// The web view's pages, filled from the JSON API. Every text the user's code produced
// (stage ids, errors, tracebacks) goes into the page through textContent, never markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const BIG_GRAPH = 200;
const GRAPH_LIMIT = 500;  // stages past which a run's graph is summed up, not drawn
const PAGE_ROWS = 200;  // stages a page of the stage table (and of the timeline) shows
const LISTED_ITEMS = 20;  // failed fan-out items named in a stage's row
const TERMINAL = new Set(["succeeded", "cached", "failed", "cancelled", "skipped", "soft_failed", "not_started"]);

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function svgEl(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function took(ms) {
  if (ms === null || ms === undefined) return "-";
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "-";
}

function short(text, width) {
  const line = String(text || "").split(/\s+/).join(" ");
  return line.length <= width ? line : line.slice(0, width - 1) + "…";
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// -- the graph: laid out by dagre, drawn as SVG ---------------------------------------

function drawGraph(svg, stages, markEdge, missing) {
  const graph = new dagre.graphlib.Graph({ multigraph: false });
  // dagre's default ranking (network simplex) draws the tidiest graphs but takes seconds
  // past a few hundred stages; longest-path ranks them in a fraction of that.
  const ranker = stages.length > BIG_GRAPH ? "longest-path" : "network-simplex";
  graph.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 40, marginx: 12, marginy: 12, ranker });
  graph.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(stages.map((stage) => stage.id));
  const byId = new Map(stages.map((stage) => [stage.id, stage]));
  for (const stage of stages) {
    const label = short(stage.id, 32);
    graph.setNode(stage.id, { label, width: 18 + 7 * label.length, height: 28 });
  }
  const phantoms = [];
  for (const stage of stages) {
    for (const input of stage.inputs) {
      if (!ids.has(input)) {
        if (!missing) continue;  // (a recorded run's graph has none)
        ids.add(input);
        phantoms.push({ id: input, inputs: [], missing: true });
        const label = short(input, 32);
        graph.setNode(input, { label, width: 18 + 7 * label.length, height: 28 });
      }
      // A routing stage's edge carries its branch names: laid out with the graph, so
      // no label lies over a node.
      const routes = (byId.get(input) || {}).routes;
      const branches = routes ? Object.keys(routes).filter((b) => routes[b].includes(stage.id)) : [];
      const text = branches.join(" / ");
      graph.setEdge(input, stage.id, text ? { label: text, width: 8 + 6.5 * text.length, height: 14, labelpos: "c" } : {});
    }
  }
  dagre.layout(graph);
  svg.replaceChildren();
  const size = graph.graph();
  const natural = { width: Math.max(size.width || 0, 100), height: Math.max(size.height || 0, 40) };
  // Across the panel's width: a small graph is drawn larger (up to 1.5 times), a wide one
  // at its size (the panel scrolls).
  const panel = (svg.parentElement && svg.parentElement.clientWidth) || natural.width;
  const scale = Math.min(1.5, Math.max(1, (panel - 4) / natural.width));
  svg.setAttribute("viewBox", `0 0 ${natural.width} ${natural.height}`);
  svg.setAttribute("width", (natural.width * scale).toFixed(0));
  svg.setAttribute("height", (natural.height * scale).toFixed(0));
  const edges = svgEl("g", { class: "edges" });
  for (const edge of graph.edges()) {
    const points = graph.edge(edge).points || [];
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    const path = svgEl("path", { d, class: "edge", "marker-end": "url(#arrow)" });
    path.dataset.from = edge.v;
    path.dataset.to = edge.w;
    if (markEdge && markEdge(edge.v, edge.w)) path.classList.add("problem");
    edges.append(path);
    const routes = (byId.get(edge.v) || {}).routes;
    if (routes) {  // a routing stage's edge: its branch names, where the layout put them
      const branches = Object.keys(routes).filter((branch) => routes[branch].includes(edge.w));
      const placed = graph.edge(edge);
      if (branches.length && placed.x !== undefined) {
        path.classList.add("route");
        path.dataset.branches = branches.join(" ");
        const label = svgEl("text", { x: placed.x.toFixed(1), y: placed.y.toFixed(1), class: "branch" });
        label.textContent = branches.join(" / ");
        edges.append(label);
      }
    }
  }
  const defs = svgEl("defs");
  const marker = svgEl("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse",
  });
  marker.append(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8b93a5" }));
  defs.append(marker);
  svg.append(defs, edges);
  const nodes = new Map();
  for (const stage of [...stages, ...phantoms]) {
    const box = graph.node(stage.id);
    const group = svgEl("g", { class: stage.missing ? "node missing" : "node", "data-stage": stage.id });
    if (stage.gate) group.dataset.gate = "1";
    const rect = svgEl("rect", {
      x: (box.x - box.width / 2).toFixed(1), y: (box.y - box.height / 2).toFixed(1),
      width: box.width, height: box.height,
    });
    const text = svgEl("text", { x: (box.x - box.width / 2 + 9).toFixed(1), y: box.y.toFixed(1) });
    text.textContent = box.label;
    const title = svgEl("title");
    title.textContent = stage.id;
    group.append(title, rect, text);
    if (stage.missing) title.textContent = `${stage.id}: no such stage`;
    if (stage.gate) group.classList.add("gate");
    svg.append(group);
    if (!stage.missing) nodes.set(stage.id, group);
  }
  return nodes;
}

function markNode(group, classes, tooltip) {
  const kind = group.dataset.gate ? ["gate"] : [];
  group.setAttribute("class", ["node", ...kind, ...classes].join(" "));
  group.querySelector("title").textContent = tooltip;
}

function legend(container) {
  container.replaceChildren();
  const shown = ["pending", "queued", "running", "waiting", "succeeded", "cached", "failed", "soft_failed", "skipped", "cancelled", "not_started"];
  for (const status of shown) {
    const swatch = el("i", { class: `swatch ${status}` });
    container.append(el("span", {}, swatch, status.replace("_", " ")));
  }
}

// -- the runs list ------------------------------------------------------------------

async function runsPage() {
  const params = new URLSearchParams(location.search);
  const pipelineSelect = document.getElementById("pipeline");
  const statusSelect = document.getElementById("status");
  statusSelect.value = params.get("status") || "";
  const known = new Set();

  async function refresh() {
    const everything = await getJSON("/api/runs?limit=1000");
    for (const run of everything) {
      if (!known.has(run.pipeline)) {
        known.add(run.pipeline);
        pipelineSelect.append(el("option", { value: run.pipeline }, run.pipeline));
      }
    }
    if (params.get("pipeline") && !pipelineSelect.dataset.set) {
      pipelineSelect.value = params.get("pipeline");
      pipelineSelect.dataset.set = "1";
    }
    const query = new URLSearchParams();
    if (pipelineSelect.value) query.set("pipeline", pipelineSelect.value);
    if (statusSelect.value) query.set("status", statusSelect.value);
    query.set("limit", "200");
    const runs = await getJSON(`/api/runs?${query}`);
    const body = document.querySelector("#runs tbody");
    body.replaceChildren(...runs.map((run) => {
      const link = el("a", { href: `/runs/${encodeURIComponent(run.run_id)}` }, run.run_id);
      const badge = el("span", { class: `badge ${run.status}` }, run.status);
      return el("tr", { "data-run": run.run_id, "data-status": run.status },
        el("td", {}, link), el("td", {}, run.pipeline), el("td", {}, badge),
        el("td", {}, when(run.started_at)), el("td", {}, took(run.duration_ms)),
        el("td", {}, run.stage_count), el("td", { class: "error" }, short(run.error, 90)));
    }));
    document.getElementById("empty").hidden = runs.length > 0;
  }

  for (const select of [pipelineSelect, statusSelect]) {
    select.addEventListener("change", () => {
      const query = new URLSearchParams();
      if (pipelineSelect.value) query.set("pipeline", pipelineSelect.value);
      if (statusSelect.value) query.set("status", statusSelect.value);
      history.replaceState(null, "", query.toString() ? `/?${query}` : "/");
      refresh();
    });
  }
  await refresh();
  setInterval(() => refresh().catch(() => {}), 2000);
}

// -- a run's page -------------------------------------------------------------------

function runPage() {
  const runId = decodeURIComponent(location.pathname.split("/").pop());
  document.getElementById("run-id").textContent = runId;
  legend(document.getElementById("legend"));
  let nodes = null;
  let shown = null;  // the run as last rendered (a page turned redraws it)
  let page = 0;
  let drawAnyway = false;
  const drawButton = document.getElementById("draw-graph");
  drawButton.addEventListener("click", () => {
    drawAnyway = true;
    nodes = null;
    drawButton.hidden = true;
    if (shown) render(shown);
  });
  let cancel = document.getElementById("cancel");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    await fetch(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
  });

  function render(run) {
    document.title = `${run.pipeline} ${run.run_id} · twinklr-pipeline`;
    document.getElementById("pipeline").textContent = run.pipeline;
    const status = document.getElementById("status");
    status.textContent = run.status;
    status.className = `badge ${run.status}`;
    document.body.dataset.status = run.status;
    const done = run.stages.filter((stage) => TERMINAL.has(stage.status)).length;
    document.getElementById("facts").textContent =
      `started ${when(run.started_at)} · took ${took(run.duration_ms)} · ` +
      `${done}/${run.stage_count} stages ended · definition ${run.definition} · ` +
      `input ${run.input_fingerprint || "-"}`;
    const runError = document.getElementById("run-error");
    runError.hidden = !run.error;
    runError.textContent = run.error || "";
    cancel.hidden = !run.cancellable;
    shown = run;
    const big = run.graph.length > GRAPH_LIMIT && !drawAnyway;
    if (nodes === null) nodes = big ? new Map() : drawGraph(document.getElementById("graph"), run.graph);
    graphSummary(run.stages, big);
    const critical = new Set(run.critical_path);
    for (const stage of run.stages) {
      const group = nodes.get(stage.id);
      if (!group) continue;
      const classes = [stage.status];
      if (critical.has(stage.id)) classes.push("critical");
      markNode(group, classes, `${stage.id}: ${stage.status}${stage.error ? "\n" + stage.error : ""}`);
      if (stage.items_total) itemsBar(group, stage);
    }
    for (const stage of run.stages) {  // the branches a routing stage took, and the others
      if (stage.branches === null || stage.branches === undefined) continue;
      const taken = new Set(stage.branches);
      for (const path of document.querySelectorAll("#graph path.route")) {
        if (path.dataset.from !== stage.id) continue;
        const on = path.dataset.branches.split(" ").some((branch) => taken.has(branch));
        path.classList.toggle("taken", on);
        path.classList.toggle("untaken", !on);
      }
    }
    gates(runId, run.waiting || []);
    partsOf(run);
    const pages = Math.max(1, Math.ceil(run.stages.length / PAGE_ROWS));
    page = Math.min(page, pages - 1);
    const rows = run.stages.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS);
    pager(run.stages.length, pages, (to) => { page = to; render(shown); });
    stageTable(rows);
    streamed(run.streamed || []);
    failures(run.stages);
    gantt(rows, critical);
  }

  function pager(count, pages, turn) {
    const bar = document.getElementById("stage-pager");
    bar.hidden = pages === 1;
    if (pages === 1) return;
    const button = (label, to) => {
      const node = el("button", { type: "button" }, label);
      node.disabled = to < 0 || to >= pages || to === page;
      node.addEventListener("click", () => turn(to));
      return node;
    };
    const first = page * PAGE_ROWS + 1;
    bar.replaceChildren(button("‹ previous", page - 1), " ",
      el("span", { class: "page" }, `stages ${first}-${Math.min(count, first + PAGE_ROWS - 1)} of ${count}`),
      " ", button("next ›", page + 1));
  }

  const stream = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events`);
  stream.addEventListener("run", (event) => render(JSON.parse(event.data)));
  stream.addEventListener("end", () => stream.close());
  stream.onerror = () => {
    if (stream.readyState === EventSource.CLOSED) {
      getJSON(`/api/runs/${encodeURIComponent(runId)}`).then(render).catch((error) => {
        document.getElementById("run-error").hidden = false;
        document.getElementById("run-error").textContent = String(error);
      });
    }
  };
}

// A resumed run's parts before its last: what each ran, where it waited, and how long
// each gate really waited (from its question to its answer, across the suspension).
function partsOf(run) {
  const segments = run.segments || [];
  document.getElementById("history-section").hidden = segments.length === 0;
  if (!segments.length) return;
  const since = (a, b) => took(new Date(b) - new Date(a));
  const items = segments.map((segment, i) => {
    const ran = segment.stages.map((stage) => `${stage.id} (${stage.status.replace("_", " ")})`);
    const item = el("li", { "data-segment": String(i + 1) },
      `started ${when(segment.started_at)}, ${segment.status} after ${took(segment.duration_ms)}` +
      (ran.length ? `: ran ${ran.join(", ")}` : ""));
    for (const gate of segment.waiting) {
      const answered = (segment.answers || {})[gate.stage_id];
      item.append(el("div", { class: "hint", "data-gate": gate.stage_id },
        `${gate.stage_id} waited for input from ${when(gate.since)}` +
        (answered ? `, answered ${when(answered)} (waited ${since(gate.since, answered)})` : "")));
    }
    return item;
  });
  items.push(el("li", { "data-segment": String(segments.length + 1) },
    `resumed ${when(run.started_at)}: this page (${run.status})`));
  document.getElementById("history").replaceChildren(...items);
}

// A run too big to draw (past GRAPH_LIMIT stages): how many stages are in each state.
function graphSummary(stages, big) {
  const summary = document.getElementById("graph-summary");
  summary.hidden = !big;
  document.getElementById("draw-graph").hidden = !big;
  document.getElementById("graph").parentElement.hidden = big;
  if (!big) return;
  const counts = new Map();
  for (const stage of stages) counts.set(stage.status, (counts.get(stage.status) || 0) + 1);
  summary.replaceChildren(`${stages.length} stages, too many to draw quickly: `,
    ...[...counts].flatMap(([status, count]) => [
      el("span", { class: `badge ${status}`, "data-status": status }, `${count} ${status.replace("_", " ")}`), " "]));
}

// A fan-out stage's node: a bar along its foot of the items ended (one node, however
// many items).
function itemsBar(group, stage) {
  const box = group.querySelector("rect");
  let bar = group.querySelector("rect.items-bar");
  if (!bar) {
    bar = svgEl("rect", { class: "items-bar", height: "3" });
    group.append(bar);
  }
  const ended = stage.items.filter((item) => item.status !== "running").length;
  const width = Number(box.getAttribute("width"));
  bar.setAttribute("x", box.getAttribute("x"));
  bar.setAttribute("y", (Number(box.getAttribute("y")) + Number(box.getAttribute("height")) - 3).toFixed(1));
  bar.setAttribute("width", (width * Math.min(1, ended / stage.items_total)).toFixed(1));
  bar.dataset.ended = String(ended);
}

// A fan-out stage's items: a bar of those ended, and the failed ones by number.
function itemsCell(stage) {
  if (stage.items_total === null || stage.items_total === undefined) return "-";
  const ended = stage.items.filter((item) => item.status !== "running").length;
  const bar = el("progress", { max: String(stage.items_total || 1), value: String(ended) });
  const ok = stage.items.filter((item) => item.status !== "failed" && item.status !== "cancelled").length;
  return el("span", { class: "items" }, bar, ` ${ok}/${stage.items_total}`);
}

function failedItems(stage) {
  const failed = (stage.items || []).filter((item) => item.status === "failed").map((item) => item.index);
  if (!failed.length) return null;
  const named = failed.slice(0, LISTED_ITEMS).join(", ");
  return `failed items: ${named}${failed.length > LISTED_ITEMS ? ` and ${failed.length - LISTED_ITEMS} more` : ""}`;
}

function stageTable(stages) {
  const body = document.querySelector("#stages tbody");
  body.replaceChildren(...stages.map((stage) => {
    const notes = [];
    if (stage.cached) notes.push("from the cache");
    if (stage.attempts > 1 && !stage.error) {
      const earlier = (stage.attempt_errors || []).map((error, i) => `attempt ${i + 1}: ${short(error, 60)}`);
      notes.push(`${stage.status.replace("_", " ")} after ${stage.attempts} attempts${earlier.length ? ` (${earlier.join("; ")})` : ""}`);
    } else if (stage.attempts > 1) notes.push(`${stage.attempts} attempts`);
    if (stage.branches) notes.push(`took ${stage.branches.length ? stage.branches.join(", ") : "no branch"}`);
    const failedList = failedItems(stage);
    if (failedList) notes.push(failedList);
    if (stage.error) notes.push(short(stage.error, 80));
    const items = itemsCell(stage);
    return el("tr", { "data-stage": stage.id, "data-status": stage.status },
      el("td", {}, stage.id), el("td", {}, el("span", { class: `badge ${stage.status}` }, stage.status.replace("_", " "))),
      el("td", {}, stage.started_ms === null ? "-" : `${stage.started_ms.toFixed(1)} ms`),
      el("td", {}, took(stage.duration_ms)), el("td", {}, stage.attempts || "-"),
      el("td", {}, items), el("td", { class: "llm" }, llmUsage(stage.usage)),
      el("td", { class: stage.error ? "error" : "" }, notes.join("; ")));
  }));
}

// What a stage's LLM calls used: tokens, and the cost when it is known.
function llmUsage(usage) {
  if (!usage) return "-";
  const tokens = `${usage.input_tokens + usage.output_tokens} tokens`;
  const cost = usage.cost_usd === null ? "cost unknown" : `$${usage.cost_usd.toFixed(6)}`;
  return `${usage.requests} calls, ${tokens}, ${cost}`;
}

// The text each stage's (and fan-out item's) LLM stream has given so far.
function streamed(texts) {
  document.getElementById("streamed-section").hidden = texts.length === 0;
  const shown = document.getElementById("streamed");
  for (const { stage_id: stageId, item, text } of texts) {
    const key = item === null ? stageId : `${stageId}[${item}]`;
    let box = shown.querySelector(`.stream[data-key="${CSS.escape(key)}"]`);
    if (!box) {
      box = el("div", { class: "stream", "data-key": key, "data-stage": stageId },
        el("h3", {}, key), el("pre", {}));
      shown.append(box);
    }
    const pre = box.querySelector("pre");
    if (pre.textContent !== text) {
      const following = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = text;
      if (following) pre.scrollTop = pre.scrollHeight;  // stays at the end while read there
    }
  }
}

function failures(stages) {
  // Stages that ended in error (one that succeeded after retries says its attempts in
  // the stage table instead).
  const errors = stages.filter((stage) => stage.error);
  const shown = errors.slice(0, 50);  // (a run with thousands of failures: the first)
  document.getElementById("failures-section").hidden = shown.length === 0;
  document.getElementById("failures").replaceChildren(...shown.map((stage) => {
    const box = el("div", { class: "failure", "data-stage": stage.id },
      el("h3", {}, `${stage.id}: ${stage.status}`));
    if (stage.attempts > 1) {
      stage.attempt_errors.forEach((error, i) => box.append(el("p", {}, `attempt ${i + 1}: ${error}`)));
    }
    if (stage.error) box.append(el("p", { class: "error" }, stage.error));
    if (stage.traceback) box.append(el("pre", {}, stage.traceback));
    return box;
  }));
}

function gantt(stages, critical) {
  const svg = document.getElementById("gantt");
  const rows = stages.filter((stage) => stage.started_ms !== null)
    .sort((a, b) => a.started_ms - b.started_ms);
  // From the first stage's start (the run's set-up before it is no stage's time).
  const origin = rows.length ? rows[0].started_ms : 0;
  const end = Math.max(origin + 1, ...rows.map((stage) => stage.finished_ms ?? stage.started_ms));
  const label = 170, width = 900, row = 18;
  svg.setAttribute("width", label + width + 20);
  svg.setAttribute("height", rows.length * row + 30);
  svg.replaceChildren();
  const scale = (ms) => label + ((ms - origin) / (end - origin)) * width;
  rows.forEach((stage, i) => {
    const y = 8 + i * row;
    const finish = stage.finished_ms ?? end;
    const text = svgEl("text", { x: 4, y: y + 7 });
    text.textContent = short(stage.id, 24);
    const bar = svgEl("rect", {
      x: scale(stage.started_ms).toFixed(1), y, height: row - 5,
      width: Math.max(2, scale(finish) - scale(stage.started_ms)).toFixed(1),
      class: `bar ${stage.status}${critical.has(stage.id) ? " critical" : ""}`,
      "data-stage": stage.id,
    });
    const title = svgEl("title");
    title.textContent = `${stage.id}: ${took(stage.duration_ms)}`;
    bar.append(title);
    svg.append(text, bar);
  });
  const axis = svgEl("text", { x: label, y: rows.length * row + 20 });
  axis.textContent = `${took(origin)} … ${took(end)} (${took(end - origin)} from the first stage)`;
  svg.append(axis);
}

// -- a definition's page ------------------------------------------------------------

function definitionPage() {
  const stream = new EventSource("/api/definition/events");
  stream.addEventListener("definition", (event) => {
    const shown = JSON.parse(event.data);
    document.getElementById("target").textContent = shown.target;
    document.getElementById("pipeline").textContent = shown.pipeline || shown.target;
    document.getElementById("version").textContent = shown.version;
    const verdict = document.getElementById("verdict");
    const valid = !shown.error && shown.problems.length === 0;
    const count = shown.problems.length;
    verdict.textContent = shown.error ? "cannot load" : valid ? "valid" : `${count} problem${count === 1 ? "" : "s"}`;
    verdict.className = `badge ${valid ? "valid" : "invalid"}`;
    document.body.dataset.version = shown.version;
    const loadError = document.getElementById("load-error");
    loadError.hidden = !shown.error;
    loadError.textContent = shown.error || "";
    const concerns = new Map();
    const cycles = [];
    for (const problem of shown.problems) {
      for (const id of problem.stages) {
        if (!concerns.has(id)) concerns.set(id, []);
        concerns.get(id).push(problem.message);
      }
      if (problem.message.startsWith("dependency cycle: ")) cycles.push(new Set(problem.stages));
    }
    const inCycle = (a, b) => cycles.some((members) => members.has(a) && members.has(b));
    const nodes = drawGraph(document.getElementById("graph"), shown.stages, inCycle, true);
    for (const [id, group] of nodes) {
      const messages = concerns.get(id) || [];
      markNode(group, messages.length ? ["problem"] : [], [id, ...messages].join("\n"));
    }
    document.getElementById("problems").replaceChildren(...shown.problems.map(
      (problem) => el("li", { "data-stages": problem.stages.join(" ") }, problem.message)));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "runs") runsPage();
  else if (page === "run") runPage();
  else if (page === "definition") definitionPage();
});
