// Connection: one document's link to the collab server - WebSocket first, and the HTTP
// fallback by itself when the network refuses WebSockets.
//
// Both transports are stock-shaped providers on the same Y.Doc and the same Awareness:
// y-websocket's WebsocketProvider, and our HttpProvider (same messages over SSE + POST).
// Only one is connected at a time. The policy:
//
// - A WebSocket attempt that closes before its first message arrives (an upgrade refused
//   with 403, a socket a proxy closes right after opening), or that has no message
//   within `fallbackAfter` ms (one that opens and carries nothing), counts as failed. The
//   server greets every editor at once, so a working socket hears from it at once, even
//   when the first sync of a big document then takes a while.
// - After a failed attempt we ask the server over plain HTTP (HttpProvider.probe: it
//   opens a fallback session). If it answers, the network refuses WebSockets but not
//   HTTP: switch to the fallback, keeping that session. If it does not answer, we are
//   simply offline; y-websocket keeps retrying, and so do we (probes back off).
// - On the fallback, a WebSocket is tried again later (`websocketRetry` ms, doubling up
//   to `websocketRetryMax`): a plain WebSocket that receives one message means the way
//   is open again, and the page moves back to WebSocket.
//
// A close code 4400-4499 (4401 a missing, bad or expired token, 4403 forbidden, 4404
// deleted, 4413 too large) is permanent: retrying with the same token cannot help, so
// both providers stop (y-websocket's shouldReconnect) and the connection emits 'closed'
// ({code, reason}) for the page to say why, and tries no transport again. A
// WebSocket handshake the server refused (401/403) reaches the page only as a silent
// close; the HTTP probe that follows hears the reason and stops the same way. The auth
// message (type 2) is emitted as 'permission-denied' (reason: 'read-only' for a read token).
//
// Switching never touches the Y.Doc: the new transport starts with the usual state-vector
// exchange, so each side sends only what the other lacks.

import { WebsocketProvider } from 'y-websocket'
import { Awareness } from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import { ObservableV2 } from 'lib0/observable'
import { HttpProvider } from './httpprovider.js'
import { docPath } from './api.js'

/** The http(s) URL of the server a ws(s) URL names. */
export const httpUrl = (serverUrl) => serverUrl.replace(/^ws(s?):/i, 'http$1:')

const PROBE_BACKOFF_MAX = 30000

export class Connection extends ObservableV2 {
  /**
   * @param {string} serverUrl `ws(s)://host[:port][/prefix]`
   * @param {string} docName
   * @param {import('yjs').Doc} doc
   * @param {object} [opts]
   * @param {Object<string,string>} [opts.params] query parameters of every connection
   * @param {'auto'|'websocket'|'http'} [opts.transport] 'auto': WebSocket, falling back to HTTP
   * @param {number} [opts.fallbackAfter] ms a WebSocket attempt may stay silent
   * @param {number} [opts.websocketRetry] ms on the fallback before trying WebSocket again
   * @param {number} [opts.websocketRetryMax] the longest of those waits
   */
  constructor (serverUrl, docName, doc, {
    params = {},
    transport = 'auto',
    fallbackAfter = 4000,
    websocketRetry = 5000,
    websocketRetryMax = 60000
  } = {}) {
    super()
    this.doc = doc
    this.mode = transport
    this.fallbackAfter = fallbackAfter
    this.websocketRetry = websocketRetry
    this.websocketRetryMax = websocketRetryMax
    this.awareness = new Awareness(doc)
    // BroadcastChannel sync between tabs is off: the server is the one source of truth.
    // Both providers append the room to the URL as it is: give them the encoded path.
    this.websocket = new WebsocketProvider(serverUrl, docPath(docName), doc, {
      awareness: this.awareness, params, disableBc: true, connect: false
    })
    this.http = new HttpProvider(httpUrl(serverUrl), docPath(docName), doc, {
      awareness: this.awareness, params, connect: false
    })
    /** @type {'websocket'|'http'} the transport in use */
    this.transport = transport === 'http' ? 'http' : 'websocket'
    this._attempt = null // {heard, timer} of the current WebSocket attempt
    this._probing = false
    this._probeDelay = 1000
    this._nextProbe = 0
    this._retryDelay = websocketRetry
    this._retryTimer = null
    this._wsProbe = null

    for (const provider of [this.websocket, this.http]) {
      provider.on('status', (event) => { if (provider === this.provider) this.emit('status', [event]) })
      provider.on('sync', (synced) => { if (provider === this.provider) this.emit('sync', [synced]) })
      provider.on('closed', (event) => { if (provider === this.provider) this._closed(event) })
    }
    this.http.on('permission-denied', (reason) => this.emit('permission-denied', [reason]))
    this.websocket.messageHandlers[2] = (_encoder, decoder, provider) => {
      authProtocol.readAuthMessage(decoder, provider.doc, (_doc, reason) => {
        this.emit('permission-denied', [reason])
      })
    }
    this.websocket.on('status', ({ status }) => {
      if (status === 'connecting') this._startAttempt(this.websocket.ws)
    })
    this.websocket.on('connection-close', (event) => {
      const attempt = this._attempt
      this._attempt = null
      if (!attempt) return
      clearTimeout(attempt.timer)
      // The server refused the document itself (4400-4499): another transport won't help.
      const refused = event && event.code >= 4400 && event.code < 4500
      if (!attempt.heard && !refused) this._websocketFailed()
    })
    this.provider.connect()
  }

