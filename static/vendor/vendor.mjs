// Copies the built front-end files from node_modules/ into static/vendor/.
// Run with `npm run vendor` after `npm install`. Versions come from package.json.
// Plain Node, no dependencies.
import { copyFileSync, mkdirSync, rmSync, statSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const vendorDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(vendorDir, "..", "..");
const nm = join(root, "node_modules");

// [package dir in node_modules, destination dir, [[source, dest-name], ...]]
const plan = [
  ["bootstrap", "bootstrap", [
    ["dist/css/bootstrap.min.css"],
    ["dist/css/bootstrap.min.css.map"],
    ["dist/js/bootstrap.bundle.min.js"],
    ["dist/js/bootstrap.bundle.min.js.map"],
    ["LICENSE"],
  ]],
  ["bootstrap-icons", "bootstrap-icons", [
    ["font/bootstrap-icons.min.css"],
    ["font/fonts/bootstrap-icons.woff", "fonts/bootstrap-icons.woff"],
    ["font/fonts/bootstrap-icons.woff2", "fonts/bootstrap-icons.woff2"],
    ["LICENSE"],
  ]],
  ["htmx.org", "htmx", [
    ["dist/htmx.min.js"],
    ["LICENSE"],
  ]],
  ["uplot", "uplot", [
    ["dist/uPlot.iife.min.js"],
    ["dist/uPlot.min.css"],
    ["LICENSE"],
  ]],
];

let failed = false;
for (const [pkg, destName, files] of plan) {
  const src = join(nm, pkg);
  if (!existsSync(src)) {
    console.error(`missing node_modules/${pkg}: run \`npm install\` first`);
    process.exit(1);
  }
  const dest = join(vendorDir, destName);
  rmSync(dest, { recursive: true, force: true });
  for (const [from, to] of files) {
    const out = join(dest, to ?? from.split("/").pop());
    mkdirSync(dirname(out), { recursive: true });
    copyFileSync(join(src, from), out);
    const size = statSync(out).size;
    if (size === 0) {
      console.error(`empty file: ${out}`);
      failed = true;
    }
    console.log(`${String(size).padStart(8)}  ${out.slice(root.length + 1)}`);
  }
}
process.exit(failed ? 1 : 0);
