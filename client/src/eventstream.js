// The HTTP fallback's framing (docs/protocol.md, "HTTP fallback"), without I/O:
// POST bodies are batches of varUint8Array-framed y-websocket messages, and the
// server's text/event-stream carries one base64 message per event.

import * as encoding from 'lib0/encoding'

/**
 * One POST body holding `messages` (Uint8Arrays), in order.
 * @param {Uint8Array[]} messages
 * @returns {Uint8Array}
 */
export function encodeBatch (messages) {
  const encoder = encoding.createEncoder()
  for (const message of messages) encoding.writeVarUint8Array(encoder, message)
  return encoding.toUint8Array(encoder)
}

/** The bytes of a base64 string (an event's data). */
export function fromBase64 (text) {
  const binary = atob(text)
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i)
  return out
}

/**
 * Reads text/event-stream as it arrives, chunk boundaries anywhere: lines end with LF
 * or CRLF, a blank line dispatches, `data` lines join with LF, `:` lines are comments,
 * an event without data is not dispatched, and the last `id` seen is kept (the
 * Last-Event-ID of a resume), as the WHATWG rules (and EventSource) have it.
 */
export class EventStreamParser {
  constructor () {
    this.buffer = ''
    this.data = []
    this.event = ''
    this.id = null
    /** @type {string|null} */
    this.lastEventId = null
  }

  /**
   * @param {string} text the next decoded chunk
   * @returns {{id: string|null, event: string, data: string}[]} the events it completes
   */
  feed (text) {
    this.buffer += text
    const events = []
    let start = 0
    let end
    while ((end = this.buffer.indexOf('\n', start)) !== -1) {
      let line = this.buffer.slice(start, end)
      if (line.endsWith('\r')) line = line.slice(0, -1)
      start = end + 1
      const event = this.line(line)
      if (event) events.push(event)
    }
    this.buffer = this.buffer.slice(start)
    return events
  }

  line (line) {
    if (line === '') return this.dispatch()
    if (line.startsWith(':')) return null
    const colon = line.indexOf(':')
    const name = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (name === 'data') this.data.push(value)
    else if (name === 'event') this.event = value
    else if (name === 'id' && !value.includes('\0')) this.id = value
    return null
  }

  dispatch () {
    if (this.id !== null) this.lastEventId = this.id
    const data = this.data
    const event = this.event || 'message'
    this.data = []
    this.event = ''
    this.id = null
    if (data.length === 0) return null
    return { id: this.lastEventId, event, data: data.join('\n') }
  }
}
