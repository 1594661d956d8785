// Keyed reconcile of tool-call cards and data blocks (static/chat/reconcile.js), on stand-in
// nodes that implement just the DOM methods it uses.
import assert from "node:assert/strict";
import { test } from "node:test";

import { reconcileKeyed } from "../reconcile.js";

class Node {
  constructor(name) {
    this.name = name;
    this.parent = null;
    this.children = [];
  }
  get firstElementChild() { return this.children[0] ?? null; }
  get nextElementSibling() {
    const siblings = this.parent?.children ?? [];
    return siblings[siblings.indexOf(this) + 1] ?? null;
  }
  insertBefore(node, before) {
    node.remove();
    const index = before ? this.children.indexOf(before) : this.children.length;
    this.children.splice(index, 0, node);
    node.parent = this;
    return node;
  }
  remove() {
    if (!this.parent) return;
    this.parent.children.splice(this.parent.children.indexOf(this), 1);
    this.parent = null;
  }
}

function run(container, views, entries, log) {
  reconcileKeyed(container, views, entries, (key) => {
    log.push(`create ${key}`);
    return { el: new Node(key) };
  }, (view, value) => {
    view.value = value;
  });
  return container.children.map((n) => n.name);
}

test("it creates one view per key in order, then reuses them in place", () => {
  const container = new Node("tools");
  const views = new Map();
  const log = [];
  assert.deepEqual(run(container, views, [["a", 1], ["b", 2]], log), ["a", "b"]);
  const first = views.get("a");
  assert.deepEqual(run(container, views, [["a", 3], ["b", 4], ["c", 5]], log), ["a", "b", "c"]);
  assert.equal(views.get("a"), first);
  assert.equal(first.value, 3);
  assert.deepEqual(log, ["create a", "create b", "create c"]);
});

test("it reorders existing views and removes those whose key is gone", () => {
  const container = new Node("data");
  const views = new Map();
  const log = [];
  run(container, views, [["a", 1], ["b", 2], ["c", 3]], log);
  const c = views.get("c");
  assert.deepEqual(run(container, views, [["c", 3], ["a", 1]], log), ["c", "a"]);
  assert.equal(views.get("c"), c);
  assert.equal(views.has("b"), false);
  assert.equal(log.length, 3);
});
