// The routemq dashboard in a real browser: Debian's chromium driven by Playwright, against the
// `test-worker` binary (it calls routemq::cli::main()) on a fresh SQLite file, configured only
// by the environment the README names. Run from the repository root with the binaries built (they
// are looked for in $CARGO_TARGET_DIR/debug, else target/debug, or ROUTEMQ_BIN_DIR):
//
//   cargo build -p routemq-tests --bins
//   npm --prefix tests/browser ci && npm --prefix tests/browser test
//
// Without chromium it prints "skipped: ..." (and fails under ROUTEMQ_TEST_REQUIRE_SERVICES=1).
// With ROUTEMQ_SCREENSHOTS=DIR it saves the main pages there as PNG files.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const defaultBins = process.env.CARGO_TARGET_DIR ? join(process.env.CARGO_TARGET_DIR, "debug") : join(here, "../../target/debug");
const binDir = resolve(process.env.INIT_CWD || process.cwd(), process.env.ROUTEMQ_BIN_DIR || defaultBins);
const WORKER = join(binDir, "test-worker");
const FIXTURE = join(binDir, "dashboard-fixture");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Relative to where npm was run (npm --prefix runs the script in tests/browser).
const SHOTS = process.env.ROUTEMQ_SCREENSHOTS && resolve(process.env.INIT_CWD || process.cwd(), process.env.ROUTEMQ_SCREENSHOTS);
const JOBS = 60, FAILING = 3, SLEEP_MS = 250;

const missing = [[CHROMIUM, "install chromium (apt-get install chromium) or set CHROMIUM"],
  [WORKER, "build the binaries (cargo build -p routemq-tests --bins) or set ROUTEMQ_BIN_DIR"],
  [FIXTURE, "build the binaries (cargo build -p routemq-tests --bins) or set ROUTEMQ_BIN_DIR"]]
  .filter(([path]) => !existsSync(path)).map(([path, fix]) => `${path} is missing: ${fix}`);
if (missing.length && process.env.ROUTEMQ_TEST_REQUIRE_SERVICES === "1") {
  throw new Error(missing.join("; "));
}
const skip = missing.length ? "skipped: " + missing.join("; ") : false;
if (skip) console.log(skip);

const children = [];
let dir, env, queue, browser;

function start(args, extraEnv) {
  const child = spawn(WORKER, args, { env: { ...env, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
  child.log = "";
  child.out = "";
  child.stdout.on("data", (chunk) => { child.out += chunk; });
  child.stderr.on("data", (chunk) => { child.log += chunk; });
  child.exited = new Promise((ok) => child.on("exit", (code) => ok(code)));
  children.push(child);
  return child;
}

async function until(what, condition, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

// A dashboard on a port of the system's choice, which it prints on stdout.
async function dashboard(extraArgs = [], extraEnv = {}) {
  const child = start(["queue-dashboard", "--addr", "127.0.0.1:0", ...extraArgs], extraEnv);
  const base = await until("the dashboard's address", () => {
    assert.equal(child.exitCode, null, "queue-dashboard exited: " + child.log);
    const found = child.out.match(/dashboard at (http:\/\/127\.0\.0\.1:\d+)\//);
    return found && found[1];
  });
  assert.ok((await fetch(base + "/health")).ok);
  return { base, child };
}

async function open(url, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const page = await context.newPage();
  // Polling loops read cells that come and go: never wait long for one.
  page.setDefaultTimeout(5000);
  page.dialogs = [];
  page.on("dialog", async (dialog) => {
    page.dialogs.push(dialog.type() + ": " + dialog.message());
    if (dialog.type() === "confirm") await dialog.accept();
    else await dialog.dismiss();
  });
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(String(error)));
  if (url) await page.goto(url);
  return page;
}

async function shot(page, name, fullPage = true) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name), fullPage });
}

const cell = (page, column) => page.locator(`#queues tr[data-queue="${queue}"] td.${column}`);

