// HttpProvider: a Yjs provider over collab's HTTP fallback - server-sent events down,
// POSTs up - for networks that refuse WebSocket upgrades (docs/protocol.md, "HTTP fallback").
//
// It speaks the very messages y-websocket's WebsocketProvider speaks (y-protocols' sync,
// awareness and auth), so the server treats it as one more editor, and it looks like
// one to the page: events 'status' ({status: connecting | connected | disconnected}),
// 'sync' (bool) and 'closed' ({code, reason}: the server refused us for good); the
// properties doc, awareness, synced; connect(), disconnect(), destroy().
//
// One session at a time. Its event stream, when cut, is resumed with Last-Event-ID and
// the same session goes on: nothing is resent or lost. Messages go out in POSTs of
// one batch each, one POST in flight, each with the session's next sequence number;
// a POST that fails is retried with the same number and body, and the server applies
// it once. When the session is gone (expired, closed by the server, too far behind)
// the provider opens a new one and resyncs by state vectors, as y-websocket does on a
// reconnect. The local Y.Doc is never reset.

import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'
import * as authProtocol from 'y-protocols/auth'
import * as awarenessProtocol from 'y-protocols/awareness'
import { ObservableV2 } from 'lib0/observable'
import { EventStreamParser, encodeBatch, fromBase64 } from './eventstream.js'

const messageSync = 0
const messageAwareness = 1
const messageAuth = 2
const messageQueryAwareness = 3

/** Messages queued while a POST is in flight go out together, up to about this many bytes. */
const BATCH_BYTES = 1 << 20

/** The session is over (expired, closed by the server); `code` is its WebSocket close code. */
class SessionGone extends Error {
  constructor (code, reason, local = false) {
    super(reason)
    this.code = code
    this.reason = reason
    /** We gave up on it, the server does not know yet. */
    this.local = local
  }
}

/** Close codes 4400-4499 are permanent, as y-websocket reads them: do not come back. */
const permanent = (code) => code >= 4400 && code < 4500

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function jsonOf (response) {
  try { return await response.json() } catch { return {} }
}

