// Two pages of examples/web in headless Chromium (Debian's /usr/bin/chromium) and a
// plain TCP client chat in one room of a real corecast server: joins and leaves,
// broadcasts, a private (targeted) message, one order (seq) for everyone, and the
// page's reconnect state when the server shuts down. Every wait has a timeout; no sleeps.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import puppeteer from "puppeteer-core";

import { serverBinary, splitAddr, startServer, stopServer } from "./lib/server.mjs";
import { serveDirectory } from "./lib/static.mjs";
import { loadWire, TcpChatClient } from "./lib/tcp-client.mjs";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const webDist = path.join(repoRoot, "examples/web/dist");
const chromium = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
// Screenshots go to a temporary directory, so a test run leaves the tree clean; the
// README's images are refreshed with SCREENSHOT_DIR=../../docs/screenshots npm test.
const shotDir = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.join(os.tmpdir(), "corecast-browser-screenshots");
const WAIT_MS = Number(process.env.BROWSER_WAIT_MS ?? 10_000);
const ROOM = "lobby";

/** A page of the chat, with what it reported (uncaught exceptions, console errors). */
async function openChatPage(browser, siteUrl, wsUrl, player, { fillPlayer = true } = {}) {
  // A browser context of its own: its own window (a second tab in one window would be a
  // hidden tab, which headless Chromium does not render, so clicks on it never finish)
  // and its own storage, like two people on two machines.
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1000, height: 600 });
  const problems = [];
  page.on("pageerror", (err) => problems.push(`${player}: uncaught: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${player}: console error: ${msg.text()}`);
  });
  const url = `${siteUrl}?server=${encodeURIComponent(wsUrl)}${fillPlayer ? `&player=${encodeURIComponent(player)}` : ""}`;
  await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
  await page.waitForSelector("body[data-ready='true']", { timeout: WAIT_MS });
  return { page, player, problems };
}

/** Waits for `selector` on a chat page; a timeout names what was awaited and what the page shows. */
async function waitOn(chat, selector, what) {
  try {
    return await chat.page.waitForSelector(selector, { timeout: WAIT_MS });
  } catch (err) {
    throw new Error(`${chat.player}: ${what}: ${err.message}\n${await pageState(chat)}`);
  }
}

async function waitUntil(chat, what, fn, ...args) {
  try {
    const handle = await chat.page.waitForFunction(fn, { timeout: WAIT_MS }, ...args);
    return await handle.jsonValue();
  } catch (err) {
    throw new Error(`${chat.player}: ${what}: ${err.message}\n${await pageState(chat)}`);
  }
}

/** The page's status, errors, members and log, for failure messages. */
function pageState(chat) {
  return chat.page
    .evaluate(() => {
      const texts = (sel) => [...document.querySelectorAll(sel)].map((n) => n.textContent.trim());
      return [
        `status: ${document.getElementById("status").textContent}`,
        `errors: ${JSON.stringify(texts("#error-list li"))}`,
        `members: ${JSON.stringify(texts("#member-list li"))}`,
        `log: ${JSON.stringify(texts("#log li"))}`,
      ].join("\n");
    })
    .catch((err) => `(page state unavailable: ${err.message})`);
}

async function login(chat) {
  await chat.page.click("#login-btn");
  await waitOn(chat, "#status[data-state='connected'][data-protocol='corecast.v1']", "log in (subprotocol corecast.v1)");
}

async function join(chat, room) {
  await chat.page.type("#room-input", room);
  await chat.page.click("#join-btn");
  await waitOn(chat, `#room-list li.current[data-room='${room}']`, `join ${room}`);
  await waitOn(chat, `#member-list li[data-member='${chat.player}']`, `see itself among ${room}'s members`);
}

async function say(chat, text) {
  await chat.page.type("#message", text);
  await chat.page.click("#send-btn");
}

/** Waits until the log shows `text` from `sender`; resolves to that entry. */
function waitForMessage(chat, sender, text) {
  return waitUntil(
    chat,
    `show ${sender}'s ${JSON.stringify(text)}`,
    (sender, text) => {
      const li = [...document.querySelectorAll("#log li.msg")].find(
        (n) => n.dataset.sender === sender && n.querySelector(".text")?.textContent === text,
      );
      return li ? { seq: li.dataset.seq, private: li.classList.contains("private"), tag: li.querySelector(".tag")?.textContent ?? "" } : null;
    },
    sender,
    text,
  );
}

