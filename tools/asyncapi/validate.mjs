// Validate an AsyncAPI document with the official parser: prints each diagnostic as one JSON
// line and a summary; exits 1 when the document has errors (severity 0) or does not parse.
import { Parser, fromFile } from '@asyncapi/parser';

const path = process.argv[2];
const { document, diagnostics } = await fromFile(new Parser(), path).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message,
                               path: d.path.join('.') }));
}
if (!document || errors.length) {
  console.log(`${path}: ${errors.length} errors`);
  process.exit(1);
}
console.log(`${path}: valid, ${document.channels().length} channels, ` +
            `${document.operations().length} operations, ${document.messages().length} messages`);
