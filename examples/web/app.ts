// The demo page: one session, shown optimistically, edited with the session helpers.
// Open it twice to see one tab's edits arrive in the other and conflicts resolve.
//   ?server=http://127.0.0.1:50051&session=1&user=7
import {
  OptimisticSession,
  SessionClient,
  addInventoryItem,
  incrementQuestSteps,
  removeInventoryItem,
  updateNpcRelationship,
  type Session,
  type SessionOp,
  type SyncStatus,
} from "../../clients/typescript/src/index.js";

const params = new URLSearchParams(location.search);
const server = params.get("server") ?? "http://127.0.0.1:50051";
const sessionId = Number(params.get("session") ?? "1");
const client = new SessionClient(server, { userId: Number(params.get("user") ?? "7") });
const $ = (id: string) => document.getElementById(id) as HTMLElement;

function render(s: Session, status: SyncStatus): void {
  $("session").textContent = String(s.id);
  $("version").textContent = String(s.version);
  $("status").textContent = status.kind === "offline" ? `offline (${status.pending} waiting)` : status.kind;
  $("status").dataset.kind = status.kind;
  document.body.dataset.version = String(s.version);
  document.body.dataset.pending = String(status.kind === "online" ? 0 : "pending" in status ? status.pending : 1);
  const flags = s.flags as Record<string, unknown>;
  $("inventory").textContent = JSON.stringify((flags.inventory as { items?: unknown })?.items ?? [], null, 1);
  $("quests").textContent = JSON.stringify(flags.quests ?? {}, null, 1);
  $("relationships").textContent = JSON.stringify(s.relationships, null, 1);
}

function showError(e: unknown): void {
  $("error").textContent = e instanceof Error ? e.message : String(e);
}

try {
  const handle = await OptimisticSession.open(client, sessionId);
  handle.subscribe(render);
  const on = (id: string, ops: () => SessionOp[]) =>
    $(id).addEventListener("click", () => handle.apply(ops()).catch(showError));
  on("find-potion", () => [addInventoryItem("potion", 1)]);
  on("drink-potion", () => [removeInventoryItem("potion", 1)]);
  on("quest-step", () => [incrementQuestSteps("main", 1)]);
  on("befriend", () => {
    const mira = handle.state.relationships["npc:1"] as { affinity?: number } | undefined;
    return [updateNpcRelationship(1, { affinity: (mira?.affinity ?? 0) + 10 })];
  });
  document.body.dataset.ready = "true";
} catch (e) {
  showError(e);
  document.body.dataset.ready = "error";
}
