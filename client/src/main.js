// Entry point of collab's bundle (collab/static/app.js).
//
// Pages served by collab mark their <body> with data-collab-page; the matching view
// starts on load. Embedding pages import { mountEditor } from this module and call it
// themselves (docs/browser-client.md); nothing runs for them unasked.

import { mountEditor } from './editor.js'
import { mountHistory } from './history.js'
import { mountHome } from './home.js'
import { basePath } from './base.js'
import { withToken } from './token.js'

export { mountEditor, defaultServerUrl } from './editor.js'
export { TextareaBinding, diff } from './binding.js'
export { roomEvents, typingLine } from './events.js'

/** The document name from a `[base]/d/<doc>` or `[base]/history/<doc>` URL; the name may
 * hold '/'. */
export function docNameFromPath (pathname = window.location.pathname, base = basePath()) {
  if (base && pathname.startsWith(base + '/')) pathname = pathname.slice(base.length)
  const match = /^\/(?:d|history)\/(.+)$/.exec(pathname)
  return match ? match[1].split('/').map(decodeURIComponent).join('/') : null
}

function start () {
  const page = document.body.dataset.collabPage
  // Links between the pages keep the page's ?token= (the lists and exports add it too).
  for (const a of document.querySelectorAll('a[href^="/"]')) a.setAttribute('href', withToken(a.getAttribute('href')))
  if (page === 'home') {
    mountHome(document.body)
  } else if (page === 'editor') {
    const docName = docNameFromPath()
    document.title = `${docName} · collab`
    const editor = mountEditor(document.getElementById('editor'), {
      docName,
      status: document.getElementById('status'),
      presence: document.getElementById('presence'),
      typing: document.getElementById('typing'),
      nameInput: document.getElementById('name'),
      selfDot: document.getElementById('self-dot')
    })
    // A handle for the console and for tests; nothing in the page depends on it.
    window.collabEditor = editor
    document.getElementById('editor').focus()
  } else if (page === 'history') {
    const docName = docNameFromPath()
    document.title = `History of ${docName} · collab`
    mountHistory(document.body, docName)
  }
}

if (typeof document !== 'undefined' && document.body?.dataset.collabPage) start()
