// SessionService over gRPC-Web: the generated stub plus what the Rust client does —
// request ids kept across resends, the conflict-retry loop, the typed helpers.

import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ListValueSchema, ValueSchema, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ErrorInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
import {
  GameSessionSchema,
  SessionOpSchema,
  SessionService,
  type GameSession,
  type SessionOp as PbSessionOp,
} from "./gen/pixsim/session/v1/session_pb.js";
import { applyOps, type JsonObject, type SessionOp } from "./ops.js";

/** A session as the client works with it (ids and versions as numbers: all stay below 2^53). */
export interface Session {
  id: number;
  userId: number;
  sceneId: number;
  currentNodeId: number;
  worldId?: number;
  flags: JsonObject;
  relationships: JsonObject;
  worldTime: number;
  version: number;
  createdAt?: Date;
  updatedAt?: Date;
}

export function fromPb(g: GameSession): Session {
  return {
    id: Number(g.id),
    userId: Number(g.userId),
    sceneId: Number(g.sceneId),
    currentNodeId: Number(g.currentNodeId),
    worldId: g.worldId === undefined ? undefined : Number(g.worldId),
    flags: (g.flags ?? {}) as JsonObject,
    relationships: (g.relationships ?? {}) as JsonObject,
    worldTime: g.worldTime,
    version: Number(g.version),
    createdAt: g.createdAt && timestampDate(g.createdAt),
    updatedAt: g.updatedAt && timestampDate(g.updatedAt),
  };
}

/** The proto form of a typed op. */
export function toPbOp(op: SessionOp): PbSessionOp {
  const value = (() => {
    switch (op.op) {
      case "update_npc_relationship": {
        const { flags, ...stats } = op.patch;
        const list = flags === undefined ? undefined : fromJson(ListValueSchema, flags as JsonValue);
        return { case: "updateNpcRelationship" as const, value: { npcId: BigInt(op.npcId), ...stats, flags: list } };
      }
      case "add_inventory_item":
        return { case: "addInventoryItem" as const, value: { itemId: op.itemId, qty: BigInt(op.qty) } };
      case "remove_inventory_item":
        return { case: "removeInventoryItem" as const, value: { itemId: op.itemId, qty: BigInt(op.qty) } };
      case "update_arc_stage":
        return { case: "updateArcStage" as const, value: { arcId: op.arcId, stage: BigInt(op.stage) } };
      case "mark_scene_seen":
        return { case: "markSceneSeen" as const, value: { arcId: op.arcId, sceneId: BigInt(op.sceneId) } };
      case "update_quest_status":
        return { case: "updateQuestStatus" as const, value: { questId: op.questId, status: op.status } };
      case "increment_quest_steps":
        return { case: "incrementQuestSteps" as const, value: { questId: op.questId, n: BigInt(op.n) } };
      case "trigger_event":
        return { case: "triggerEvent" as const, value: { eventId: op.eventId } };
      case "end_event":
        return { case: "endEvent" as const, value: { eventId: op.eventId } };
      case "set_world_time":
        return { case: "setWorldTime" as const, value: { worldTime: op.worldTime } };
      case "set_flag":
        return {
          case: "setFlag" as const,
          value: { path: op.path, value: op.value === undefined ? undefined : fromJson(ValueSchema, op.value as JsonValue) },
        };
    }
  })();
  return create(SessionOpSchema, { op: value } as never);
}

/** The ErrorInfo every error of the service carries. */
export function errorInfo(e: ConnectError): ErrorInfo | undefined {
  return e.findDetails(ErrorInfoSchema)[0];
}

/** The current session an ABORTED version conflict carries. */
export function conflictSession(e: ConnectError): Session | undefined {
  if (e.code !== Code.Aborted) return undefined;
  const g = e.findDetails(GameSessionSchema)[0];
  return g && fromPb(g);
}

/** Attempts after the first, and their delays: 100, 200, 400 ms plus up to 25 % jitter. */
export interface RetryPolicy {
  maxRetries: number;
  baseMs: number;
  factor: number;
  jitter: number;
}

export const defaultRetryPolicy: RetryPolicy = { maxRetries: 3, baseMs: 100, factor: 2, jitter: 0.25 };

