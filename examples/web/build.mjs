// `npm run build`: builds the TypeScript client (clients/typescript: npm ci on first use,
// then its `npm run build`, whose browser bundle is dist/corecast-client.js) and lays the
// page out in dist/: index.html, style.css, app.js and a copy of that bundle.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const clientDir = path.resolve(here, "../../clients/typescript");
const out = path.join(here, "dist");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (args, cwd) => {
  console.log(`$ (cd ${path.relative(process.cwd(), cwd) || "."} && npm ${args.join(" ")})`);
  execFileSync(npm, args, { cwd, stdio: "inherit" });
};

if (process.env.CORECAST_SKIP_CLIENT_BUILD !== "1") {
  if (!existsSync(path.join(clientDir, "node_modules"))) run(["ci"], clientDir);
  run(["run", "build"], clientDir);
}
const bundle = path.join(clientDir, "dist/corecast-client.js");
if (!existsSync(bundle)) {
  console.error(`no ${bundle}: the TypeScript client's build did not make its browser bundle`);
  process.exit(1);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const file of ["index.html", "style.css", "app.js"]) copyFileSync(path.join(here, "src", file), path.join(out, file));
copyFileSync(bundle, path.join(out, "corecast-client.js"));
if (existsSync(bundle + ".map")) copyFileSync(bundle + ".map", path.join(out, "corecast-client.js.map"));
console.log(`built ${path.relative(process.cwd(), out) || out}/ (serve it: npm run serve)`);
