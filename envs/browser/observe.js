// The page as an agent reads it: elements marked with ids (bids) and rendered as text.
//
// Called as a function of one argument, the most characters to return. Every element
// of the document gets a `bid` attribute the first time it is seen: numbers from a
// counter kept on the window, handed out in document order, so the same page in the
// same state marks the same way on every run, and an element keeps its bid while it
// lives. The text is one line an element the agent can name (`[bid] role 'name'` and
// its state), indented under its parent, with the page's text between them; elements
// that are not shown are left out with everything inside them.
(maxChars) => {
  const SKIP = new Set(["SCRIPT", "STYLE", "HEAD", "META", "LINK", "NOSCRIPT", "TEMPLATE", "TITLE"]);
  if (window.__pivotgymBid === undefined) {
    Object.defineProperty(window, "__pivotgymBid", { value: { next: 0 }, enumerable: false });
  }
  const counter = window.__pivotgymBid;
  for (const el of document.querySelectorAll("*")) {
    if (!SKIP.has(el.tagName) && !el.hasAttribute("bid")) el.setAttribute("bid", String(counter.next++));
  }

  const squash = (s) => (s || "").replace(/\s+/g, " ").trim();
  const quote = (s) => "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'";
  const INPUT_ROLES = {
    button: "button", submit: "button", reset: "button", image: "button", checkbox: "checkbox",
    radio: "radio", range: "slider", number: "spinbutton", search: "searchbox",
  };
  const TAG_ROLES = {
    BUTTON: "button", TEXTAREA: "textbox", SELECT: "combobox", OPTION: "option", H1: "heading",
    H2: "heading", H3: "heading", H4: "heading", H5: "heading", H6: "heading", IMG: "img",
    UL: "list", OL: "list", LI: "listitem", TABLE: "table", TR: "row", TD: "cell",
    TH: "columnheader", FORM: "form", NAV: "navigation", MAIN: "main", LABEL: "LabelText",
    DIALOG: "dialog", SUMMARY: "button", FIELDSET: "group", LEGEND: "legend", P: "paragraph",
  };
  const role = (el) => {
    const explicit = el.getAttribute("role");
    if (explicit) {
      const first = explicit.split(" ")[0];
      return ["presentation", "none", "generic"].includes(first) ? null : first;
    }
    if (el.tagName === "A") return el.hasAttribute("href") ? "link" : null;
    if (el.tagName === "INPUT") return INPUT_ROLES[(el.type || "text").toLowerCase()] || "textbox";
    return TAG_ROLES[el.tagName] || null;
  };
  const labelOf = (el) => {
    const aria = el.getAttribute("aria-label");
    if (aria) return squash(aria);
    const by = el.getAttribute("aria-labelledby");
    if (by) return squash(by.split(" ").map((id) => document.getElementById(id)?.textContent).join(" "));
    if (el.tagName !== "FORM" && el.labels && el.labels.length) return squash([...el.labels].map((l) => l.textContent).join(" "));
    return "";
  };
  // Roles whose name is their text: their text is not repeated below them.
  const NAMED_BY_TEXT = new Set(["link", "button", "heading", "option", "LabelText", "listitem",
    "cell", "columnheader", "legend", "paragraph", "tab", "menuitem", "treeitem"]);
  const hidden = (el) => {
    // Attributes, not properties: a form's properties include its fields by name (a
    // field called "hidden" or "title" would stand in for them).
    if (el.hasAttribute("hidden") || el.getAttribute("aria-hidden") === "true") return true;
    if (el.tagName === "INPUT" && el.type === "hidden") return true;
    const style = getComputedStyle(el);
    return style.display === "none" || style.visibility === "hidden";
  };
  const flat = (el) => !el.querySelector("a,button,input,select,textarea,[role],[tabindex]");

  const lines = [];
  let size = 0;
  const emit = (depth, text) => {
    if (size > maxChars) return;
    lines.push("  ".repeat(depth) + text);
    size += text.length + 2 * depth + 1;
  };
  const walk = (node, depth) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        const text = squash(child.textContent);
        if (text) emit(depth, "StaticText " + quote(text));
        continue;
      }
      if (child.nodeType !== Node.ELEMENT_NODE || SKIP.has(child.tagName) || hidden(child)) continue;
      const r = role(child);
      if (!r) {
        // A leaf holding text (a word a page made clickable) is named by its bid.
        const text = child.childElementCount === 0 ? squash(child.textContent) : "";
        if (text) emit(depth, `[${child.getAttribute("bid")}] StaticText ${quote(text)}`);
        else walk(child, depth);
        continue;
      }
      const props = [];
      let name = labelOf(child);
      const byText = NAMED_BY_TEXT.has(r) && flat(child);
      if (!name && byText) name = squash(child.innerText ?? child.textContent);
      if (!name && child.tagName === "IMG") name = squash(child.alt);
      if (!name && child.getAttribute("title")) name = squash(child.getAttribute("title"));
      if (child.tagName === "INPUT" || child.tagName === "TEXTAREA") {
        if (["checkbox", "radio"].includes(child.type)) props.push(`checked=${child.checked}`);
        else if (!["button", "submit", "reset", "image"].includes(child.type)) {
          props.push(`value=${quote(child.type === "password" ? "•".repeat(child.value.length) : child.value)}`);
          if (child.placeholder) props.push(`placeholder=${quote(squash(child.placeholder))}`);
        } else if (!name) name = squash(child.value);
      }
      if (child.tagName === "SELECT") {
        const chosen = [...child.selectedOptions].map((o) => squash(o.textContent));
        props.push(`value=${quote(chosen.join(", "))}`);
      }
      if (child.tagName === "OPTION" && child.selected) props.push("selected");
      if (r === "heading") props.push(`level=${child.tagName.slice(1) || child.getAttribute("aria-level")}`);
      if (child.hasAttribute("disabled")) props.push("disabled");
      if (child.hasAttribute("required")) props.push("required");
      if (child.getAttribute("aria-expanded")) props.push(`expanded=${child.getAttribute("aria-expanded")}`);
      if (child.getAttribute("aria-selected") === "true") props.push("selected");
      if (document.activeElement === child) props.push("focused");
      emit(depth, `[${child.getAttribute("bid")}] ${r} ${quote(name)}${props.length ? " " + props.join(" ") : ""}`);
      if (!byText) walk(child, depth + 1);
    }
  };
  if (document.body) walk(document.body, 0);
  let text = lines.join("\n");
  if (size > maxChars) text = text.slice(0, maxChars) + "\n[... the page goes on; scroll or narrow down to see more ...]";
  return { text, title: document.title };
};
