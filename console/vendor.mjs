// Copies the console's libraries, as published on npm and pinned by package-lock.json, into
// public/vendor/ — the files the server embeds. `--check` copies nothing: it fails if a
// committed file differs from what `npm ci` installed (the test command runs it).
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const FILES = {
  // Preact, its hooks and htm in one ES module without bare imports: no import map (which
  // would need an inline script) and no build step.
  "htm/preact/standalone.module.js": "preact-htm.js",
  "@dagrejs/dagre/dist/dagre.esm.js": "dagre.js",
  "uplot/dist/uPlot.esm.js": "uplot.js",
  "uplot/dist/uPlot.min.css": "uplot.css",
};

const check = process.argv.includes("--check");
const stale = [];
mkdirSync(join(here, "public/vendor"), { recursive: true });
for (const [from, to] of Object.entries(FILES)) {
  const source = join(here, "node_modules", from);
  if (!existsSync(source)) {
    console.error(`missing ${source}: run npm ci in console/ first`);
    process.exit(2);
  }
  const bytes = readFileSync(source);
  const target = join(here, "public/vendor", to);
  if (check) {
    if (!existsSync(target) || !readFileSync(target).equals(bytes)) stale.push(to);
  } else {
    writeFileSync(target, bytes);
  }
}
if (stale.length) {
  console.error(`public/vendor differs from package-lock.json for: ${stale.join(", ")}; run npm run vendor`);
  process.exit(1);
}
console.log(check ? "vendored files match the lockfile" : "vendored into public/vendor");
