// mountEditor: one collaborative textarea, its connection, status line and presence.
//
// The connection (connection.js) is y-websocket's stock WebsocketProvider - reconnect
// with backoff, resync by state vectors and awareness all come from it - and, where a
// network refuses WebSockets, collab's HTTP fallback carrying the very same messages.
// The document is also kept in the browser's IndexedDB (y-indexeddb), so what was typed
// offline survives closing the tab and reaches the server when the page is opened again.
// Room events (type 101, asked for with ?events=1) say who is typing (events.js).
// This module only wires the pieces together and keeps the status line honest.

import * as Y from 'yjs'
import { IndexeddbPersistence } from 'y-indexeddb'
import { Connection } from './connection.js'
import { TextareaBinding } from './binding.js'
import { roomEvents, typingIndicator, typingLine } from './events.js'
import { chooseColor, loadName, others, saveName, setUser } from './presence.js'
import { pageToken, tokenClaims } from './token.js'
import { basePath } from './base.js'

/** `ws(s)://host:port[/prefix]` of the page itself, so any proxy that forwards the page
 * forwards us; the prefix is collab's mount point on that host (base.js). */
export function defaultServerUrl (loc = window.location, base = basePath()) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}${base}`
}

/**
 * Bind `textarea` to the root text of document `docName` on the collab server.
 *
 * @param {HTMLTextAreaElement} textarea
 * @param {object} options
 * @param {string} options.docName
 * @param {string} [options.serverUrl] default: the host that served the page
 * @param {string} [options.textName] root Y.Text name; collab's history reads "text"
 * @param {HTMLElement} [options.status] receives the status line text (and data-state)
 * @param {HTMLElement} [options.presence] receives one chip per other person here
 * @param {HTMLElement} [options.typing] receives "<name> is typing…" (room events)
 * @param {HTMLInputElement} [options.nameInput] the user's name, remembered locally
 * @param {HTMLElement} [options.selfDot] shows the user's own colour
 * @param {'auto'|'websocket'|'http'} [options.transport] 'auto' (default): WebSocket, and the
 *        HTTP fallback when the network refuses it
 * @param {boolean} [options.offline] keep the document in IndexedDB (default true)
 * @param {string|null} [options.token] access token (default: ?token= of the page URL), sent
 *        with every connection; a `read` token makes the textarea read-only
 * @param {boolean} [options.readOnly] show the text read-only (default: from the token; the
 *        server's auth message 'read-only' turns it on too)
 * @returns {{doc: Y.Doc, text: Y.Text, provider: Connection, binding: TextareaBinding,
 *            persistence: IndexeddbPersistence|null, storedText: () => Promise<string>,
 *            state: () => {status: string, synced: boolean, unsynced: number, transport: string,
 *                           readOnly: boolean, closed: string|null},
 *            events: {send: Function, on: Function, id: Function}, typing: () => string[],
 *            destroy: () => void}}
 */
export function mountEditor (textarea, options) {
  const { docName, serverUrl = defaultServerUrl(), textName = 'text', transport = 'auto' } = options
  const doc = new Y.Doc()
  const text = doc.getText(textName)
  const binding = new TextareaBinding(text, textarea)
  // One IndexedDB database per server and document. Edits are stored as they happen;
  // what is stored is loaded into the doc on open and, like any local change, synced.
  const storageName = `collab:${serverUrl}/${docName}`
  const persistence = options.offline === false || typeof indexedDB === 'undefined'
    ? null
    : new IndexeddbPersistence(storageName, doc)
  // "synced" on the status line means "the server has it", not "another tab has it":
  // the connection has no BroadcastChannel between tabs.
  const token = options.token === undefined ? pageToken() : options.token
  const params = token ? { events: '1', token } : { events: '1' }
  const provider = new Connection(serverUrl, docName, doc, { transport, params })
  const events = roomEvents(provider)
  const { awareness } = provider

  let status = provider.status // connecting | connected | disconnected
  let everConnected = false
  let closedReason = null
  let unsynced = 0
  let readOnly = options.readOnly ?? tokenClaims(token).mode === 'read'
  const showReadOnly = () => {
    textarea.readOnly = readOnly
    textarea.dataset.readonly = String(readOnly)
    if (readOnly) textarea.placeholder = 'Read-only: this link lets you read, not edit.'
  }
  showReadOnly()

  const render = () => {
    const el = options.status
    if (!el) return
    let state, label
    el.dataset.transport = provider.transport
    const via = provider.transport === 'http' ? ' · http fallback' : ''
    el.dataset.readonly = String(readOnly)
    if (closedReason !== null) {
      state = 'closed'
      label = `disconnected · ${closedReason}`
    } else if (status === 'connected' && provider.synced) {
      state = 'synced'
      label = `connected · synced${via}`
    } else if (status === 'connected') {
      state = 'syncing'
      label = `connected · syncing${via}`
    } else if (!everConnected) {
      state = 'connecting'
      label = 'connecting'
    } else {
      state = 'offline'
      label = `offline · ${unsynced} unsynced edit${unsynced === 1 ? '' : 's'}`
    }
    if (readOnly && state !== 'closed') label += ' · read-only'
    el.dataset.state = state
    el.textContent = label
  }

  const renderPresence = () => {
    const el = options.presence
    if (!el) return
    const people = others(awareness)
    el.replaceChildren(...people.map(({ name, color }) => {
      const chip = document.createElement('span')
      chip.className = 'person'
      chip.title = name
      const dot = document.createElement('span')
      dot.className = 'dot'
      dot.style.background = color
      chip.append(dot, document.createTextNode(name))
      return chip
    }))
    el.dataset.count = String(people.length)
  }

  provider.on('status', ({ status: s }) => {
    status = s
    if (s === 'connected') {
      everConnected = true
      closedReason = null
    }
    render()
  })
  provider.on('sync', (synced) => {
    // The server answered our step 1, and our step 2 (everything done offline) went out
    // before that answer was read: nothing local is pending any more.
    if (synced) unsynced = 0
    render()
  })
  provider.on('transport', render)
  provider.on('closed', ({ code, reason }) => {
    closedReason = reason ? `${reason} (${code})` : `the server refused this document (${code})`
    render()
  })
  provider.on('permission-denied', (reason) => {
    if (reason === 'read-only' && !readOnly) {
      readOnly = true
      showReadOnly()
      render()
    }
  })
  doc.on('update', (_update, origin) => {
    const local = origin === binding.origin || origin === binding.undoManager
    if (local && !(status === 'connected' && provider.synced)) {
      unsynced++
      render()
    }
  })

  const name = loadName(doc.clientID)
  const showOwnColor = () => {
    if (options.selfDot) options.selfDot.style.background = awareness.getLocalState()?.user?.color ?? ''
  }
  setUser(awareness, name)
  showOwnColor()
  // Someone who was here first may show our colour: take the next free one.
  awareness.on('change', () => {
    const user = awareness.getLocalState()?.user
    if (!user) return
    const color = chooseColor(awareness)
    if (color !== user.color) {
      setUser(awareness, user.name, color)
      showOwnColor()
    }
  })
  if (options.nameInput) {
    const input = options.nameInput
    input.value = name
    input.addEventListener('change', () => {
      const chosen = input.value.trim().slice(0, 60)
      if (!chosen) { input.value = awareness.getLocalState()?.user?.name ?? name; return }
      input.value = chosen
      saveName(chosen)
      setUser(awareness, chosen, awareness.getLocalState()?.user?.color)
    })
  }
  awareness.on('change', renderPresence)
  render()
  renderPresence()

  const typing = typingIndicator(
    events,
    () => awareness.getLocalState()?.user?.name ?? name,
    (names) => {
      const el = options.typing
      if (!el) return
      el.textContent = typingLine(names)
      el.dataset.count = String(names.length)
    }
  )
  textarea.addEventListener('input', () => typing.noteTyping())

  return {
    doc,
    text,
    provider,
    binding,
    persistence,
    events,
    typing: typing.typing,
    /** The text this browser holds for the document in IndexedDB (what survives the tab). */
    async storedText () {
      if (!persistence) return ''
      const copy = new Y.Doc()
      const reader = new IndexeddbPersistence(storageName, copy)
      await reader.whenSynced
      const stored = copy.getText(textName).toString()
      await reader.destroy()
      copy.destroy()
      return stored
    },
    state: () => ({
      status, synced: provider.synced, unsynced, transport: provider.transport, readOnly, closed: closedReason
    }),
    destroy () {
      typing.destroy()
      binding.destroy()
      provider.destroy()
      persistence?.destroy()
      doc.destroy()
    }
  }
}
