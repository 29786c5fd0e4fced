// Bundle page.js (stock yjs + y-webrtc from this folder's node_modules) for the test page.
//
//   node build.mjs <outdir>      writes <outdir>/page.js next to a copy of index.html
//
// tests/browser/test_webrtc.py runs this into a temporary folder that a plain static
// server serves; nothing built is committed.

import { build } from 'esbuild'
import { copyFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const outdir = path.resolve(process.argv[2])

await build({
  absWorkingDir: here,
  entryPoints: ['page.js'],
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  platform: 'browser',
  logLevel: 'warning',
  outfile: path.join(outdir, 'page.js')
})
copyFileSync(path.join(here, 'index.html'), path.join(outdir, 'index.html'))
