// When static/chat/announce.js speaks: a reply leaving "streaming", nothing else (pure rule).
import assert from "node:assert/strict";
import { test } from "node:test";

import { endingNote } from "../announce.js";

test("a reply that ends is announced once, by how it ended", () => {
  assert.equal(endingNote("assistant", "streaming", "completed"), "done");
  assert.equal(endingNote("assistant", "streaming", "failed"), "failed");
  assert.equal(endingNote("assistant", "streaming", "canceled"), "stopped");
  assert.equal(endingNote("assistant", "streaming", "awaiting_input"), "awaiting");
});

test("first renders, user messages and status changes that are not an ending stay silent", () => {
  assert.equal(endingNote("assistant", null, "completed"), null); // a page load shows old replies
  assert.equal(endingNote("assistant", "streaming", "streaming"), null);
  assert.equal(endingNote("assistant", "completed", "completed"), null);
  assert.equal(endingNote("user", "pending", "completed"), null);
  assert.equal(endingNote("assistant", "awaiting_input", "completed"), null);
});