  /** The provider in use (a WebsocketProvider or an HttpProvider). */
  get provider () {
    return this.transport === 'http' ? this.http : this.websocket
  }

  get synced () { return this.provider.synced }

  /** connecting | connected | disconnected, as y-websocket says it. */
  get status () {
    const provider = this.provider
    if (provider === this.http) return provider.status
    return provider.wsconnected ? 'connected' : provider.wsconnecting ? 'connecting' : 'disconnected'
  }

  destroy () {
    clearTimeout(this._retryTimer)
    if (this._attempt) clearTimeout(this._attempt.timer)
    this._attempt = null
    this._closeProbe()
    this.websocket.destroy()
    this.http.destroy()
    this.awareness.destroy()
    super.destroy()
  }

  /** Closed for good (a permanent code): no more attempts on either transport. */
  _closed (event) {
    this.mode = 'closed'
    clearTimeout(this._retryTimer)
    this._closeProbe()
    this.emit('closed', [event])
  }

  // -- WebSocket first ----------------------------------------------------------------------

  /** Watch one WebSocket attempt: it works once a first message arrives on it. */
  _startAttempt (socket) {
    if (this._attempt) clearTimeout(this._attempt.timer)
    const attempt = { heard: false, timer: null }
    // The server greets every editor at once; a socket silent this long carries nothing.
    attempt.timer = setTimeout(() => {
      if (this._attempt === attempt && !attempt.heard) this._websocketFailed()
    }, this.fallbackAfter)
    socket?.addEventListener('message', () => {
      attempt.heard = true
      clearTimeout(attempt.timer)
      this._probeDelay = 1000
      this._retryDelay = this.websocketRetry
    }, { once: true })
    this._attempt = attempt
  }

  async _websocketFailed () {
    if (this.mode !== 'auto' || this.transport !== 'websocket' || this._probing) return
    if (Date.now() < this._nextProbe) return
    this._probing = true
    const answered = await this.http.probe()
    this._probing = false
    if (this.transport !== 'websocket') return
    if (this._attempt?.heard) {
      this.http.disconnect() // the WebSocket came through after all: drop the probe's session
      return
    }
    if (!answered) { // offline: both ways are down; try again, less and less often
      this._nextProbe = Date.now() + this._probeDelay
      this._probeDelay = Math.min(this._probeDelay * 2, PROBE_BACKOFF_MAX)
      return
    }
    this._switch('http')
  }

  // -- ...and back ----------------------------------------------------------------------------

  _scheduleRetry () {
    clearTimeout(this._retryTimer)
    this._retryTimer = setTimeout(() => this._probeWebsocket(), this._retryDelay)
    this._retryDelay = Math.min(this._retryDelay * 2, this.websocketRetryMax)
  }

  _probeWebsocket () {
    if (this.transport !== 'http' || this.mode === 'closed') return
    // A plain WebSocket on the document: the server greets every editor at once, so one
    // message proves the way is open. It closes normally, as a visit that changed nothing.
    const socket = new WebSocket(this.websocket.url)
    socket.binaryType = 'arraybuffer'
    const done = (open) => {
      if (this._wsProbe !== socket) return
      this._closeProbe()
      if (open && this.transport === 'http') this._switch('websocket')
      else this._scheduleRetry()
    }
    socket.onmessage = () => done(true)
    socket.onclose = () => done(false)
    socket.onerror = () => {}
    this._wsProbe = socket
    this._wsProbeTimer = setTimeout(() => done(false), this.fallbackAfter)
  }

  _closeProbe () {
    const socket = this._wsProbe
    if (!socket) return
    this._wsProbe = null
    clearTimeout(this._wsProbeTimer)
    socket.onmessage = socket.onclose = null
    if (socket.readyState === WebSocket.OPEN) socket.close(1000)
    else if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(1000)
  }

  _switch (transport) {
    const from = this.provider
    this.transport = transport
    from.disconnect()
    if (transport === 'http') {
      this._scheduleRetry()
    } else {
      clearTimeout(this._retryTimer)
    }
    this.provider.connect()
    this.emit('transport', [transport])
    this.emit('status', [{ status: this.status }])
    this.emit('sync', [this.synced])
  }
}
