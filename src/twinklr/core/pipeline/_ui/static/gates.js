"use strict";
// A run's gates waiting for input: what is asked, its input, and the answer, given as
// it is (Approve), as None (Reject), from a form drawn from the answer type's JSON
// schema, or as JSON edited by hand. Everything shown is set as text, never markup.

const SHOWN_INPUT = 2000;  // characters of a gate's input shown before "Show all"
let shownGates = "";

function gates(runId, waiting) {
  // Redrawn only when the requests change: an edit in progress is not wiped by the
  // next update of the run.
  const key = JSON.stringify(waiting.map((r) => [r.stage_id, r.since, r.refused || ""]));
  if (key === shownGates) return;
  shownGates = key;
  document.getElementById("waiting-section").hidden = waiting.length === 0;
  document.getElementById("waiting").replaceChildren(...waiting.map((request) => gate(runId, request)));
}

function gate(runId, request) {
  const status = el("p", { class: "hint", role: "status" });
  const send = async (action, value) => {
    const response = await fetch(`/api/runs/${encodeURIComponent(runId)}/respond`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ stage_id: request.stage_id, action, value }),
    });
    const answer = await response.json();
    status.className = response.ok ? "hint" : "error";
    status.textContent = response.ok ? `${action}: answered at ${when(answer.answered_at)}` : answer.error;
  };
  const button = (label, action, value) => {
    const node = el("button", { type: "button", "data-action": action }, label);
    node.addEventListener("click", () => {
      let given;
      try { given = value ? value() : null; } catch (error) {
        status.className = "error";
        status.textContent = error.message;
        return;
      }
      send(action, given);
    });
    return node;
  };
  const box = el("div", { class: "gate-request", "data-stage": request.stage_id },
    el("h3", {}, `${request.stage_id}: ${request.prompt}`),
    el("p", { class: "hint" }, `waiting since ${when(request.since)}` +
      (request.answer_type ? ` · the answer must be a ${request.answer_type}` : "")));
  if (request.refused) box.append(el("p", { class: "error refused" }, `refused: ${request.refused}`));
  box.append(inputView(request));
  const form = request.answer_schema ? schemaForm(request.answer_schema, request.input) : null;
  if (form) {
    box.append(form.node, el("p", {}, button("Send the form", "edit", form.value)));
  }
  const editor = el("textarea", { rows: "4", cols: "80", "aria-label": "the answer, as JSON" });
  editor.value = request.input_cut ? "" : JSON.stringify(request.input ?? null, null, 2);
  const edited = () => {
    try { return JSON.parse(editor.value); } catch (error) { throw new Error(`not JSON: ${error.message}`); }
  };
  const asJson = el("details", { class: "gate-json" }, el("summary", {}, "Edit the answer as JSON"),
    editor, el("p", {}, button("Send the edited answer", "edit", edited)));
  asJson.open = !form;  // (with no form, the JSON is the way to edit)
  box.append(
    asJson,
    el("p", {}, button("Approve", "approve"), " ", button("Reject", "reject")),
    status);
  return box;
}

// The gate's input as JSON, its first SHOWN_INPUT characters with a way to see it all.
function inputView(request) {
  const text = request.input_cut
    ? request.input  // cut by the run store: its first part, as text
    : JSON.stringify(request.input ?? null, null, 2);
  const pre = el("pre", { class: "gate-input" });
  const whole = request.input_chars || text.length;
  const view = el("div", { class: "gate-input-box" }, el("p", { class: "hint" }, `input (${whole} characters of JSON)`), pre);
  if (text.length <= SHOWN_INPUT) {
    pre.textContent = text;
    return view;
  }
  pre.textContent = `${text.slice(0, SHOWN_INPUT)}…`;
  const all = el("button", { type: "button", class: "show-all" }, "Show all");
  all.addEventListener("click", () => { pre.textContent = text; all.remove(); });
  view.append(all);
  return view;
}

// A form for an object schema's fields (strings, numbers, booleans, choices; anything
// else as JSON), filled from the input; null when the schema is not an object.
function schemaForm(schema, input) {
  const defs = schema.$defs || {};
  const resolve = (field) => {
    if (field.$ref) return resolve(defs[field.$ref.split("/").pop()] || {});
    const options = field.anyOf || field.oneOf;
    if (options) {
      const chosen = options.find((option) => option.type !== "null");
      return chosen ? { ...resolve(chosen), nullable: options.length > 1 } : field;
    }
    return field;
  };
  const root = resolve(schema);
  if (root.type !== "object" || !root.properties) return null;
  const start = input && typeof input === "object" && !Array.isArray(input) ? input : {};
  const required = new Set(root.required || []);
  const readers = [];
  const node = el("div", { class: "gate-form" });
  for (const [name, raw] of Object.entries(root.properties)) {
    const field = resolve(raw);
    const id = `field-${Math.random().toString(36).slice(2)}`;
    const initial = name in start ? start[name] : raw.default ?? field.default;
    let control;
    let read;
    if (field.enum) {
      control = el("select", { id, name });
      for (const option of field.enum) control.append(el("option", { value: JSON.stringify(option) }, String(option)));
      if (initial !== undefined) control.value = JSON.stringify(initial);
      read = () => JSON.parse(control.value);
    } else if (field.type === "boolean") {
      control = el("input", { id, name, type: "checkbox" });
      control.checked = Boolean(initial);
      read = () => control.checked;
    } else if (field.type === "integer" || field.type === "number") {
      control = el("input", { id, name, type: "number", step: field.type === "integer" ? "1" : "any" });
      if (initial !== undefined && initial !== null) control.value = String(initial);
      read = () => {
        if (control.value === "") return field.nullable ? null : undefined;
        const number = Number(control.value);
        if (Number.isNaN(number)) throw new Error(`${name}: not a number`);
        return number;
      };
    } else if (field.type === "string") {
      control = el("input", { id, name, type: "text" });
      if (initial !== undefined && initial !== null) control.value = String(initial);
      read = () => (control.value === "" && field.nullable ? null : control.value);
    } else {
      control = el("textarea", { id, name, rows: "3", cols: "60" });
      control.value = JSON.stringify(initial ?? null, null, 2);
      read = () => {
        try { return JSON.parse(control.value); } catch (error) { throw new Error(`${name}: not JSON (${error.message})`); }
      };
    }
    node.append(el("p", {}, el("label", { for: id }, `${raw.title || field.title || name}${required.has(name) ? " *" : ""}`), " ", control));
    readers.push([name, read]);
  }
  const value = () => {
    const answer = {};
    for (const [name, read] of readers) {
      const got = read();
      if (got !== undefined) answer[name] = got;
    }
    return answer;
  };
  return { node, value };
}
