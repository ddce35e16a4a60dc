// Building the page: everything the console shows is made with DOM calls
// (textContent, never innerHTML), so that no key field can inject markup.

export const $ = (id) => document.getElementById(id);

// el makes an element: props set its class, text, data-/aria- attributes,
// role, title and for, or any other property; children are appended.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title" || k === "for") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// Icons of the row actions (24×24 paths).
const ICONS = {
  edit: "M4 17.3V20h2.7l8-8-2.7-2.7-8 8Zm12.7-7.4a.7.7 0 0 0 0-1l-1.6-1.6a.7.7 0 0 0-1 0l-1.3 1.3 2.7 2.7 1.2-1.4Z",
  history: "M13 3a9 9 0 0 0-9 9H1l3.9 3.9L9 12H6a7 7 0 1 1 2 4.9l-1.4 1.4A9 9 0 1 0 13 3Zm-1 5v5l4.3 2.5.7-1.2-3.5-2.1V8H12Z",
  rotate: "M12 5V2L8 6l4 4V7a5 5 0 1 1-5 5H5a7 7 0 1 0 7-7Z",
  delete: "M7 21a2 2 0 0 1-2-2V7H4V5h5V4h6v1h5v2h-1v12a2 2 0 0 1-2 2H7Zm2-4h2V9H9v8Zm4 0h2V9h-2v8Z",
  disable: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20Zm0 2a8 8 0 0 1 6.3 12.9L7.1 5.7A8 8 0 0 1 12 4Zm-6.3 3.1 11.2 11.2A8 8 0 0 1 5.7 7.1Z",
  enable: "M8 5v14l11-7L8 5Z",
  usage: "M4 20V10h3v10H4Zm6 0V4h3v16h-3Zm6 0v-7h3v7h-3Z",
};
const SVG = "http://www.w3.org/2000/svg";

// iconButton is a row action: an icon, named by aria-label ("Delete
// deploy bot"), which it also shows as a tooltip.
export function iconButton(icon, label, onclick, tone = "") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[icon]);
  svg.append(path);
  return el("button", { type: "button", class: `btn btn-icon ${tone}`, "aria-label": label, title: label, "data-action": icon, onclick }, svg);
}

let toastTimer;

// toast says something for four seconds, politely.
export function toast(message) {
  const t = $("toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}
