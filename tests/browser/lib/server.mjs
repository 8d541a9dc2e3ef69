// Starts the real corecast binary with a TCP and a WebSocket listener on free loopback
// ports, and reads both addresses from its log on standard error.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

/** The server binary: $CORECAST_BIN, else target/debug/corecast (the caller builds it). */
export function serverBinary(repoRoot) {
  const bin = process.env.CORECAST_BIN ?? path.join(repoRoot, "target/debug/corecast");
  if (!existsSync(bin)) {
    throw new Error(`no server binary at ${bin}: run \`cargo build\` first, or set CORECAST_BIN`);
  }
  return bin;
}

/**
 * Spawns the server and resolves once it has logged both `listening on ADDR (N shards)`
 * and `websocket listening on ADDR`. Rejects if it exits first or takes over `timeoutMs`.
 */
export function startServer(
  bin,
  { shards = 2, listen = "127.0.0.1:0", wsListen = "127.0.0.1:0", timeoutMs = 20_000, extraArgs = [], env = {} } = {},
) {
  const args = ["--listen", listen, "--ws-listen", wsListen, "--shards", String(shards), ...extraArgs];
  const child = spawn(bin, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info", NO_COLOR: "1", ...env },
  });
  const server = { child, args, log: [], tcpAddr: null, wsAddr: null, exited: null };
  server.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not log both listeners within ${timeoutMs} ms; its log:\n${server.log.join("\n")}`));
    }, timeoutMs);
    let pending = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        server.log.push(line);
        if (process.env.CORECAST_SERVER_LOG) process.stderr.write(`[server] ${line}\n`);
        const ws = /websocket listening on (\S+)/.exec(line);
        const tcp = /(?<!websocket )listening on (\S+) \(\d+ shards?\)/.exec(line);
        if (ws) server.wsAddr = ws[1];
        else if (tcp) server.tcpAddr = tcp[1];
        if (server.wsAddr && server.tcpAddr) {
          clearTimeout(timer);
          resolve(server);
        }
      }
    });
    server.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening; args ${args.join(" ")}; its log:\n${server.log.join("\n")}`));
    });
  });
}

/** SIGTERM, then waits for the exit (SIGKILL after `timeoutMs`); returns { code, signal }. */
export async function stopServer(server, timeoutMs = 10_000) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return server.exited;
  server.child.kill("SIGTERM");
  let timer;
  const killed = new Promise((resolve) => {
    timer = setTimeout(() => {
      server.child.kill("SIGKILL");
      resolve();
    }, timeoutMs);
  });
  await Promise.race([server.exited, killed]);
  clearTimeout(timer);
  return server.exited;
}

/** "127.0.0.1:1234" -> { host, port } (also "[::1]:1234"). */
export function splitAddr(addr) {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(addr.slice(i + 1)) };
}
