// The attachments module's pure parts: sizes, the picker's accept list, the checks before an
// upload, files from a drag or paste, the attach button's state.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MAX_FILES,
  acceptAttribute,
  acceptedTypes,
  attachButtonState,
  checkFiles,
  filesFrom,
  formatSize,
  isImageType,
  pastedName,
  readyAttachments,
  uploadUrl,
  uploading,
} from "../attachments.js";

test("it formats sizes for people", () => {
  assert.equal(formatSize(0), "0 B");
  assert.equal(formatSize(1023), "1023 B");
  assert.equal(formatSize(12 * 1024 + 300), "12 KB");
  assert.equal(formatSize(3.44 * 1024 * 1024), "3.4 MB");
  assert.equal(formatSize(1536, (n) => `<${n}>`), "<2> KB");
  assert.equal(formatSize(-1), "");
  assert.equal(formatSize(Number.NaN), "");
});

test("it reads the agent's accepted types and builds the picker's accept list", () => {
  assert.deepEqual(acceptedTypes({ capabilities: { attachments: ["image/png", 3, "text/csv"] } }), ["image/png", "text/csv"]);
  assert.deepEqual(acceptedTypes({ capabilities: {} }), []);
  assert.deepEqual(acceptedTypes(null), []);
  assert.equal(acceptAttribute(["image/jpeg", "application/json"]), "image/jpeg,.jpg,.jpeg,application/json,.json");
  assert.equal(acceptAttribute([]), "");
  assert.ok(isImageType("image/webp"));
  assert.ok(!isImageType("application/pdf"));
  assert.ok(!isImageType(undefined));
});

test("it refuses empty, too large and too many files before uploading", () => {
  const files = [
    { name: "a.png", size: 10 },
    { name: "empty.txt", size: 0 },
    { name: "big.pdf", size: 101 },
    { name: "b.txt", size: 100 },
  ];
  const { files: ok, errors } = checkFiles(files, { maxBytes: 100 });
  assert.deepEqual(ok.map((f) => f.name), ["a.png", "b.txt"]);
  assert.deepEqual(errors, [
    { key: "attachment_empty", vars: { name: "empty.txt" } },
    { key: "attachment_too_large", vars: { name: "big.pdf" } },
  ]);
  const many = Array.from({ length: 4 }, (_, i) => ({ name: `${i}.txt`, size: 1 }));
  const limited = checkFiles(many, { pending: MAX_FILES - 2 });
  assert.equal(limited.files.length, 2);
  assert.deepEqual(limited.errors, [{ key: "attachments_too_many", vars: { max: MAX_FILES } }]);
});

test("it takes files from a drop's list or a paste's items", () => {
  const a = { name: "a.png" };
  assert.deepEqual(filesFrom({ files: [a] }), [a]);
  const items = [
    { kind: "string", getAsFile: () => null },
    { kind: "file", getAsFile: () => a },
    { kind: "file", getAsFile: () => null },
  ];
  assert.deepEqual(filesFrom({ files: [], items }), [a]);
  assert.deepEqual(filesFrom(null), []);
});

test("it names pasted screenshots", () => {
  assert.equal(pastedName({ name: "image.png", type: "image/png" }), "pasted-image.png");
  assert.equal(pastedName({ name: "", type: "image/jpeg" }, 1), "pasted-image-2.jpg");
  assert.equal(pastedName({ name: "shot.webp", type: "image/webp" }), "shot.webp");
});

test("it says why the attach button is disabled", () => {
  const takes = { id: "c1", capabilities: { attachments: ["image/png"] } };
  assert.deepEqual(attachButtonState(takes), { disabled: false, titleKey: "attach" });
  assert.deepEqual(attachButtonState(takes, { busy: true }), { disabled: true, titleKey: "attach" });
  assert.deepEqual(attachButtonState(takes, { count: MAX_FILES }), { disabled: true, titleKey: "attach" });
  assert.deepEqual(attachButtonState({ id: "c1", capabilities: { attachments: [] } }), { disabled: true, titleKey: "attach_unsupported" });
  assert.deepEqual(attachButtonState({ id: null, capabilities: { attachments: ["image/png"] } }), { disabled: true, titleKey: "attach_after_first" });
});

test("it sends only the uploaded chips and waits for the others", () => {
  const chips = [
    { status: "ready", attachment: { id: "1" } },
    { status: "uploading", attachment: null },
  ];
  assert.deepEqual(readyAttachments(chips), [{ id: "1" }]);
  assert.ok(uploading(chips));
  assert.ok(!uploading(chips.slice(0, 1)));
  assert.equal(uploadUrl("a b"), "/api/v1/conversations/a%20b/attachments");
  assert.equal(uploadUrl(null), "");
});
