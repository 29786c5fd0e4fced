// Build collab/static/app.js from src/ with the pinned esbuild.
//
//   node build.mjs [outfile]      (default: ../collab/static/app.js)
//
// The output is committed, so `collab serve` needs no Node; tests/test_client_bundle.py
// rebuilds into a temporary file and checks it is byte-identical to the committed one.
// Every option that shapes the bytes is fixed here - keep it that way.

import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const outfile = path.resolve(process.argv[2] ?? path.join(here, '..', 'collab', 'static', 'app.js'))

await build({
  absWorkingDir: here,
  entryPoints: ['src/main.js'],
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  platform: 'browser',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
  outfile
})
