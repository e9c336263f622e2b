// The segment rule builder: AND/OR groups of ordered conditions, nested groups, typed fields
// (attribute keys and their types come from the contacts' data), operators per type, and a
// live preview (the planner's estimate first, then the exact count and the first 20).
// The tree travels to the server as JSON in #rules-json; the server checks all of it again.
(function () {
  "use strict";
  const root = document.getElementById("builder");
  if (!root) return;
  const hidden = document.getElementById("rules-json");
  const form = hidden.form;
  let vocab = null;
  let model = null;
  let previewSeq = 0;
  let previewTimer = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function option(value, label, selected) {
    const o = el("option", { value: String(value), text: label });
    if (selected) o.selected = true;
    return o;
  }

  // --- the model ------------------------------------------------------------------------

  function emptyGroup(op) { return { type: "group", op: op || "and", children: [] }; }

  function isGroup(n) { return n && n.type === "group" && Array.isArray(n.children); }

  function sane(node) {
    // A tree from the page (perhaps one the server refused) is kept as far as it is a tree.
    if (!isGroup(node)) return emptyGroup();
    return { type: "group", op: node.op === "or" ? "or" : "and",
             children: node.children.filter((c) => c && typeof c === "object")
               .map((c) => (c.type === "group" ? sane(c) : Object.assign({}, c, { type: "condition" }))) };
  }

  function fieldType(cond) {
    if (cond.field === "attribute") return cond.attr_type;
    const f = vocab.fields.find((x) => x.id === cond.field);
    return f ? f.type : "text";
  }

  function opsFor(cond) {
    if (cond.field === "attribute") return vocab.attribute_ops[cond.attr_type] || [];
    const f = vocab.fields.find((x) => x.id === cond.field);
    return f ? f.ops : [];
  }

  function defaultValue(cond) {
    const arity = (vocab.operators[cond.op] || {}).arity;
    const type = fieldType(cond);
    if (arity === "none") return undefined;
    if (arity === "two") return ["", ""];
    if (arity === "many") return [];
    if (arity === "days") return 30;
    if (type === "status") return vocab.statuses[0];
    if (type === "list") return vocab.lists.length ? vocab.lists[0].id : "";
    return "";
  }

  function newCondition() {
    const c = { type: "condition", field: "email", op: "contains" };
    c.value = defaultValue(c);
    return c;
  }

  function changed(structural) {
    hidden.value = JSON.stringify(model);
    if (structural) render();
    schedulePreview();
  }

  // --- rendering ------------------------------------------------------------------------

  function render() {
    root.replaceChildren(renderGroup(model, null, 0));
  }

  function moveButtons(parent, index) {
    const items = parent.children;
    return el("span", { class: "item-tools" },
      el("button", { type: "button", class: "up secondary", title: "Move up", "aria-label": "Move up",
                     text: "↑", onclick: () => { if (index > 0) { [items[index - 1], items[index]] = [items[index], items[index - 1]]; changed(true); } } }),
      el("button", { type: "button", class: "down secondary", title: "Move down", "aria-label": "Move down",
                     text: "↓", onclick: () => { if (index < items.length - 1) { [items[index + 1], items[index]] = [items[index], items[index + 1]]; changed(true); } } }),
      el("button", { type: "button", class: "remove secondary", title: "Remove", "aria-label": "Remove",
                     text: "✕", onclick: () => { items.splice(index, 1); changed(true); } }));
  }

  function renderGroup(group, parent, index) {
    const opSelect = el("select", { class: "group-op", "aria-label": "Combine with",
                                    onchange: (e) => { group.op = e.target.value; changed(false); } },
      option("and", "all of (AND)", group.op === "and"), option("or", "any of (OR)", group.op === "or"));
    const list = el("ol", { class: "group-items" });
    group.children.forEach((child, i) => {
      const body = child.type === "group" ? renderGroup(child, group, i) : renderCondition(child);
      list.append(el("li", {}, body, child.type === "group" ? null : moveButtons(group, i)));
    });
    const head = el("div", { class: "group-head" }, el("span", { text: parent ? "Group: match " : "Contacts matching " }), opSelect,
      parent ? moveButtons(parent, index) : null);
    const tools = el("div", { class: "group-tools" },
      el("button", { type: "button", class: "add-condition secondary", text: "+ condition",
                     onclick: () => { group.children.push(newCondition()); changed(true); } }),
      el("button", { type: "button", class: "add-group secondary", text: "+ group",
                     onclick: () => { const g = emptyGroup(group.op === "and" ? "or" : "and"); g.children.push(newCondition()); group.children.push(g); changed(true); } }));
    if (!parent && !group.children.length) list.append(el("li", { class: "hint", text: "No conditions: every contact matches." }));
    return el("div", { class: parent ? "group nested" : "group root" }, head, list, tools);
  }

  function attributeIndex(cond) {
    return vocab.attributes.findIndex((a) => a.key === cond.key && a.type === cond.attr_type);
  }

  function renderCondition(cond) {
    const fieldSelect = el("select", { class: "field", "aria-label": "Field", onchange: (e) => {
      const v = e.target.value;
      if (v.startsWith("a:")) {
        const a = vocab.attributes[Number(v.slice(2))];
        cond.field = "attribute"; cond.key = a.key; cond.attr_type = a.type;
      } else {
        cond.field = v.slice(2); delete cond.key; delete cond.attr_type;
      }
      cond.op = opsFor(cond)[0]; cond.value = defaultValue(cond); changed(true);
    } });
    const own = el("optgroup", { label: "Contact" });
    for (const f of vocab.fields) own.append(option("f:" + f.id, f.label, cond.field === f.id));
    fieldSelect.append(own);
    if (vocab.attributes.length) {
      const attrs = el("optgroup", { label: "Attributes" });
      const at = cond.field === "attribute" ? attributeIndex(cond) : -1;
      vocab.attributes.forEach((a, i) => attrs.append(option("a:" + i, `${a.key} (${a.type})`, i === at)));
      fieldSelect.append(attrs);
    }
    const opSelect = el("select", { class: "op", "aria-label": "Operator", onchange: (e) => {
      const before = (vocab.operators[cond.op] || {}).arity;
      cond.op = e.target.value;
      if ((vocab.operators[cond.op] || {}).arity !== before) cond.value = defaultValue(cond);
      changed(true);
    } });
    for (const op of opsFor(cond)) opSelect.append(option(op, vocab.operators[op].label, cond.op === op));
    return el("div", { class: "condition" }, fieldSelect, opSelect, renderValue(cond));
  }

  function input(type, value, onValue, cls) {
    const attrs = { class: cls || "value", type: type, "aria-label": "Value" };
    if (type === "number") attrs.step = "any";
    const node = el("input", attrs);
    node.value = value == null ? "" : String(value);
    node.addEventListener("input", () => { onValue(node.value); changed(false); });
    return node;
  }

  function renderValue(cond) {
    const arity = (vocab.operators[cond.op] || {}).arity;
    const type = fieldType(cond);
    const htmlType = type === "number" ? "number" : type === "date" ? "date" : "text";
    if (arity === "none") return null;
    if (arity === "days") {
      const n = input("number", cond.value, (v) => { cond.value = v === "" ? "" : Number(v); });
      n.min = "0"; n.step = "1";
      return el("span", {}, n, el("span", { text: " days" }));
    }
    if (arity === "two") {
      const v = Array.isArray(cond.value) ? cond.value : ["", ""];
      cond.value = v;
      return el("span", {}, input(htmlType, v[0], (x) => { v[0] = x; }), el("span", { text: " and " }),
        input(htmlType, v[1], (x) => { v[1] = x; }, "value2"));
    }
    if (arity === "many") {
      const values = Array.isArray(cond.value) ? cond.value : [];
      cond.value = values;
      if (type === "status") {
        const sel = el("select", { class: "values", multiple: "multiple", "aria-label": "Values", onchange: (e) => {
          cond.value = Array.from(e.target.selectedOptions, (o) => o.value); changed(false); } });
        for (const s of vocab.statuses) sel.append(option(s, s, values.includes(s)));
        return sel;
      }
      const area = el("textarea", { class: "values", rows: "3", "aria-label": "Values, one per line",
                                    placeholder: "one value per line" });
      area.value = values.join("\n");
      area.addEventListener("input", () => { cond.value = area.value.split("\n").filter((x) => x !== ""); changed(false); });
      return area;
    }
    if (type === "status") {
      const sel = el("select", { class: "value", "aria-label": "Value", onchange: (e) => { cond.value = e.target.value; changed(false); } });
      for (const s of vocab.statuses) sel.append(option(s, s, cond.value === s));
      return sel;
    }
    if (type === "list") {
      const sel = el("select", { class: "value", "aria-label": "List", onchange: (e) => { cond.value = Number(e.target.value); changed(false); } });
      if (!vocab.lists.length) sel.append(option("", "(no lists yet)", true));
      for (const l of vocab.lists) sel.append(option(l.id, l.name, Number(cond.value) === l.id));
      return sel;
    }
    const node = input(htmlType, cond.value, (v) => { cond.value = v; });
    if (type === "tags") node.setAttribute("list", "segment-tags");
    return node;
  }

  // --- preview --------------------------------------------------------------------------

  async function post(mode) {
    const r = await fetch(root.dataset.previewUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": root.dataset.csrf },
      body: JSON.stringify({ mode: mode, rules: model }) });
    let data;
    try { data = await r.json(); } catch (e) { data = { error: `the server answered ${r.status}` }; }
    if (!r.ok && !data.error) data.error = `the server answered ${r.status}`;
    return data;
  }

  function showError(message) {
    const p = document.getElementById("preview-error");
    p.hidden = !message;
    p.textContent = message || "";
  }

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(runPreview, 350);
  }

  async function runPreview() {
    const seq = ++previewSeq;
    const count = document.getElementById("preview-count");
    const body = document.querySelector("#preview-sample tbody");
    count.dataset.state = "estimating";
    const est = await post("estimate");
    if (seq !== previewSeq) return;
    if (est.error) {
      showError(est.error); count.textContent = "—"; count.dataset.state = "error"; body.replaceChildren();
      return;
    }
    showError("");
    count.textContent = `about ${est.estimate.toLocaleString()} contacts (estimate; counting…)`;
    count.dataset.state = "estimate";
    const exact = await post("exact");
    if (seq !== previewSeq) return;
    if (exact.error) { showError(exact.error); count.dataset.state = "error"; return; }
    count.textContent = `${exact.matched.toLocaleString()} contacts match (${exact.subscribed.toLocaleString()} subscribed)`;
    count.dataset.state = "exact";
    count.dataset.matched = String(exact.matched);
    body.replaceChildren(...exact.sample.map((c) => el("tr", {},
      el("td", { text: String(c.id) }), el("td", { text: c.email }), el("td", { text: c.name }), el("td", { text: c.status }))));
  }

  // --- start ----------------------------------------------------------------------------

  async function start() {
    try {
      const r = await fetch(root.dataset.vocabularyUrl, { credentials: "same-origin" });
      vocab = await r.json();
    } catch (e) {
      root.textContent = "The builder could not load its fields: reload the page.";
      return;
    }
    let initial = null;
    try { initial = JSON.parse(hidden.value || "null"); } catch (e) { initial = null; }
    model = sane(initial);
    // Attributes a saved rule uses but the data no longer shows stay choosable.
    (function keep(node) {
      if (node.type === "group") return node.children.forEach(keep);
      if (node.field === "attribute" && typeof node.key === "string" && attributeIndex(node) < 0) {
        vocab.attributes.push({ key: node.key, type: node.attr_type });
      }
    })(model);
    const tags = el("datalist", { id: "segment-tags" });
    for (const t of vocab.tags) tags.append(option(t, t));
    document.body.append(tags);
    form.addEventListener("submit", () => { hidden.value = JSON.stringify(model); });
    changed(true);
    root.dataset.ready = "1";
  }

  start();
})();
