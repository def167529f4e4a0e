/**
 * Bundles the CLI (which carries the sidecar) into one ESM file for the `bin` entry and the
 * sidecar image: `node scripts/bundle.ts [--outfile dist/portcullis.mjs]`.
 */
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const { values } = parseArgs({ options: { outfile: { type: 'string', default: 'dist/portcullis.mjs' } } });

await build({
  entryPoints: [new URL('../cli/main.ts', import.meta.url).pathname],
  outfile: values.outfile,
  bundle: true,
  platform: 'node',
  target: 'node22',
  format: 'esm',
  sourcemap: true,
  // Some CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
