// Parses every ```mermaid block of the Markdown files named on the command line with Mermaid's
// own parser (the one that renders them where the code is hosted), in a jsdom window instead of
// a browser. Prints one line per diagram; exits 1 if any does not parse.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let diagrams = 0;
let failures = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  for (const match of text.matchAll(/^```mermaid\n([\s\S]*?)^```/gm)) {
    diagrams += 1;
    const line = text.slice(0, match.index).split("\n").length;
    try {
      const parsed = await mermaid.parse(match[1]);
      console.log(`${file}:${line}: ${parsed.diagramType}`);
    } catch (error) {
      failures += 1;
      const reason = String(error?.message ?? error).split("\n").slice(0, 3).join(" ");
      console.log(`${file}:${line}: does not parse: ${reason}`);
    }
  }
}
console.log(`${diagrams} diagram(s), ${failures} that do not parse`);
process.exit(failures ? 1 : 0);
