// Validates AsyncAPI documents with the reference parser (@asyncapi/parser), offline.
//
//   node tools/asyncapi/validate.mjs asyncapi.yaml [more.yaml ...]
//
// Prints every diagnostic as `file:line:col severity code: message (path)`. Exits 1 when any
// document has an error (severity 0) or cannot be read, 2 on wrong usage, else 0. Warnings and
// hints are printed but do not fail the run.
import { readFile } from "node:fs/promises";

import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "info", "hint"];

async function validate(parser, file) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    console.error(`${file}: cannot read: ${err.message}`);
    return 1;
  }
  const { document, diagnostics } = await parser.parse(text, { source: file });
  let errors = 0;
  for (const d of diagnostics) {
    const start = d.range?.start ?? { line: 0, character: 0 };
    const where = `${file}:${start.line + 1}:${start.character + 1}`;
    const path = d.path?.length ? ` (${d.path.join(".")})` : "";
    console.log(`${where} ${SEVERITY[d.severity] ?? d.severity} ${d.code}: ${d.message}${path}`);
    if (d.severity === 0) errors += 1;
  }
  if (document === undefined && errors === 0) {
    console.error(`${file}: the parser returned no document`);
    errors += 1;
  }
  console.log(
    errors === 0
      ? `${file}: valid AsyncAPI ${document.version()} (${diagnostics.length} non-error diagnostics)`
      : `${file}: ${errors} error(s)`,
  );
  return errors === 0 ? 0 : 1;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tools/asyncapi/validate.mjs FILE.yaml [FILE ...]");
  process.exit(2);
}
const parser = new Parser();
let failed = 0;
for (const file of files) {
  failed |= await validate(parser, file);
}
process.exit(failed);