export function delays(p: RetryPolicy): number[] {
  return Array.from({ length: p.maxRetries }, (_, i) => {
    const d = p.baseMs * p.factor ** i;
    return d + Math.random() * d * p.jitter;
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * UNAVAILABLE and DEADLINE_EXCEEDED, and a request that never got an HTTP answer
 * (fetch's network error, which Connect reports as UNKNOWN with the TypeError as its
 * cause): the request may not have arrived; resend it as is.
 */
export const isTransient = (e: unknown) =>
  e instanceof ConnectError &&
  (e.code === Code.Unavailable ||
    e.code === Code.DeadlineExceeded ||
    (e.code === Code.Unknown && e.cause instanceof TypeError));

/** A conflict or outage outlasted the retry policy; `last` is the last session the server reported. */
export class ExhaustedError extends Error {
  constructor(
    readonly attempts: number,
    readonly last: Session | undefined,
    readonly cause: ConnectError,
  ) {
    super(`gave up after ${attempts} attempts: ${cause.message}`);
  }
}

export interface ClientOptions {
  /** `x-user-id`: the development identity (auth mode "none"). */
  userId?: number;
  /** A JWT, sent as `authorization: Bearer …`. */
  token?: string;
  retry?: RetryPolicy;
  /** Another transport (e.g. a Node one in tests); default: gRPC-Web over fetch. */
  transport?: Transport;
}

export class SessionClient {
  readonly stub: Client<typeof SessionService>;
  readonly retry: RetryPolicy;
  /** ABORTED answers, retries, exhaustions so far. */
  readonly stats = { conflicts: 0, retries: 0, exhaustions: 0 };

  constructor(baseUrl: string, options: ClientOptions = {}) {
    const identity: Interceptor = (next) => (req) => {
      if (options.userId !== undefined) req.header.set("x-user-id", String(options.userId));
      if (options.token !== undefined) req.header.set("authorization", `Bearer ${options.token}`);
      return next(req);
    };
    const transport = options.transport ?? createGrpcWebTransport({ baseUrl, interceptors: [identity] });
    this.stub = createClient(SessionService, transport);
    this.retry = options.retry ?? defaultRetryPolicy;
  }

  /** Sends `call` and resends it unchanged on UNAVAILABLE / DEADLINE_EXCEEDED. */
  async resend<T>(call: () => Promise<T>): Promise<T> {
    const waits = delays(this.retry);
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (e) {
        const wait = waits[attempt - 1];
        if (!isTransient(e)) throw e;
        if (wait === undefined) {
          this.stats.exhaustions++;
          throw new ExhaustedError(attempt, undefined, e as ConnectError);
        }
        this.stats.retries++;
        await sleep(wait);
      }
    }
  }

  async create(init: { sceneId: number; entryNodeId: number; worldId?: number; flags?: JsonObject; requestId?: string }): Promise<Session> {
    const requestId = init.requestId ?? crypto.randomUUID();
    const req = {
      sceneId: BigInt(init.sceneId),
      entryNodeId: BigInt(init.entryNodeId),
      worldId: init.worldId === undefined ? undefined : BigInt(init.worldId),
      flags: init.flags,
      requestId,
    };
    return fromPb(await this.resend(() => this.stub.createSession(req)));
  }

  /** A strong read; with `minVersion`, any state at least that new (cheaper: a replica's own copy may answer). */
  async get(sessionId: number, minVersion?: number): Promise<Session> {
    const req = { sessionId: BigInt(sessionId), minVersion: minVersion === undefined ? undefined : BigInt(minVersion) };
    return fromPb(await this.resend(() => this.stub.getSession(req)));
  }

  /**
   * Reads the session, applies `fn` to a copy and sends the changed documents with
   * `expectedVersion`; on ABORTED re-applies `fn` to the session from the error
   * details (no extra read): 3 retries at 100/200/400 ms plus jitter. One request
   * id across every resend of one change.
   */
  async updateWithRetry(sessionId: number, fn: (s: Session) => Session | void): Promise<Session> {
    return this.updateFrom(await this.get(sessionId), fn);
  }

  /**
   * {@link updateWithRetry} from a session already known. One request id for the
   * whole change (pass your own to keep it across calls): a conflicting attempt
   * commits nothing, so the id stays free for the next, and a resend after a lost
   * answer is answered from the server's record.
   */
  async updateFrom(base: Session, fn: (s: Session) => Session | void, requestId: string = crypto.randomUUID()): Promise<Session> {
    const waits = delays(this.retry);
    let current = base;
    for (let attempt = 1; ; attempt++) {
      const next = structuredClone(current);
      const changed = fn(next) ?? next;
      const req = {
        sessionId: BigInt(current.id),
        expectedVersion: BigInt(current.version),
        requestId,
        worldTime: changed.worldTime !== current.worldTime ? changed.worldTime : undefined,
        flags: JSON.stringify(changed.flags) !== JSON.stringify(current.flags) ? changed.flags : undefined,
        relationships:
          JSON.stringify(changed.relationships) !== JSON.stringify(current.relationships) ? changed.relationships : undefined,
      };
      if (req.worldTime === undefined && req.flags === undefined && req.relationships === undefined) return current;
      let failure: ConnectError;
      try {
        return fromPb(await this.resend(() => this.stub.updateSession(req)));
      } catch (e) {
        if (!(e instanceof ConnectError) || e.code !== Code.Aborted) throw e;
        this.stats.conflicts++;
        const server = conflictSession(e);
        if (server === undefined) throw e;
        current = server;
        failure = e;
      }
      const wait = waits[attempt - 1];
      if (wait === undefined) {
        this.stats.exhaustions++;
        throw new ExhaustedError(attempt, current, failure);
      }
      this.stats.retries++;
      await sleep(wait);
    }
  }

  /** MutateSession: the helpers run on the server; without `expectedVersion` it never conflicts. */
  async mutate(sessionId: number, ops: readonly SessionOp[], expectedVersion?: number, requestId?: string): Promise<Session> {
    const req = {
      sessionId: BigInt(sessionId),
      ops: ops.map(toPbOp),
      expectedVersion: expectedVersion === undefined ? undefined : BigInt(expectedVersion),
      requestId: requestId ?? crypto.randomUUID(),
    };
    return fromPb(await this.resend(() => this.stub.mutateSession(req)));
  }

  /** The helpers applied locally (optimistically) and then through the update loop. */
  async apply(base: Session, ops: readonly SessionOp[]): Promise<Session> {
    return this.updateFrom(base, (s) => applyOps(s, ops));
  }

  /** Every new version of the session from `sinceVersion` on (WatchSession). */
  async *watch(sessionId: number, sinceVersion: number, signal?: AbortSignal): AsyncGenerator<Session> {
    const req = { sessionId: BigInt(sessionId), sinceVersion: BigInt(sinceVersion) };
    for await (const g of this.stub.watchSession(req, { signal })) yield fromPb(g);
  }
}
