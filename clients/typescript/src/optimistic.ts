// OptimisticSession for a browser tab: what the UI shows is "server truth + pending
// mutations, in order", at once; mutations go to the server one at a time, in order;
// a refused one is rolled back; WatchSession keeps the server truth current; while
// the server is unreachable the handle says Offline and mutations wait (bounded),
// each resolving at its deadline if one is set. The same behaviour as the Rust
// handle (src/client/optimistic).

import { ExhaustedError, isTransient, type Session, type SessionClient } from "./client.js";
import { applyOps, type SessionOp } from "./ops.js";

export type SyncStatus =
  | { kind: "online" }
  | { kind: "syncing" }
  | { kind: "offline"; since: Date; pending: number };

export interface OptimisticOptions {
  /** Mutations that may wait at once; beyond it `apply` rejects with QueueFullError. */
  maxPending?: number;
  /** Keep the server truth current with WatchSession (other tabs' edits appear). */
  watch?: boolean;
  /** How long to wait before trying an unreachable server again (ms). */
  reconnectMs?: number;
  /** How long an `apply` promise waits for the server (ms); then it rejects with DeadlineError. */
  deadlineMs?: number;
  /** At the deadline: keep the mutation queued (default) or drop it and roll it back. */
  atDeadline?: "keep" | "drop";
}

export class QueueFullError extends Error {
  constructor() {
    super("too many pending mutations");
  }
}

export class DeadlineError extends Error {
  constructor(readonly kept: boolean) {
    super(`no answer from the server within the deadline; the mutation ${kept ? "stays queued" : "was dropped"}`);
  }
}

interface Pending {
  id: number;
  ops: SessionOp[];
  requestId: string;
  settle: (result: { ok: Session } | { err: unknown }) => void;
}

export class OptimisticSession {
  private confirmed: Session;
  private readonly pending: Pending[] = [];
  private nextId = 0;
  private offlineSince: Date | undefined;
  private readonly listeners = new Set<(state: Session, status: SyncStatus) => void>();
  private readonly options: Required<OptimisticOptions>;
  private readonly abort = new AbortController();
  private sending = false;

  constructor(
    private readonly client: SessionClient,
    session: Session,
    options: OptimisticOptions = {},
  ) {
    this.confirmed = session;
    this.options = {
      maxPending: options.maxPending ?? 64,
      watch: options.watch ?? true,
      reconnectMs: options.reconnectMs ?? 500,
      deadlineMs: options.deadlineMs ?? 0,
      atDeadline: options.atDeadline ?? "keep",
    };
    if (this.options.watch) void this.follow();
  }

  static async open(client: SessionClient, sessionId: number, options?: OptimisticOptions): Promise<OptimisticSession> {
    return new OptimisticSession(client, await client.get(sessionId), options);
  }

  /** What the UI should show now. */
  get state(): Session {
    let view = this.confirmed;
    for (const p of this.pending) {
      try {
        view = applyOps(view, p.ops);
      } catch {
        // no longer applies: skipped in the view, the server will refuse it
      }
    }
    return view;
  }

  get status(): SyncStatus {
    if (this.offlineSince) return { kind: "offline", since: this.offlineSince, pending: this.pending.length };
    return this.pending.length === 0 ? { kind: "online" } : { kind: "syncing" };
  }

  /** The last state the server confirmed. */
  get serverState(): Session {
    return this.confirmed;
  }

  /** Mutations not yet confirmed, oldest first. */
  get pendingOps(): SessionOp[][] {
    return this.pending.map((p) => p.ops);
  }

  /** Calls `listener` with the state and status now and after every change; returns the unsubscribe. */
  subscribe(listener: (state: Session, status: SyncStatus) => void): () => void {
    this.listeners.add(listener);
    listener(this.state, this.status);
    return () => this.listeners.delete(listener);
  }

  /** Stops watching and sending. */
  close(): void {
    this.abort.abort();
    this.listeners.clear();
  }

  /**
   * Shows the mutation at once and queues it. Resolves with the server's session, or
   * rejects with the error after rolling back (or, with a deadline, with DeadlineError).
   */
  apply(ops: SessionOp[]): Promise<Session> {
    if (this.pending.length >= this.options.maxPending) return Promise.reject(new QueueFullError());
    try {
      applyOps(this.state, ops); // refused before it is shown if it cannot apply even locally
    } catch (e) {
      return Promise.reject(e);
    }
    const id = this.nextId++;
    const answer = new Promise<Session>((resolve, reject) => {
      const settle = (r: { ok: Session } | { err: unknown }) => ("ok" in r ? resolve(r.ok) : reject(r.err));
      this.pending.push({ id, ops, requestId: crypto.randomUUID(), settle });
    });
    this.publish();
    void this.send();
    const deadline = this.options.deadlineMs;
    if (deadline <= 0) return answer;
    return Promise.race([
      answer,
      new Promise<Session>((_, reject) =>
        setTimeout(() => {
          const kept = this.options.atDeadline === "keep";
          if (!kept) this.remove(id);
          reject(new DeadlineError(kept));
        }, deadline),
      ),
    ]);
  }

  private publish(): void {
    const state = this.state;
    const status = this.status;
    for (const l of this.listeners) l(state, status);
  }

  private confirm(server: Session): void {
    if (server.version >= this.confirmed.version) this.confirmed = server;
  }

  private remove(id: number): void {
    const i = this.pending.findIndex((p) => p.id === id);
    if (i >= 0) this.pending.splice(i, 1);
    this.publish();
  }

  /** The sender: one mutation at a time, in order; waits out outages. */
  private async send(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (let p = this.pending[0]; p !== undefined && !this.abort.signal.aborted; p = this.pending[0]) {
        const result = await this.deliver(p);
        if (!this.pending.includes(p)) continue; // dropped at its deadline
        if ("ok" in result) this.confirm(result.ok);
        else if (result.err instanceof ExhaustedError && result.err.last) this.confirm(result.err.last);
        this.pending.shift();
        this.publish();
        p.settle(result);
      }
    } finally {
      this.sending = false;
    }
  }

  private async deliver(p: Pending): Promise<{ ok: Session } | { err: unknown }> {
    for (;;) {
      if (!this.pending.includes(p)) return { err: new DeadlineError(false) };
      try {
        const ok = await this.client.updateFrom(this.confirmed, (s) => applyOps(s, p.ops), p.requestId);
        this.reached(true);
        return { ok };
      } catch (err) {
        const unreachable = isTransient(err) || (err instanceof ExhaustedError && isTransient(err.cause));
        if (!unreachable) {
          this.reached(true);
          // Refused: roll back onto the server's truth as it is now.
          await this.client.get(this.confirmed.id, this.confirmed.version).then(
            (now) => this.confirm(now),
            () => undefined,
          );
          return { err };
        }
        this.reached(false);
        await new Promise((r) => setTimeout(r, this.options.reconnectMs));
      }
    }
  }

  private reached(online: boolean): void {
    const before = this.offlineSince;
    this.offlineSince = online ? undefined : (before ?? new Date());
    if (before !== this.offlineSince) this.publish();
  }

  /** Keeps the server truth current from WatchSession, reconnecting after failures. */
  private async follow(): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        const known = this.confirmed;
        for await (const s of this.client.watch(known.id, known.version, this.abort.signal)) {
          if (s.version > this.confirmed.version) {
            this.confirm(s);
            this.publish();
          }
        }
      } catch {
        // reconnect below
      }
      if (this.abort.signal.aborted) return;
      await new Promise((r) => setTimeout(r, this.options.reconnectMs));
    }
  }
}