export class HttpProvider extends ObservableV2 {
  /**
   * @param {string} serverUrl `http(s)://host[:port][/prefix]`: the server the WebSocket would use
   * @param {string} roomname the document's path, appended to the URL as it is (as y-websocket does)
   * @param {import('yjs').Doc} doc
   * @param {object} [opts]
   * @param {boolean} [opts.connect] connect now (default true)
   * @param {awarenessProtocol.Awareness} [opts.awareness] shared with a WebsocketProvider, say
   * @param {Object<string,string>} [opts.params] query parameters of the opening request
   * @param {number} [opts.maxBackoffTime] longest wait between two attempts, in ms
   */
  constructor (serverUrl, roomname, doc, {
    connect = true,
    awareness = new awarenessProtocol.Awareness(doc),
    params = {},
    maxBackoffTime = 2500
  } = {}) {
    super()
    this.serverUrl = serverUrl.replace(/\/+$/, '')
    this.roomname = roomname
    this.doc = doc
    this.awareness = awareness
    this.params = params
    this.maxBackoffTime = maxBackoffTime
    this.shouldConnect = false
    this.status = 'disconnected'
    /** The current session: {id, keepalive, seq, lastEventId, outbox, posting, greeted, gone, ...} */
    this.session = null
    this._synced = false
    this._run = 0
    this._failures = 0
    /** Handlers of further message types, by type, called (encoder, decoder, this): as y-websocket's. */
    this.messageHandlers = []

    this._updateHandler = (update, origin) => {
      if (origin === this) return
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, messageSync)
      syncProtocol.writeUpdate(encoder, update)
      this._send(encoding.toUint8Array(encoder))
    }
    this._awarenessHandler = ({ added, updated, removed }) => {
      this._send(awarenessMessage(this.awareness, added.concat(updated, removed)))
    }
    doc.on('update', this._updateHandler)
    awareness.on('update', this._awarenessHandler)
    // A closed tab says goodbye, so its presence leaves at once rather than on expiry.
    this._pagehide = () => this._endSession()
    if (typeof window !== 'undefined') window.addEventListener('pagehide', this._pagehide)
    if (connect) this.connect()
  }

  /** The fallback's URL of this document. */
  get url () {
    return `${this.serverUrl}/_http/${this.roomname}`
  }

  get synced () { return this._synced }

  set synced (state) {
    if (this._synced !== state) {
      this._synced = state
      this.emit('synced', [state])
      this.emit('sync', [state])
    }
  }

  /**
   * Open a session now, without connecting: true when the server answered over plain
   * HTTP (so it can carry us), false when it could not be reached. The session is kept
   * for the next connect().
   */
  async probe () {
    if (this.session) return true
    try {
      await this._open()
      return true
    } catch (err) {
      return err instanceof SessionGone // a refusal is an answer too
    }
  }

  connect () {
    if (this.shouldConnect) return
    this.shouldConnect = true
    this._loop(++this._run)
  }

  disconnect () {
    this.shouldConnect = false
    this._run++
    this._endSession()
    this._setStatus('disconnected')
  }

  destroy () {
    this.disconnect()
    this.doc.off('update', this._updateHandler)
    this.awareness.off('update', this._awarenessHandler)
    if (typeof window !== 'undefined') window.removeEventListener('pagehide', this._pagehide)
    super.destroy()
  }

  // -- the session loop ---------------------------------------------------------------------

  async _loop (run) {
    while (this.shouldConnect && run === this._run) {
      try {
        if (!this.session) {
          this._setStatus('connecting')
          await this._open()
        }
        await this._stream(this.session, run)
      } catch (err) {
        if (run !== this._run) return
        const gone = err instanceof SessionGone ? err : this.session?.gone
        if (gone) {
          if (gone.local) this._endSession()
          else this._dropSession()
          if (permanent(gone.code)) {
            this.shouldConnect = false
            this._setStatus('disconnected')
            this.emit('closed', [{ code: gone.code, reason: gone.reason }])
            return
          }
        }
      }
      if (!this.shouldConnect || run !== this._run) return
      if (this.status === 'connected') this._setStatus('disconnected')
      this._failures++
      await sleep(Math.min(2 ** this._failures * 100, this.maxBackoffTime))
      if (this.shouldConnect && run === this._run && this.session) this._setStatus('connecting')
    }
  }

  async _open () {
    const query = new URLSearchParams(this.params).toString()
    const response = await fetch(this.url + (query ? `?${query}` : ''), { method: 'POST', cache: 'no-store' })
    const body = await jsonOf(response)
    if (response.status >= 400 && response.status < 500) {
      // The server refused this document (a bad name, no or a bad token): for good.
      throw new SessionGone(4000 + response.status, body.error || `HTTP ${response.status}`)
    }
    if (!response.ok || typeof body.session !== 'string') throw new Error(`HTTP ${response.status}`)
    this.session = {
      id: body.session,
      quiet: ((Number(body.keepalive) || 15) * 2 + 5) * 1000,
      seq: 0,
      lastEventId: 0,
      outbox: [],
      posting: false,
      greeted: false,
      resumed: false,
      gone: null,
      abort: new AbortController()
    }
  }

  async _stream (session, run) {
    const headers = { Accept: 'text/event-stream' }
    if (session.lastEventId > 0) headers['Last-Event-ID'] = String(session.lastEventId)
    const controller = new AbortController()
    const cancel = () => controller.abort()
    session.abort.signal.addEventListener('abort', cancel)
    try {
      const response = await fetch(`${this.url}?session=${encodeURIComponent(session.id)}`, {
        headers, cache: 'no-store', signal: controller.signal
      })
      if (response.status === 404 || response.status === 410) {
        const body = await jsonOf(response)
        throw new SessionGone(Number(body.code) || 4408, body.reason || body.error || 'session expired')
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`)
      if (run !== this._run || session !== this.session) {
        controller.abort()
        return
      }
      this._failures = 0
      this._setStatus('connected')
      if (!session.greeted) {
        session.greeted = true
        this._greet(session)
      } else {
        session.resumed = true // the same session goes on: nothing to resync
        this._checkSynced(session)
      }
      await this._read(session, response.body, controller)
    } finally {
      session.abort.signal.removeEventListener('abort', cancel)
    }
  }

  async _read (session, body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader()
    const parser = new EventStreamParser()
    // A stream that goes silent past two keepalives is dead whatever TCP thinks.
    let watchdog = setTimeout(() => controller.abort(), session.quiet)
    try {
      while (true) {
        const { value, done } = await reader.read()
        if (done) return
        clearTimeout(watchdog)
        watchdog = setTimeout(() => controller.abort(), session.quiet)
        for (const event of parser.feed(value)) {
          if (event.event === 'close') {
            const { code, reason } = JSON.parse(event.data)
            throw new SessionGone(code, reason)
          }
          if (event.event === 'message') this._receive(session, fromBase64(event.data))
          if (event.id !== null) session.lastEventId = Number(event.id)
        }
      }
    } finally {
      clearTimeout(watchdog)
      reader.cancel().catch(() => {})
    }
  }

  /** One message from the server, handled as y-websocket handles it. */
  _receive (session, buf) {
    const encoder = encoding.createEncoder()
    try {
      const decoder = decoding.createDecoder(buf)
      const type = decoding.readVarUint(decoder)
      if (type === messageSync) {
        encoding.writeVarUint(encoder, messageSync)
        const kind = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this)
        if (kind === syncProtocol.messageYjsSyncStep2 && !this.synced) this.synced = true
      } else if (type === messageAwareness) {
        awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this)
      } else if (type === messageQueryAwareness) {
        encoding.writeVarUint(encoder, messageAwareness)
        encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(
          this.awareness, Array.from(this.awareness.getStates().keys())))
      } else if (type === messageAuth) {
        authProtocol.readAuthMessage(decoder, this.doc, (_doc, reason) => {
          console.warn(`Permission denied to access ${this.url}.\n${reason}`)
          this.emit('permission-denied', [reason])
        })
      } else if (this.messageHandlers[type]) {
        this.messageHandlers[type](encoder, decoder, this)
      }
      // Anything else (collab's saved acks, which we never ask for; newer types) is ignored.
    } catch {
      throw new SessionGone(1002, 'the server sent a message this client cannot read', true)
    }
    if (encoding.length(encoder) > 1) this._post(session, encoding.toUint8Array(encoder))
  }

  // -- sending ------------------------------------------------------------------------------

  _greet (session) {
    // As y-websocket on open: our state vector, and who we are.
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, messageSync)
    syncProtocol.writeSyncStep1(encoder, this.doc)
    session.outbox.push(encoding.toUint8Array(encoder))
    if (this.awareness.getLocalState() !== null) {
      session.outbox.push(awarenessMessage(this.awareness, [this.doc.clientID]))
    }
    this._flush(session)
  }

  /** Send one message now (room events); false when no session is open to carry it. */
  sendMessage (message) {
    const session = this.session
    if (!session || !session.greeted || session.gone) return false
    this._post(session, message)
    return true
  }

  /** A local change: sent on the session that has greeted (a new one resyncs it anyway). */
  _send (message) {
    const session = this.session
    if (session && session.greeted && !session.gone) this._post(session, message)
  }

  _post (session, message) {
    session.outbox.push(message)
    this._flush(session)
  }

  async _flush (session) {
    if (session.posting || session.gone || session !== this.session || session.outbox.length === 0) return
    session.posting = true
    let size = 0
    let count = 0
    while (count < session.outbox.length && (count === 0 || size + session.outbox[count].length <= BATCH_BYTES)) {
      size += session.outbox[count].length
      count++
    }
    const body = encodeBatch(session.outbox.slice(0, count))
    const seq = session.seq
    let delay = 100
    while (session === this.session && !session.gone) {
      try {
        const response = await fetch(
          `${this.url}?session=${encodeURIComponent(session.id)}&seq=${seq}`,
          { method: 'POST', body, cache: 'no-store', signal: session.abort.signal }
        )
        if (response.ok) { // applied now, or already (a retry): either way, once
          session.seq = seq + 1
          session.outbox.splice(0, count)
          break
        }
        if (response.status < 500) { // gone (404, 410), out of order (409), too big (413)
          const body = await jsonOf(response)
          const code = Number(body.code) || (response.status === 413 ? 1009 : 4408)
          this._lose(session, code, body.reason || body.error || `HTTP ${response.status}`)
          return
        }
      } catch {
        if (session.abort.signal.aborted) return
      }
      // The network or the server failed: the same body, the same number, a bit later.
      await sleep(delay)
      delay = Math.min(delay * 2, this.maxBackoffTime)
    }
    session.posting = false
    this._checkSynced(session)
    this._flush(session)
  }

  /** A resumed session is synced again once what was queued meanwhile has gone out. */
  _checkSynced (session) {
    if (session.resumed && !session.posting && session.outbox.length === 0 && this.synced) {
      session.resumed = false
      this.emit('sync', [true])
    }
  }

  /** The session is over, learnt from a POST: stop its stream so the loop moves on. */
  _lose (session, code, reason) {
    session.gone = new SessionGone(code, reason)
    session.abort.abort()
  }

  _dropSession () {
    const session = this.session
    if (!session) return
    this.session = null
    session.gone = session.gone || new SessionGone(1000, 'dropped')
    session.abort.abort()
    this.synced = false
    // Others' presence came through this session: it is unknown until the next one.
    awarenessProtocol.removeAwarenessStates(
      this.awareness,
      Array.from(this.awareness.getStates().keys()).filter((client) => client !== this.doc.clientID),
      this
    )
  }

  /** Say goodbye to the server (the session ends at once, not on expiry), then drop it. */
  _endSession () {
    const session = this.session
    if (!session) return
    if (!session.gone) {
      fetch(`${this.url}?session=${encodeURIComponent(session.id)}`, { method: 'DELETE', keepalive: true })
        .catch(() => {})
    }
    this._dropSession()
  }

  _setStatus (status) {
    if (this.status !== status) {
      this.status = status
      this.emit('status', [{ status }])
    }
  }
}

function awarenessMessage (awareness, clients) {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, messageAwareness)
  encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, clients))
  return encoding.toUint8Array(encoder)
}
