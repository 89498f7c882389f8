// Static server for the web demo (no dependencies): serves this folder, the wasm package built
// by `.ci/wasm.sh` under /pkg/ and the thin client under /js/. Usage:
//   node serve.mjs [--port 8000] [--pkg ../../target/haven-web-pkg]
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm", ".json": "application/json", ".ts": "text/plain; charset=utf-8",
};

/** A server for the demo; `pkgDir` holds the wasm-bindgen output (`--target web`). */
export function demoServer(pkgDir) {
  const roots = [
    ["/pkg/", resolve(pkgDir)],
    ["/js/", resolve(here, "../../bindings/wasm/js")],
    ["/", here],
  ];
  return createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const [prefix, root] = roots.find(([p]) => path.startsWith(p));
    let rel = normalize(path.slice(prefix.length));
    if (rel === "." || rel === "") rel = "index.html";
    const file = join(root, rel);
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
                           "Cache-Control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
    }
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const port = Number(arg("--port", "8000"));
  const pkg = arg("--pkg", resolve(here, "../../target/haven-web-pkg"));
  demoServer(pkg).listen(port, "127.0.0.1", () =>
    console.log(`Haven web demo on http://127.0.0.1:${port}/ (pkg: ${pkg})`));
}
