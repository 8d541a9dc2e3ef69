// Checks that the committed src/gen/ is what `npm run generate` makes from
// ../../proto today: regenerates into a temporary folder and compares file by file.
// Exit 1 (with the differing files named) when someone changed the proto without
// running `npm run generate`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = mkdtempSync(join(tmpdir(), "corecast-gen-"));
try {
  execFileSync("npx", ["--no-install", "buf", "generate", "-o", out], { stdio: "inherit" });
  const fresh = join(out, "src", "gen");
  const committed = "src/gen";
  const names = new Set([...readdirSync(fresh), ...readdirSync(committed)]);
  const stale = [];
  for (const name of names) {
    let a, b;
    try { a = readFileSync(join(fresh, name), "utf8"); } catch { a = undefined; }
    try { b = readFileSync(join(committed, name), "utf8"); } catch { b = undefined; }
    if (a !== b) stale.push(name);
  }
  if (stale.length > 0) {
    console.error(`src/gen is out of date (${stale.join(", ")}): run \`npm run generate\` and commit it`);
    process.exit(1);
  }
  console.log(`src/gen is up to date (${names.size} file(s))`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
