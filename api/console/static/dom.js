// DOM building without HTML parsing: API text only ever becomes text nodes or attribute values.

const SAFE_ATTRS = /^(id|class|type|role|title|value|min|max|step|for|name|hidden|disabled|lang|aria-[a-z]+|data-[a-z0-9-]+)$/;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (SAFE_ATTRS.test(key)) {
      node.setAttribute(key, value === true ? "" : String(value));
    } else {
      throw new Error(`el: attribute ${key} is not allowed`);
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replaceChildren(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export function fmt(x, digits = 2) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "—";
}
