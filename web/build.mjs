// Builds the console into web/dist: one JS bundle (esbuild), one stylesheet (uPlot's and ours) and
// index.html. Run by `npm run build` (make setup); offline, from node_modules only.
import { build } from "esbuild";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, "dist");
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(web, "src", "main.ts")],
  outfile: join(dist, "app.js"),
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
});
const uplotCss = await readFile(join(web, "..", "node_modules", "uplot", "dist", "uPlot.min.css"), "utf8");
const ours = await readFile(join(web, "src", "styles.css"), "utf8");
await writeFile(join(dist, "app.css"), `${uplotCss}\n${ours}`);
await copyFile(join(web, "src", "index.html"), join(dist, "index.html"));
console.log(`console built into ${dist}`);
