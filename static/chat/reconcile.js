// Keyed reconcile: the one way the chat puts a list of parts (tool-call cards, data blocks) in
// the DOM. It only uses the node methods it is given, so `node --test` drives it with stand-ins.

// Keep `container`'s children in the order of `entries` ([key, value] pairs), one view per key
// (`views`: key -> {el, ...}), created once and updated in place so open <details> and
// selections survive re-renders; views whose key is gone are removed.
export function reconcileKeyed(container, views, entries, create, update) {
  const keys = new Set();
  let previous = null;
  for (const [key, value] of entries) {
    keys.add(key);
    let v = views.get(key);
    if (!v) {
      v = create(key);
      views.set(key, v);
    }
    const expected = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== v.el) container.insertBefore(v.el, expected);
    update(v, value);
    previous = v.el;
  }
  for (const [key, v] of views) {
    if (!keys.has(key)) {
      v.el.remove();
      views.delete(key);
    }
  }
}