/** Every message in the page's log, in the order shown. */
function shownMessages(chat) {
  return chat.page.$$eval("#log li.msg", (lis) =>
    lis.map((li) => ({
      seq: li.dataset.seq,
      sender: li.dataset.sender,
      text: li.querySelector(".text").textContent,
      private: li.classList.contains("private"),
    })),
  );
}

async function screenshot(chat, name) {
  mkdirSync(shotDir, { recursive: true });
  const file = path.join(shotDir, name);
  await chat.page.screenshot({ path: file });
  return file;
}

function launchBrowser() {
  return puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // Root in a container: Chromium's sandbox needs user namespaces it may not get.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

async function preconditions() {
  assert.ok(existsSync(path.join(webDist, "index.html")), `no ${webDist}/index.html: run \`npm run build\` in examples/web`);
  assert.ok(existsSync(chromium), `no ${chromium}: apt-get install -y chromium (Debian's package), or set CHROMIUM_BIN`);
  return serverBinary(repoRoot);
}

test("two browser pages and a TCP client chat in one room", { timeout: 120_000 }, async (t) => {
  const started = performance.now();
  const bin = await preconditions();
  const wire = await loadWire(repoRoot);

  const site = await serveDirectory(webDist);
  t.after(() => site.close());
  let server = await startServer(bin, { shards: 2 });
  t.after(() => stopServer(server));
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const wsUrl = `ws://${server.wsAddr}/ws`;
  // ben takes the original protocol's path, which the server accepts as well.
  const wsAppUrl = `ws://${server.wsAddr}/app`;
  t.diagnostic(`server ${bin}: tcp ${server.tcpAddr}, websocket ${wsUrl}; page ${site.url}`);

  let failed = false;
  const step = async (name, fn) => {
    if (failed) return t.test(name, { skip: "an earlier step failed" }, () => {});
    return t.test(name, async () => {
      try {
        await fn();
      } catch (err) {
        failed = true;
        throw err;
      }
    });
  };

  let ann, ben, cat, catJoin;

  await step("ann (on /ws) and ben (on /app) log in and join lobby; each sees the other there", async () => {
    [ann, ben] = await Promise.all([openChatPage(browser, site.url, wsUrl, "ann"), openChatPage(browser, site.url, wsAppUrl, "ben")]);
    await Promise.all([login(ann), login(ben)]);
    await join(ann, ROOM);
    await join(ben, ROOM);
    // ben arrived second: ann gets the join notification, ben finds ann in the member list.
    await waitOn(ann, `#log li.event.join[data-player='ben']`, "show ben joining");
    await waitOn(ann, `#member-list li[data-member='ben']`, "list ben as a member");
    await waitOn(ben, `#member-list li[data-member='ann']`, "list ann as a member");
  });

  await step("ann sends; both pages show it with the same seq", async () => {
    await say(ann, "hello from ann");
    const [onAnn, onBen] = await Promise.all([waitForMessage(ann, "ann", "hello from ann"), waitForMessage(ben, "ann", "hello from ann")]);
    assert.equal(onAnn.seq, onBen.seq);
    assert.equal(onBen.private, false);
  });

  await step("ben sends a private message to ann; both show it marked private", async () => {
    await ben.page.click("#member-list input.target[value='ann']");
    await waitOn(ben, "#target-hint.private", "show that the next message is private");
    await say(ben, "psst, ann: just you");
    const [onAnn, onBen] = await Promise.all([waitForMessage(ann, "ben", "psst, ann: just you"), waitForMessage(ben, "ben", "psst, ann: just you")]);
    assert.equal(onAnn.private, true, "ann's page marks ben's targeted message private");
    assert.equal(onBen.private, true, "ben's own copy is marked private");
    assert.equal(onBen.tag, "private to ann");
    assert.equal(onAnn.seq, onBen.seq);
    await screenshot(ben, "web-chat-ben.png");
    await ben.page.click("#clear-targets");
    await waitOn(ben, "#target-hint:not(.private)", "go back to sending to everyone");
  });

  await step("a TCP client joins lobby; both pages show it join", async () => {
    cat = await TcpChatClient.connect(wire, splitAddr(server.tcpAddr));
    await cat.login("cat");
    catJoin = await cat.join(ROOM);
    assert.deepEqual([...catJoin.currentPlayers].sort(), ["ann", "ben", "cat"]);
    for (const chat of [ann, ben]) {
      await waitOn(chat, `#log li.event.join[data-player='cat']`, "show cat joining");
      await waitOn(chat, `#member-list li[data-member='cat']`, "list cat as a member");
    }
  });

  await step("the TCP client sends; both pages show it", async () => {
    cat.say(ROOM, "hello from tcp");
    const [onAnn, onBen] = await Promise.all([waitForMessage(ann, "cat", "hello from tcp"), waitForMessage(ben, "cat", "hello from tcp")]);
    assert.equal(onAnn.seq, onBen.seq);
    await cat.waitFor((m) => m.data.case === "messageNotification" && m.data.value.senderId === "cat", "its own message back");
  });

  await step("the TCP client gets the pages' messages in the pages' order (seq), and not a private one", async () => {
    // A private message between the pages, then both pages broadcast at once: the room
    // picks one order and everyone must show it.
    await ann.page.click("#member-list input.target[value='ben']");
    await waitOn(ann, "#target-hint.private", "show that the next message is private");
    await say(ann, "ben, not for cat");
    await waitForMessage(ben, "ann", "ben, not for cat");
    await ann.page.click("#clear-targets");
    await waitOn(ann, "#target-hint:not(.private)", "go back to sending to everyone");
    await Promise.all([say(ann, "ann again"), say(ben, "ben again")]);
    for (const chat of [ann, ben]) {
      await waitForMessage(chat, "ann", "ann again");
      await waitForMessage(chat, "ben", "ben again");
    }
    await cat.waitFor((m) => m.data.case === "messageNotification" && new TextDecoder().decode(m.data.value.body) === "ann again", "ann's second message");
    await cat.waitFor((m) => m.data.case === "messageNotification" && new TextDecoder().decode(m.data.value.body) === "ben again", "ben's second message");

    const tcpSeen = cat.messages(ROOM).map(({ seq, sender, text }) => ({ seq: String(seq), sender, text }));
    assert.equal(tcpSeen[0]?.text, "hello from tcp", "the first message the TCP client got is its own");
    assert.ok(!tcpSeen.some((m) => m.text.includes("not for cat")), "the private message did not reach the TCP client");
    for (const chat of [ann, ben]) {
      const shown = await shownMessages(chat);
      const seqs = shown.map((m) => BigInt(m.seq));
      assert.deepEqual(seqs, [...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), `${chat.player}'s log is in seq order`);
      assert.equal(new Set(seqs).size, seqs.length, `${chat.player}'s log has no duplicate`);
      const sinceCat = shown
        .filter((m) => !m.private && BigInt(m.seq) > catJoin.lastSeq)
        .map(({ seq, sender, text }) => ({ seq, sender, text }));
      assert.deepEqual(sinceCat, tcpSeen, `${chat.player}'s broadcasts since cat joined, as the TCP client got them`);
    }
    assert.equal(tcpSeen.length, 3);
  });

  await step("ben leaves lobby; ann's page and the TCP client see it", async () => {
    await ben.page.click(`#room-list li[data-room='${ROOM}'] button.leave`);
    await waitUntil(ben, "drop lobby from its rooms", (room) => !document.querySelector(`#room-list li[data-room='${room}']`), ROOM);
    await waitOn(ann, `#log li.event.leave[data-player='ben']`, "show ben leaving");
    await waitUntil(ann, "drop ben from the member list", () => !document.querySelector("#member-list li[data-member='ben']"));
    await cat.waitFor((m) => m.data.case === "leaveNotification" && m.data.value.playerId === "ben", "ben's leave");
  });

  await step("the TCP client disconnects; ann's page shows it leave", async () => {
    await cat.close();
    await waitOn(ann, `#log li.event.leave[data-player='cat']`, "show cat leaving");
    await waitUntil(ann, "drop cat from the member list", () => !document.querySelector("#member-list li[data-member='cat']"));
    await screenshot(ann, "web-chat-ann.png");
  });

  await step("no page error so far", async () => {
    assert.deepEqual([...ann.problems, ...ben.problems], []);
  });

  await step("the server shuts down: the page shows the error and that it is reconnecting", async () => {
    const exit = await stopServer(server);
    assert.deepEqual(exit, { code: 0, signal: null }, `server exit; its log:\n${server.log.join("\n")}`);
    await waitOn(ann, "#error-list li[data-code='SERVER_SHUTTING_DOWN']", "show SERVER_SHUTTING_DOWN");
    await waitOn(ann, "#status[data-state='reconnecting']", "show that it is reconnecting");
    await screenshot(ann, "web-chat-reconnecting.png");
  });

  await step("the server comes back on the same port: the page logs in again, rejoins and chats", async () => {
    server = await startServer(bin, { shards: 2, wsListen: server.wsAddr });
    await waitOn(ann, "#status[data-state='connected']", "reconnect");
    // A new process: a new epoch for lobby, so the page says what it could not recover.
    await waitOn(ann, "#log li.event.info[data-reconnect='not-recovered']", "say that it rejoined lobby");
    await say(ann, "back again");
    const back = await waitForMessage(ann, "ann", "back again");
    assert.equal(back.seq, "1", "the new server's lobby counts from 1");
    const uncaught = [...ann.problems, ...ben.problems].filter((p) => p.includes("uncaught"));
    assert.deepEqual(uncaught, []);
  });

  t.diagnostic(`browser test took ${((performance.now() - started) / 1000).toFixed(1)} s; screenshots in ${shotDir}`);
});

test("JWT: a bad token is refused plainly; a signed one logs in as its sub, and a room outside its grant is FORBIDDEN", { timeout: 60_000 }, async (t) => {
  const bin = await preconditions();
  // An HS256 secret for this run only (the server wants at least 32 bytes).
  const secret = randomBytes(24).toString("hex");
  const token = execFileSync(bin, ["token", "--sub", "dee", "--rooms", "den", "--ttl", "600"], {
    env: { ...process.env, CORECAST_JWT_SECRET: secret },
    encoding: "utf8",
  }).trim();
  const site = await serveDirectory(webDist);
  t.after(() => site.close());
  const server = await startServer(bin, { shards: 2, env: { CORECAST_JWT_SECRET: secret } });
  t.after(() => stopServer(server));
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const dee = await openChatPage(browser, site.url, `ws://${server.wsAddr}/ws`, "dee", { fillPlayer: false });

  await dee.page.type("#token", "not-a-jwt");
  await dee.page.click("#login-btn");
  const refused = await waitOn(dee, "#error-list li[data-code='UNAUTHORIZED']", "show the refusal");
  assert.match(await refused.evaluate((li) => li.textContent), /^login: UNAUTHORIZED/);
  await waitOn(dee, "#status[data-state='disconnected']", "show that it is not connected");
  await waitOn(dee, "#login-btn:not([disabled])", "let the user try again");

  // No player name: the server takes the token's sub, and so does the page.
  await dee.page.$eval("#token", (input) => (input.value = ""));
  await dee.page.type("#token", token);
  await login(dee);
  assert.equal(await dee.page.$eval("#status", (s) => s.textContent), "connected as dee");
  await join(dee, "den");

  await dee.page.type("#room-input", "elsewhere");
  await dee.page.click("#join-btn");
  const forbidden = await waitOn(dee, "#error-list li[data-code='FORBIDDEN']", "show the refused join");
  assert.match(await forbidden.evaluate((li) => li.textContent), /^join "elsewhere": FORBIDDEN/);
  assert.equal(await dee.page.$("#room-list li[data-room='elsewhere']"), null, "a refused room is not listed");
  await waitOn(dee, "#room-list li.current[data-room='den']", "stay in den");
  assert.deepEqual(dee.problems.filter((p) => p.includes("uncaught")), []);
});