before(async () => {
  if (skip) return;
  const { chromium } = await import("playwright-core");
  dir = mkdtempSync(join(tmpdir(), "routemq-browser-"));
  queue = "browser-" + process.pid;
  env = { ...process.env, QUEUE_CONNECTION: "sqlite", QUEUE_SQLITE_PATH: join(dir, "queue.sqlite"), RUST_LOG: "warn" };
  for (const name of ["DATABASE_URL", "ROUTEMQ_DASHBOARD_TOKEN", "ROUTEMQ_DASHBOARD_USER", "ROUTEMQ_DASHBOARD_PASSWORD"]) delete env[name];
  const seeded = spawnSync(FIXTURE, [queue, join(dir, "ledger"), String(JOBS), String(FAILING), String(SLEEP_MS)], { env, encoding: "utf8" });
  assert.equal(seeded.status, 0, seeded.stderr);
  assert.equal(seeded.stdout.trim(), String(JOBS));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
});

after(async () => {
  if (browser) await browser.close();
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let main;

test("the overview's counts change while a worker runs, without a reload", { skip, timeout: 90000 }, async () => {
  main = await dashboard();
  const page = await open(main.base + "/#/");
  await until("the queue's 60 ready jobs", async () => (await cell(page, "ready").textContent().catch(() => "")) === String(JOBS));
  const navigations = [];
  page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
  const worker = start(["queue-work", "--queue", queue, "--concurrency", "2", "--stop-when-empty", "--sleep", "0.1"]);
  const seen = new Set();
  let sawRunning = false, shotTaken = false;
  const deadline = Date.now() + 60000;
  while (worker.exitCode === null) {
    assert.ok(Date.now() < deadline, "the worker drains 60 jobs within a minute");
    const ready = await cell(page, "ready").textContent().catch(() => null);
    if (ready !== null) seen.add(Number(ready));
    const running = await page.locator(`#workers tr:has(td:text-is("${queue}")) .pill.running`).count() > 0;
    sawRunning ||= running;
    // Best effort: once the worker's record shows jobs done (its second beat, after 5 s).
    const processed = Number(await page.locator("#workers td.processed").first().textContent().catch(() => "0"));
    if (!shotTaken && running && processed > 0) {
      await shot(page, "dashboard-overview.png");
      shotTaken = true;
    }
    await new Promise((ok) => setTimeout(ok, 200));
  }
  assert.equal(await worker.exited, 0, worker.log);
  await until("the failed count", async () => (await cell(page, "failed").textContent()) === String(FAILING));
  assert.equal(await cell(page, "ready").textContent(), "0");
  const between = [...seen].filter((n) => n > 0 && n < JOBS);
  assert.ok(between.length >= 1, `counts seen while it ran: ${[...seen]}`);
  assert.ok(sawRunning, "the worker showed as running while it ran");
  assert.deepEqual(navigations, [], "updated in place");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("failed jobs: search, open one, its markup shows as text, retry it", { skip }, async () => {
  const page = await open(main.base + "/#/failed");
  await until("three failed jobs", async () => (await page.locator("#failed-rows tr").count()) === FAILING);
  await page.fill("#failed-filter input[name=q]", `job ${JOBS} is meant`);
  await page.click("#failed-filter button[type=submit]");
  await until("one match", async () => (await page.locator("#failed-rows tr").count()) === 1);
  assert.ok(await page.locator("button.flush").isDisabled(), "no flush of a whole queue from a search");
  assert.ok(await page.locator("button.retry-all").isDisabled());
  assert.equal(await page.locator("#page").evaluate((el) => el.textContent.includes("null")), false);
  await shot(page, "dashboard-failed.png");
  const id = await page.locator("#failed-rows tr").first().getAttribute("data-id");
  await page.locator("#failed-rows tr").first().click();
  await page.waitForSelector("#failed-detail pre.data");
  const data = await page.locator("#failed-detail pre.data").textContent();
  assert.ok(data.includes("<script>window.__xss=1</script>"), data);
  assert.ok(data.includes("onerror="), data);
  assert.equal(await page.locator("#failed-detail script, #failed-detail img").count(), 0, "no element made from job data");
  assert.match(await page.locator("#failed-detail pre.exception").textContent(), new RegExp(`job ${JOBS} is meant to fail`));
  await shot(page, "dashboard-failed-job.png", false);
  await page.click("#failed-detail button.retry");
  await until("the list without it", async () => page.url().endsWith("#/failed") && (await page.locator("#failed-rows tr").count()) === FAILING - 1);
  assert.equal(await page.locator(`#failed-rows tr[data-id="${id}"]`).count(), 0);
  assert.match(await page.locator("#status").textContent(), /retried: 1/, "the action's result is shown");
  // The retried job's own page is gone: it says so instead of keeping the list on screen.
  await page.goto(main.base + "/#/failed/" + encodeURIComponent(id));
  await page.waitForSelector("#load-error");
  assert.match(await page.locator("#load-error").textContent(), /no failed job with id/);
  assert.equal(await page.locator("#failed-rows").count(), 0);
  assert.deepEqual(page.dialogs, [`confirm: Retry failed job ${id}?`], "only the confirmation");
  const overview = await (await fetch(main.base + "/api/overview")).json();
  const row = overview.queues.find((q) => q.queue === queue);
  assert.equal(row.ready, 1, "the job is back in its queue");
  assert.equal(row.failed, FAILING - 1);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("job types: runs, failure rate and runtimes of the job the worker ran", { skip }, async () => {
  const page = await open(main.base + "/#/types");
  const row = page.locator('#job-types tr[data-job="reliability.Ledgered"]');
  await until("the job type's runs", async () => (await row.locator("td.runs").textContent().catch(() => "")) === String(JOBS));
  assert.equal(await row.locator("td.rate").textContent(), `${(100 * FAILING / JOBS).toFixed(1)} %`);
  const p50 = await row.locator("td.p50").textContent();
  assert.match(p50, /ms|s$/, p50);
  await shot(page, "dashboard-job-types.png", false);
  await page.context().close();
});

test("read-only mode shows no action", { skip }, async () => {
  const readOnly = await dashboard(["--read-only"]);
  const page = await open(readOnly.base + "/#/failed");
  await until("the failed list", async () => (await page.locator("#failed-rows tr").count()) === FAILING - 1);
  assert.equal(await page.locator("button.flush, button.retry-all").count(), 0);
  assert.equal(await page.locator("#page").evaluate((el) => el.textContent.includes("null")), false);
  await page.locator("#failed-rows tr").first().click();
  await page.waitForSelector("#failed-detail pre.data");
  assert.equal(await page.locator("button.retry, button.forget").count(), 0);
  assert.match(await page.locator("#connection").textContent(), /read-only/);
  await page.context().close();
});

test("a token is asked for, and opens the dashboard", { skip }, async () => {
  const locked = await dashboard([], { ROUTEMQ_DASHBOARD_TOKEN: "browser-s3cret" });
  const denied = await fetch(locked.base + "/");
  assert.equal(denied.status, 401);
  assert.match(denied.headers.get("www-authenticate"), /^Basic/);
  const page = await open(locked.base + "/#/", { httpCredentials: { username: "ops", password: "browser-s3cret" } });
  await until("the overview", async () => (await cell(page, "failed").textContent().catch(() => "")) === String(FAILING - 1));
  await page.context().close();
});

test("a non-loopback address without a token refuses to start", { skip }, () => {
  const refused = spawnSync(WORKER, ["queue-dashboard", "--addr", "0.0.0.0:0"], { env, encoding: "utf8", timeout: 20000 });
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /ROUTEMQ_DASHBOARD_TOKEN/);
});
