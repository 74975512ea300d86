// The session helpers as typed op builders, and their local application: the same
// rules as the server's `domain::ops` (src/domain/ops.rs), checked against the
// shared test vectors that a Rust test writes from that code (test/vectors.json).

/** A JSON value as stored in a session's documents. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** The part of a session the helpers change. */
export interface SessionState {
  flags: JsonObject;
  relationships: JsonObject;
  worldTime: number;
}

export interface NpcPatch {
  affinity?: number;
  trust?: number;
  chemistry?: number;
  tension?: number;
  /** Replaces the entry's `flags` list when present. */
  flags?: Json[];
}

/** One typed change of a session (the proto's SessionOp, by its field names). */
export type SessionOp =
  | { op: "update_npc_relationship"; npcId: number; patch: NpcPatch }
  | { op: "add_inventory_item"; itemId: string; qty: number }
  | { op: "remove_inventory_item"; itemId: string; qty: number }
  | { op: "update_arc_stage"; arcId: string; stage: number }
  | { op: "mark_scene_seen"; arcId: string; sceneId: number }
  | { op: "update_quest_status"; questId: string; status: string }
  | { op: "increment_quest_steps"; questId: string; n: number }
  | { op: "trigger_event"; eventId: string }
  | { op: "end_event"; eventId: string }
  | { op: "set_world_time"; worldTime: number }
  | { op: "set_flag"; path: string; value: Json | undefined };

export const updateNpcRelationship = (npcId: number, patch: NpcPatch): SessionOp => ({ op: "update_npc_relationship", npcId, patch });
export const addInventoryItem = (itemId: string, qty: number): SessionOp => ({ op: "add_inventory_item", itemId, qty });
export const removeInventoryItem = (itemId: string, qty: number): SessionOp => ({ op: "remove_inventory_item", itemId, qty });
export const updateArcStage = (arcId: string, stage: number): SessionOp => ({ op: "update_arc_stage", arcId, stage });
export const markSceneSeen = (arcId: string, sceneId: number): SessionOp => ({ op: "mark_scene_seen", arcId, sceneId });
export const updateQuestStatus = (questId: string, status: string): SessionOp => ({ op: "update_quest_status", questId, status });
export const incrementQuestSteps = (questId: string, n: number): SessionOp => ({ op: "increment_quest_steps", questId, n });
export const triggerEvent = (eventId: string): SessionOp => ({ op: "trigger_event", eventId });
export const endEvent = (eventId: string): SessionOp => ({ op: "end_event", eventId });
export const setWorldTime = (worldTime: number): SessionOp => ({ op: "set_world_time", worldTime });
/** Sets (or with `undefined` removes) the flag at a dot-separated path. */
export const setFlag = (path: string, value: Json | undefined): SessionOp => ({ op: "set_flag", path, value });

/** Why an op was refused, as the server would say it. */
export class OpError extends Error {
  constructor(
    /** `INVALID_ARGUMENT` (a bad argument, `field` names it) or `FAILED_PRECONDITION` (the state refuses, `reason` says why). */
    readonly code: "INVALID_ARGUMENT" | "FAILED_PRECONDITION",
    readonly field: string | undefined,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
  }

  static invalid(field: string, description: string): OpError {
    return new OpError("INVALID_ARGUMENT", field, undefined, `${field}: ${description}`);
  }

  static precondition(reason: string, message: string): OpError {
    return new OpError("FAILED_PRECONDITION", undefined, reason, message);
  }

  /** Prefixes the field of an INVALID_ARGUMENT, e.g. `qty` → `ops[2].add_inventory_item.qty`. */
  inField(prefix: string): OpError {
    if (this.code !== "INVALID_ARGUMENT" || this.field === undefined) return this;
    return OpError.invalid(`${prefix}.${this.field}`, this.message.slice(this.field.length + 2));
  }
}

/** 2^53: integers beyond it are not exact in JSON numbers. */
export const MAX_EXACT_INT = 2 ** 53;

