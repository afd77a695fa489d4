// Builds plugin.js into a WebAssembly component for the `plugin` world of wit/v0.1.0:
//   node build.mjs OUT.wasm
// (run by tests/build-js-plugin.sh, which installs @bytecodealliance/componentize-js first).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = process.argv[2] ?? 'openai_js.wasm';
const { component } = await componentize({
  sourcePath: here('./plugin.js'),
  witPath: here('../../wit/v0.1.0'),
  worldName: 'plugin',
  // A provider needs no network, clock or HTTP of its own: the host does all I/O.
  disableFeatures: ['http', 'fetch-event', 'clocks'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
