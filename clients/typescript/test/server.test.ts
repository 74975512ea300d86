// The TypeScript client against a real release server on PostgreSQL, over gRPC-Web.
//   SERVER_BIN (default ../../target/release/session-service), TEST_DATABASE_URL
//   (default postgres://postgres@127.0.0.1:5432/postgres).
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { after, before, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { ExhaustedError, SessionClient, conflictSession, errorInfo, type Session } from "../src/client.js";
import { DeadlineError, OptimisticSession } from "../src/optimistic.js";
import { OpError, addInventoryItem, incrementQuestSteps, removeInventoryItem, triggerEvent } from "../src/ops.js";

const admin = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const bin = process.env.SERVER_BIN ?? new URL("../../../../target/release/session-service", import.meta.url).pathname;
const database = `sstest_ts_${process.pid}`;
let server: ChildProcess;
let url: string;
let port: number;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function start(): ChildProcess {
  return spawn(bin, ["serve"], {
    env: {
      ...process.env,
      DATABASE_URL: admin.replace(/\/[^/?]*(\?|$)/, `/${database}$1`),
      SESSION__SERVER__LISTEN: `127.0.0.1:${port}`,
      SESSION__SERVER__GRPC_WEB: "true",
      SESSION__LOG__FILTER: "warn",
    },
    stdio: "inherit",
  });
}

async function serving(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await new SessionClient(url, { userId: 1 }).stub.listSessions({});
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error("the server did not start");
}

before(async () => {
  execFileSync("psql", [admin, "-qc", `create database ${database}`]);
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  server = start();
  await serving();
});

after(() => {
  server?.kill("SIGTERM");
  execFileSync("psql", [admin, "-qc", `drop database if exists ${database} with (force)`]);
});

const client = () => new SessionClient(url, { userId: 7 });
const counter = (s: Session) => (s.flags.counter as number | undefined) ?? 0;

test("create, update, and a conflict with its details decoded", async () => {
  const c = client();
  const s = await c.create({ sceneId: 1, entryNodeId: 10, flags: { gold: 1 } });
  assert.equal(s.version, 1);
  const u = await c.stub.updateSession({ sessionId: BigInt(s.id), flags: { gold: 2 }, expectedVersion: 1n });
  assert.equal(u.version, 2n);
  const refused = await c.stub.updateSession({ sessionId: BigInt(s.id), flags: { gold: 3 }, expectedVersion: 1n }).catch((e) => e);
  assert.ok(refused instanceof ConnectError);
  assert.equal(refused.code, Code.Aborted);
  assert.equal(errorInfo(refused)?.reason, "VERSION_CONFLICT");
  assert.equal(errorInfo(refused)?.metadata.current_version, "2");
  const current = conflictSession(refused);
  assert.equal(current?.version, 2);
  assert.deepEqual(current?.flags, { gold: 2 });
});

test("8 writers x 25 updateWithRetry increments lose nothing", async () => {
  const c = client();
  const s = await c.create({ sceneId: 1, entryNodeId: 10, flags: { counter: 0 } });
  const writer = async () => {
    const w = client();
    for (let i = 0; i < 25; i++) {
      for (;;) {
        try {
          await w.updateWithRetry(s.id, (x) => void (x.flags.counter = counter(x) + 1));
          break;
        } catch (e) {
          if (!(e instanceof ExhaustedError)) throw e; // contention outlasted the retries: try again
        }
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, writer));
  assert.equal(counter(await c.get(s.id)), 200);
});

test("mutate: 8 x 25 server-side increments all succeed", async () => {
  const c = client();
  const s = await c.create({ sceneId: 1, entryNodeId: 10 });
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 25; i++) await c.mutate(s.id, [incrementQuestSteps("q", 1)]);
    }),
  );
  const done = await c.get(s.id);
  assert.equal((done.flags.quests as Record<string, { stepsCompleted: number }>).q?.stepsCompleted, 200);
});

test("watch streams every new version", async () => {
  const c = client();
  const s = await c.create({ sceneId: 1, entryNodeId: 10 });
  const abort = new AbortController();
  const seen: number[] = [];
  const watching = (async () => {
    for await (const v of c.watch(s.id, s.version, abort.signal)) {
      seen.push(v.version);
      if (v.version >= 4) break;
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  for (let i = 0; i < 3; i++) await c.mutate(s.id, [triggerEvent(`e${i}`)]);
  await watching;
  abort.abort();
  assert.deepEqual(seen.at(-1), 4);
});

test("the optimistic handle shows at once and rolls back a refused edit", async () => {
  const c = client();
  let s = await c.create({ sceneId: 1, entryNodeId: 10 });
  s = await c.mutate(s.id, [addInventoryItem("potion", 1)]);
  const handle = new OptimisticSession(c, s, { watch: false });
  const states: Session[] = [];
  handle.subscribe((state) => states.push(state));
  // Another tab drinks the potion; this tab does not know yet.
  await c.mutate(s.id, [removeInventoryItem("potion", 1)]);
  const answer = handle.apply([removeInventoryItem("potion", 1)]);
  assert.deepEqual((handle.state.flags.inventory as { items: unknown[] }).items, [], "shown at once");
  await assert.rejects(answer, (e: unknown) => e instanceof OpError && e.reason === "INSUFFICIENT_QUANTITY");
  assert.equal(handle.state.version, 3, "rolled back to the server's truth");
  assert.deepEqual(handle.state.flags, (await c.get(s.id)).flags);
  assert.ok(states.length >= 3, "listeners saw the edit and the rollback");
  handle.close();
});

test("offline: the handle says so, an edit resolves at its deadline, stays queued and is sent once", async () => {
  const c = client();
  const s = await c.create({ sceneId: 1, entryNodeId: 10 });
  const handle = new OptimisticSession(c, s, { watch: false, deadlineMs: 800, reconnectMs: 100 });
  const statuses: string[] = [];
  handle.subscribe((_, status) => statuses.push(status.kind));
  const kind = (): string => handle.status.kind;
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  await assert.rejects(handle.apply([incrementQuestSteps("q", 1)]), (e: unknown) => e instanceof DeadlineError && e.kept);
  for (let i = 0; kind() !== "offline"; i++) {
    assert.ok(i < 50, `offline, not ${kind()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(handle.status.kind === "offline" && handle.status.pending, 1);
  server = start();
  await serving();
  for (let i = 0; kind() !== "online"; i++) {
    assert.ok(i < 100, `online again, not ${kind()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const done = await c.get(s.id);
  assert.equal((done.flags.quests as Record<string, { stepsCompleted: number }>).q?.stepsCompleted, 1, "sent once");
  assert.ok(statuses.includes("offline") && statuses.at(-1) === "online", statuses.join(","));
  handle.close();
});