const isObject = (v: Json | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

function nonEmpty(value: string, field: string): string {
  if (value.trim() === "") throw OpError.invalid(field, "must not be empty");
  return value;
}

function exact(value: number, field: string): number {
  if (Math.abs(value) > MAX_EXACT_INT) {
    throw OpError.invalid(field, "must be within ±2^53 (9007199254740992): larger integers are not exact in JSON numbers");
  }
  return value;
}

function positiveQty(qty: number): number {
  if (qty < 1) throw OpError.invalid("qty", "must be at least 1");
  return exact(qty, "qty");
}

function exactTotal(total: number, field: string, what: string): number {
  if (total > MAX_EXACT_INT) throw OpError.invalid(field, `${what} would be ${total}, beyond 2^53 (not exact in JSON numbers)`);
  return total;
}

const badShape = (path: string, want: string) => OpError.precondition("INVALID_STATE", `${path} is not ${want}`);

/** The object at `path` under `root`, created (empty) where missing. */
function objectAt(root: JsonObject, path: string[]): JsonObject {
  let current = root;
  let walked = "flags";
  for (const key of path) {
    walked += `.${key}`;
    if (!(key in current)) current[key] = {};
    const next = current[key];
    if (!isObject(next)) throw badShape(walked, "an object");
    current = next;
  }
  return current;
}

function entry(flags: JsonObject, collection: string, id: string, init: () => JsonObject): JsonObject {
  const parent = objectAt(flags, [collection]);
  if (!(id in parent)) parent[id] = init();
  const found = parent[id];
  if (!isObject(found)) throw badShape(`flags.${collection}.${id}`, "an object");
  return found;
}

function listIn(obj: JsonObject, key: string, path: string): Json[] {
  if (!(key in obj)) obj[key] = [];
  const list = obj[key];
  if (!Array.isArray(list)) throw badShape(path, "a list");
  return list;
}

/** A stored count: an integer within ±2^53. */
function asCount(v: Json | undefined, path: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === "number" && Number.isInteger(v) && Math.abs(v) <= MAX_EXACT_INT) return v;
  throw badShape(path, "an integer within ±2^53");
}

function items(s: SessionState): Json[] {
  return listIn(objectAt(s.flags, ["inventory"]), "items", "flags.inventory.items");
}

const findItem = (list: Json[], id: string) => list.findIndex((i) => isObject(i) && i["id"] === id);

function npc(s: SessionState, npcId: number, patch: NpcPatch): void {
  const key = `npc:${npcId}`;
  if (!(key in s.relationships)) s.relationships[key] = {};
  const found = s.relationships[key];
  if (!isObject(found)) throw badShape(`relationships.${key}`, "an object");
  for (const name of ["affinity", "trust", "chemistry", "tension"] as const) {
    const v = patch[name];
    if (v === undefined) continue;
    if (!Number.isFinite(v)) throw OpError.invalid(name, "must be a finite number");
    found[name] = v;
  }
  if (patch.flags !== undefined) found["flags"] = structuredClone(patch.flags);
}

function addItem(s: SessionState, itemId: string, qty: number): void {
  const id = nonEmpty(itemId, "item_id");
  const n = positiveQty(qty);
  const list = items(s);
  const i = findItem(list, id);
  if (i < 0) {
    list.push({ id, qty: n });
    return;
  }
  const item = list[i] as JsonObject;
  const held = asCount(item["qty"], "flags.inventory.items.qty");
  item["qty"] = exactTotal(held + n, "qty", "the held quantity");
}

function removeItem(s: SessionState, itemId: string, qty: number): void {
  const id = nonEmpty(itemId, "item_id");
  const n = positiveQty(qty);
  const list = items(s);
  const i = findItem(list, id);
  const held = i < 0 ? 0 : asCount((list[i] as JsonObject)["qty"], "flags.inventory.items.qty");
  if (held < n) throw OpError.precondition("INSUFFICIENT_QUANTITY", `cannot remove ${n} of item ${JSON.stringify(id)}: ${held} held`);
  if (held === n) list.splice(i, 1);
  else (list[i] as JsonObject)["qty"] = held - n;
}

