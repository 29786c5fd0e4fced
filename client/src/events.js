// Room events (collab's message type 101, docs/protocol.md): JSON messages between the
// editors of one document, stamped with their sender by the server, never stored.
//
// The provider asks for them with `?events=1` (set by mountEditor); stock y-websocket
// clients never ask, so the server never sends them a type they would log as unknown.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

export const messageEvent = 101

/**
 * Teach `connection` room events: a Connection (connection.js: its WebSocket and HTTP
 * fallback providers both learn them) or a bare y-websocket WebsocketProvider, created
 * with params {events: '1'}. Returns {send(data, to), on(listener), id()}:
 * `listener({sender, user, data, to})` is called for each event from another connection;
 * `id()` is this connection's id, as the server told it.
 */
export function roomEvents (connection) {
  const listeners = new Set()
  let self = null
  const receive = (decoder) => {
    let value
    try {
      value = JSON.parse(decoding.readVarString(decoder))
    } catch (e) {
      return
    }
    if (value.self) {
      self = value.self.id
      return
    }
    if (!value.sender) return
    const event = { sender: value.sender.id, user: value.sender.user, data: value.data, to: value.to ?? null }
    for (const listener of listeners) listener(event)
  }
  const providers = connection.websocket ? [connection.websocket, connection.http] : [connection]
  for (const provider of providers) {
    provider.messageHandlers[messageEvent] = (_encoder, decoder) => receive(decoder)
  }
  connection.on('status', ({ status }) => { if (status !== 'connected') self = null })
  return {
    /** Send `data` to everyone else on the document, or to connection `to`; false if offline. */
    send (data, to = null) {
      const provider = connection.provider ?? connection
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, messageEvent)
      encoding.writeVarString(encoder, JSON.stringify(to === null ? { data } : { data, to }))
      const frame = encoding.toUint8Array(encoder)
      if ('wsconnected' in provider) { // y-websocket (its ws is null while offline)
        if (!provider.wsconnected || !provider.ws) return false
        provider.ws.send(frame)
        return true
      }
      return provider.sendMessage(frame) // the HTTP fallback
    },
    on (listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    id: () => self
  }
}

/** How long a "typing" event keeps its sender on the line, and how often one is sent. */
export const TYPING_SHOWN_MS = 3000
export const TYPING_EVERY_MS = 1000

/**
 * Who is typing: `noteTyping()` on each local keystroke sends at most one event a second;
 * `typing()` names those whose last event is under 3 s old; `onChange` runs when that changes.
 */
export function typingIndicator (events, myName, onChange, now = () => Date.now()) {
  const typists = new Map() // sender id -> {name, until}
  let lastSent = -Infinity
  let timer = null
  const names = () => [...typists.values()].filter((t) => t.until > now()).map((t) => t.name)
  const expire = () => {
    timer = null
    for (const [id, t] of typists) if (t.until <= now()) typists.delete(id)
    onChange(names())
    const next = Math.min(...[...typists.values()].map((t) => t.until))
    if (Number.isFinite(next)) timer = setTimeout(expire, Math.max(0, next - now()))
  }
  const off = events.on(({ sender, data }) => {
    if (!data || data.typing !== true) return
    const name = typeof data.name === 'string' && data.name ? data.name.slice(0, 60) : 'someone'
    typists.set(sender, { name, until: now() + TYPING_SHOWN_MS })
    if (timer === null) timer = setTimeout(expire, TYPING_SHOWN_MS)
    onChange(names())
  })
  return {
    noteTyping () {
      if (now() - lastSent < TYPING_EVERY_MS) return
      if (events.send({ typing: true, name: myName() })) lastSent = now()
    },
    typing: names,
    destroy () {
      off()
      if (timer !== null) clearTimeout(timer)
    }
  }
}

/** The line shown for `names`: "Ann is typing…", "Ann and Bo are typing…", "" for nobody. */
export function typingLine (names) {
  if (names.length === 0) return ''
  if (names.length === 1) return `${names[0]} is typing…`
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`
}
