// Every shared vector (written by the Rust suite from the server's domain::ops,
// tests/vectors.rs) holds for the TypeScript helpers too.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { OpError, applyOps, type Json, type JsonObject, type SessionOp } from "../src/ops.js";

interface Vector {
  session: string;
  start: { flags: JsonObject; relationships: JsonObject; worldTime: number };
  ops: Record<string, Json>[];
  expect: { ok: { flags: JsonObject; relationships: JsonObject; worldTime: number } } | { error: { code: string; field?: string; reason?: string } };
}

const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** The Rust serde form of an op (`{"op": "add_inventory_item", "item_id": …}`) as a TypeScript op. */
function op(raw: Record<string, Json>): SessionOp {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === "patch" && v && typeof v === "object" && !Array.isArray(v)) {
      out.patch = Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null));
    } else if (k === "value") {
      out.value = v === null ? undefined : v;
    } else {
      out[k === "op" ? k : camel(k)] = v;
    }
  }
  return out as unknown as SessionOp;
}

const vectors: Vector[] = JSON.parse(readFileSync(new URL("../../test/vectors.json", import.meta.url), "utf8"));

test("the vectors are there", () => assert.ok(vectors.length > 100, `${vectors.length} vectors`));

for (const [i, v] of vectors.entries()) {
  test(`vector ${i}: ${v.session} + ${v.ops.map((o) => o.op).join(", ")}`, () => {
    const start = { ...v.start };
    const run = () => applyOps(start, v.ops.map(op));
    if ("ok" in v.expect) {
      assert.deepStrictEqual(run(), v.expect.ok);
    } else {
      const want = v.expect.error;
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof OpError, String(e));
        assert.equal(e.code, want.code);
        if (want.field !== undefined) assert.equal(e.field, want.field);
        if (want.reason !== undefined) assert.equal(e.reason, want.reason);
        return true;
      });
    }
  });
}