function arc(s: SessionState, arcId: string): JsonObject {
  return entry(s.flags, "arcs", nonEmpty(arcId, "arc_id"), () => ({ stage: 0, seenScenes: [] }));
}

function incrementSteps(s: SessionState, questId: string, n: number): void {
  const id = nonEmpty(questId, "quest_id");
  if (n < 1) throw OpError.invalid("n", "must be at least 1");
  const steps = exact(n, "n");
  const quest = entry(s.flags, "quests", id, () => ({ status: "in_progress", stepsCompleted: 0 }));
  const done = asCount(quest["stepsCompleted"], "flags.quests.stepsCompleted");
  quest["stepsCompleted"] = exactTotal(done + steps, "n", "stepsCompleted");
}

function end(s: SessionState, eventId: string): void {
  const events = s.flags["events"];
  if (events === undefined) return;
  if (!isObject(events)) throw badShape("flags.events", "an object");
  const event = events[eventId];
  if (event === undefined) return;
  if (!isObject(event)) throw badShape(`flags.events.${eventId}`, "an object");
  event["active"] = false;
}

function setPath(flags: JsonObject, path: string, value: Json | undefined): void {
  const keys = path.split(".");
  if (keys.some((k) => k === "")) throw OpError.invalid("path", 'must be dot-separated non-empty keys, like "a.b.c"');
  const last = keys.pop() as string;
  if (value !== undefined) {
    objectAt(flags, keys)[last] = structuredClone(value);
    return;
  }
  let current = flags;
  for (const key of keys) {
    const next = current[key];
    if (!isObject(next)) return;
    current = next;
  }
  delete current[last];
}

function applyOne(s: SessionState, op: SessionOp): void {
  switch (op.op) {
    case "update_npc_relationship":
      return npc(s, op.npcId, op.patch);
    case "add_inventory_item":
      return addItem(s, op.itemId, op.qty);
    case "remove_inventory_item":
      return removeItem(s, op.itemId, op.qty);
    case "update_arc_stage": {
      const a = arc(s, op.arcId);
      a["stage"] = exact(op.stage, "stage");
      return;
    }
    case "mark_scene_seen": {
      const scene = exact(op.sceneId, "scene_id");
      const seen = listIn(arc(s, op.arcId), "seenScenes", "flags.arcs.seenScenes");
      if (!seen.includes(scene)) seen.push(scene);
      return;
    }
    case "update_quest_status": {
      const quest = entry(s.flags, "quests", nonEmpty(op.questId, "quest_id"), () => ({ status: "", stepsCompleted: 0 }));
      quest["status"] = nonEmpty(op.status, "status");
      return;
    }
    case "increment_quest_steps":
      return incrementSteps(s, op.questId, op.n);
    case "trigger_event": {
      const events = objectAt(s.flags, ["events"]);
      events[nonEmpty(op.eventId, "event_id")] = { active: true, triggeredAt: s.worldTime };
      return;
    }
    case "end_event":
      return end(s, nonEmpty(op.eventId, "event_id"));
    case "set_world_time":
      if (!Number.isFinite(op.worldTime)) throw OpError.invalid("world_time", "must be a finite number");
      if (op.worldTime < 0) throw OpError.invalid("world_time", "must not be negative");
      s.worldTime = op.worldTime;
      return;
    case "set_flag":
      return setPath(s.flags, op.path, op.value);
  }
}

/** Applies ops in order to a copy; throws an {@link OpError} (and changes nothing) if one is refused. */
export function applyOps<S extends SessionState>(session: S, ops: readonly SessionOp[]): S {
  const next = structuredClone(session);
  ops.forEach((op, i) => {
    try {
      applyOne(next, op);
    } catch (e) {
      throw e instanceof OpError ? e.inField(`ops[${i}].${op.op}`) : e;
    }
  });
  return next;
}
