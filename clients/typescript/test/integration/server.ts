// Spawns the real corecast server for integration tests and finds its ports from the
// log lines it prints on stderr. The binary is CORECAST_BIN, or the debug build at
// ../../target/debug/corecast: build it first (`cargo build --bin corecast` at the
// repository root); these tests never build it.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { CorecastClient, type ClientOptions, type WebSocketConstructor } from "../../src/index.js";

/** The package root (this file is build/test/integration/server.js once compiled). */
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export const CORECAST_BIN = process.env.CORECAST_BIN
  ? resolve(process.env.CORECAST_BIN)
  : resolve(packageRoot, "../../target/debug/corecast");

/** How long the server may take to print its listening lines. */
const START_TIMEOUT_MS = 15_000;

export interface Server {
  /** ws://127.0.0.1:PORT/ws */
  wsUrl: string;
  /** 127.0.0.1:PORT of the WebSocket listener. */
  wsAddr: string;
  /** 127.0.0.1:PORT of the TCP listener. */
  tcpAddr: string;
  /** Everything the server wrote to stderr so far. */
  log(): string;
  stop(): Promise<void>;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

export async function startServer(extraArgs: string[] = []): Promise<Server> {
  if (!existsSync(CORECAST_BIN)) {
    throw new Error(
      `corecast binary not found at ${CORECAST_BIN}: build it with \`cargo build --bin corecast\` ` +
        "at the repository root, or set CORECAST_BIN",
    );
  }
  const args = ["--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--shards", "2", ...extraArgs];
  // The caller's CORECAST_* settings (an auth token, a log format) would change what is
  // tested: the server gets only the flags above, and info-level text logs.
  const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: "info" };
  for (const key of Object.keys(env)) if (key.startsWith("CORECAST_")) delete env[key];
  const child: ChildProcess = spawn(CORECAST_BIN, args, { stdio: ["ignore", "ignore", "pipe"], env });
  let stderr = "";
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exit = new Promise<void>((done) =>
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      done();
    }),
  );
  const addrs = await new Promise<{ ws: string; tcp: string }>((resolveAddrs, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`corecast printed no "websocket listening on" line in ${START_TIMEOUT_MS} ms:\n${stderr}`));
    }, START_TIMEOUT_MS);
    const check = () => {
      const text = stderr.replace(ANSI, "");
      const ws = /websocket listening on (\S+)/.exec(text)?.[1];
      const tcp = /(?<!websocket )listening on (\S+) \(\d+ shards/.exec(text)?.[1];
      if (ws && tcp) {
        clearTimeout(timer);
        resolveAddrs({ ws, tcp });
      }
    };
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      stderr += chunk;
      check();
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`corecast ${args.join(" ")} exited (${code ?? signal}) before listening:\n${stderr}`));
    });
  });
  return {
    wsUrl: `ws://${addrs.ws}/ws`,
    wsAddr: addrs.ws,
    tcpAddr: addrs.tcp,
    log: () => stderr,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** `ws`'s WebSocket as the client's constructor type. */
export const NodeWebSocket = WebSocket as unknown as WebSocketConstructor;

/** A client over `ws`, with test-friendly timeouts and fast reconnects. */
export async function connectClient(url: string, opts: ClientOptions = {}): Promise<CorecastClient> {
  return CorecastClient.connect(url, {
    WebSocket: NodeWebSocket,
    requestTimeoutMs: 5_000,
    connectTimeoutMs: 5_000,
    keepaliveMs: 0,
    reconnect: { initialMs: 20, maxMs: 500 },
    ...opts,
  });
}

/** A connected client, logged in as `player`. */
export async function loggedIn(url: string, player: string, opts: ClientOptions = {}): Promise<CorecastClient> {
  const c = await connectClient(url, opts);
  await c.login(player);
  return c;
}

/** A temp folder with an HS256 secret file; `mint(sub, ...extra)` signs tokens with it via `corecast token`. */
export function jwtSecret(): { file: string; mint(sub: string, ...extra: string[]): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "corecast-ts-jwt-"));
  const file = join(dir, "secret");
  writeFileSync(file, "integration-test-secret-that-is-long-enough-0123456789\n", { mode: 0o600 });
  return {
    file,
    mint: (sub, ...extra) =>
      execFileSync(CORECAST_BIN, ["token", "--secret-file", file, "--sub", sub, ...extra], {
        encoding: "utf8",
        timeout: 10_000,
      }).trim(),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export const text = (body: Uint8Array): string => new TextDecoder().decode(body);
