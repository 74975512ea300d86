// The web demo in a real browser (headless Chromium): two pages, served from another
// origin than the gRPC port, edit one session at once; the DOM of both and the server
// end equal. A page from an origin that is not allowed gets nothing (CORS).
//   SERVER_BIN, TEST_DATABASE_URL as in test/server.test.ts; CHROMIUM (default /usr/bin/chromium).
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join } from "node:path";
import { after, before, test } from "node:test";

import puppeteer, { type Browser, type Page } from "puppeteer-core";

import { SessionClient, type Session } from "../src/client.js";

const admin = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const root = new URL("../../../../", import.meta.url).pathname;
const bin = process.env.SERVER_BIN ?? join(root, "target/release/session-service");
const web = join(root, "examples/web");
const database = `sstest_web_${process.pid}`;

let grpc: ChildProcess;
let grpcUrl: string;
let pages: Server;
let pagesUrl: string;
let stranger: Server;
let strangerUrl: string;
let browser: Browser;

/** The demo's files, as a one-line static server would serve them. */
async function serveStatic(): Promise<[Server, string]> {
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript" };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    try {
      const body = readFileSync(join(web, path === "/" ? "index.html" : path));
      res.writeHead(200, { "content-type": types[extname(path) || ".html"] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return [server, `http://127.0.0.1:${(server.address() as { port: number }).port}`];
}

async function freePort(): Promise<number> {
  const [s, url] = await serveStatic();
  await new Promise((r) => s.close(r));
  return Number(new URL(url).port);
}

before(async () => {
  [pages, pagesUrl] = await serveStatic();
  [stranger, strangerUrl] = await serveStatic();
  execFileSync("psql", [admin, "-qc", `create database ${database}`]);
  const port = await freePort();
  grpcUrl = `http://127.0.0.1:${port}`;
  grpc = spawn(bin, ["serve"], {
    env: {
      ...process.env,
      DATABASE_URL: admin.replace(/\/[^/?]*(\?|$)/, `/${database}$1`),
      SESSION__SERVER__LISTEN: `127.0.0.1:${port}`,
      SESSION__SERVER__GRPC_WEB: "true",
      SESSION__SERVER__CORS_ALLOWED_ORIGINS: `["${pagesUrl}"]`,
      SESSION__LOG__FILTER: "warn",
    },
    stdio: "inherit",
  });
  for (let i = 0; ; i++) {
    try {
      await new SessionClient(grpcUrl, { userId: 7 }).stub.listSessions({});
      break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // Two pages at once: the one not in front must not be throttled.
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-timer-throttling",
      "--disable-backgrounding-occluded-windows",
      "--disable-renderer-backgrounding",
    ],
  });
});

after(async () => {
  await browser?.close();
  grpc?.kill("SIGTERM");
  pages?.close();
  stranger?.close();
  execFileSync("psql", [admin, "-qc", `drop database if exists ${database} with (force)`]);
});

async function open(origin: string, session: number): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${origin}/?server=${encodeURIComponent(grpcUrl)}&session=${session}&user=7`);
  await page.waitForFunction(() => document.body.dataset.ready !== undefined, { timeout: 15_000 });
  return page;
}

/** A user's click on a button (dispatched in the page: no scrolling into view, so a
 * page that is not in front is clicked as well). */
const click = (page: Page, id: string) => page.evaluate((id) => document.getElementById(id)?.click(), id);

const shown = (page: Page) =>
  page.evaluate(() => ({
    version: Number(document.body.dataset.version),
    pending: document.body.dataset.pending,
    inventory: JSON.parse(document.getElementById("inventory")?.textContent ?? "null"),
    quests: JSON.parse(document.getElementById("quests")?.textContent ?? "null"),
    relationships: JSON.parse(document.getElementById("relationships")?.textContent ?? "null"),
  }));

test("two pages edit one session at once and end equal to the server", async () => {
  const client = new SessionClient(grpcUrl, { userId: 7 });
  const s = await client.create({ sceneId: 1, entryNodeId: 10 });
  const [a, b] = [await open(pagesUrl, s.id), await open(pagesUrl, s.id)];
  assert.equal(await a.evaluate(() => document.body.dataset.ready), "true");

  // Both pages click at the same time, several times: conflicts are resolved by the
  // client's re-apply, and each page sees the other's edits arrive by WatchSession.
  await Promise.all([
    (async () => {
      for (let i = 0; i < 3; i++) await click(a, "find-potion");
    })(),
    (async () => {
      for (let i = 0; i < 3; i++) await click(b, "quest-step");
    })(),
    click(b, "befriend"),
  ]);
  const server: Session = await (async () => {
    for (let i = 0; ; i++) {
      const now = await client.get(s.id);
      const [sa, sb] = [await shown(a), await shown(b)];
      if (now.version === 8 && sa.version === 8 && sb.version === 8 && sa.pending === "0" && sb.pending === "0") return now;
      if (i > 100) assert.fail(`not settled: server v${now.version}, pages ${JSON.stringify([sa, sb])}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  for (const page of [a, b]) {
    const dom = await shown(page);
    assert.deepEqual(dom.inventory, (server.flags.inventory as { items: unknown }).items);
    assert.deepEqual(dom.quests, server.flags.quests);
    assert.deepEqual(dom.relationships, server.relationships);
  }
  assert.deepEqual((server.flags.inventory as { items: unknown }).items, [{ id: "potion", qty: 3 }]);
  assert.equal((server.flags.quests as { main: { stepsCompleted: number } }).main.stepsCompleted, 3);
  mkdirSync(join(root, "target"), { recursive: true });
  await a.bringToFront();
  await a.screenshot({ path: join(root, "target/web-demo.png") });
});

test("a page from an origin that is not allowed gets nothing", async () => {
  const s = await new SessionClient(grpcUrl, { userId: 7 }).create({ sceneId: 1, entryNodeId: 10 });
  const page = await open(strangerUrl, s.id);
  assert.equal(await page.evaluate(() => document.body.dataset.ready), "error");
  const said = await page.evaluate(() => document.getElementById("error")?.textContent ?? "");
  assert.match(said, /fetch|network|Failed/i);
});

test("a preflight for the allowed origin succeeds; for another it grants nothing", async () => {
  const preflight = (origin: string) =>
    fetch(`${grpcUrl}/pixsim.session.v1.SessionService/GetSession`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,x-user-id",
      },
    });
  const allowed = await preflight(pagesUrl);
  assert.ok(allowed.ok);
  assert.equal(allowed.headers.get("access-control-allow-origin"), pagesUrl);
  const other = await preflight(strangerUrl);
  assert.equal(other.headers.get("access-control-allow-origin"), null);
});
