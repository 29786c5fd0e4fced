// Pages served under a mount point (an ASGI app at /collab): URLs keep the prefix.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { basePath } from '../src/base.js'
import { defaultServerUrl } from '../src/editor.js'
import { docNameFromPath } from '../src/main.js'

const page = (base) => ({ body: { dataset: base === undefined ? {} : { collabBase: base } } })

test('the base is what the page says, and nothing without the attribute', () => {
  assert.equal(basePath(page('/collab')), '/collab')
  assert.equal(basePath(page('')), '')
  assert.equal(basePath(page(undefined)), '')
  assert.equal(basePath(undefined), '')
})

test('the WebSocket goes below the base, on the page\'s own host and scheme', () => {
  const loc = { protocol: 'https:', host: 'example.org:8443' }
  assert.equal(defaultServerUrl(loc, '/collab'), 'wss://example.org:8443/collab')
  assert.equal(defaultServerUrl({ ...loc, protocol: 'http:' }, ''), 'ws://example.org:8443')
})

test('the document name is read below the base, and may hold /', () => {
  assert.equal(docNameFromPath('/collab/d/team-a/notes', '/collab'), 'team-a/notes')
  assert.equal(docNameFromPath('/collab/history/a%40b', '/collab'), 'a@b')
  assert.equal(docNameFromPath('/d/notes', ''), 'notes')
  // A document named like the base is still a document at the root.
  assert.equal(docNameFromPath('/d/collab/d/x', '/collab'), 'collab/d/x')
})
