// A stock Yjs peer (yjs + y-websocket's WebsocketProvider) driven over stdin/stdout.
//
//   node peer.mjs <serverUrl> <docName> [<params JSON>]
//
// <params JSON> (an object) is the provider's `params` option: query parameters of the
// WebSocket URL, as `{"token": "..."}`.
//
// Each stdin line is one JSON command; each gets exactly one JSON line back on stdout,
// in order: {"id": <same id>, "ok": true, ...} or {"id": ..., "ok": false, "error": "..."}.
// Nothing else is written to stdout, so the driver can read replies line by line.
// Waits ("wait_*") are answered when their condition holds or their timeout (ms) passes;
// they observe Yjs events rather than polling, so the driver never needs to sleep.
//
// Commands:
//   {"cmd": "wait_synced", "timeout": ms}
//   {"cmd": "insert", "index": i, "text": s}
//   {"cmd": "delete", "index": i, "length": n}
//   {"cmd": "type", "text": s, "interval": ms}    one character at a time at the end of the
//                                                text, each its own update, `interval` apart
//   {"cmd": "text"}                               -> {"text": s}
//   {"cmd": "wait_text", "text": s, "timeout": ms}  (or "contains": s)
//   {"cmd": "set_awareness", "state": {...}}
//   {"cmd": "awareness"}                          -> {"states": {clientID: state}, "self": clientID}
//   {"cmd": "wait_awareness", "key": k, "value": v, "timeout": ms}  (some other peer's state[k] == v)
//   {"cmd": "seen"}        -> {"types": [message types received, in order, deduplicated],
//                             "logged": [every console.error / console.warn line],
//                             "opens": WebSockets opened, "closes": [[code, reason], ...]}
//   {"cmd": "closes"}      -> {"closes": [[code, reason], ...]} every close the socket saw
//   {"cmd": "wait_close", "code": c, "count": n, "timeout": ms}  until n closes with code c
//   {"cmd": "disconnect"} / {"cmd": "connect"}    the provider's own disconnect()/connect()
//   {"cmd": "close"}                              -> replies, then exits

import * as readline from 'node:readline'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const [serverUrl, docName, paramsJson] = process.argv.slice(2)
const params = paramsJson ? JSON.parse(paramsJson) : {}
if (!serverUrl || !docName) {
  process.stderr.write('usage: node peer.mjs <serverUrl> <docName>\n')
  process.exit(2)
}

// What the stock provider was sent and what it complained about, for tests that prove a
// server sent it nothing it does not understand (y-websocket logs unknown message types).
const seenTypes = []
const logged = []
const closes = []  // [code, reason] of every close event, in order
const closeWaiters = new Set()
let opens = 0
for (const level of ['error', 'warn']) {
  const original = console[level]
  console[level] = (...args) => { logged.push(args.map(String).join(' ')); original(...args) }
}
class RecordingWebSocket extends WebSocket {
  constructor (...args) {
    super(...args)
    this.addEventListener('open', () => { opens++ })
    this.addEventListener('close', (event) => {
      closes.push([event.code, String(event.reason)])
      for (const waiter of closeWaiters) waiter()
    })
    this.addEventListener('message', (event) => {
      const bytes = new Uint8Array(event.data)
      // The first varUint of a frame is its type; every type y-websocket knows is < 128.
      let type = 0
      for (let i = 0, shift = 0; i < bytes.length; i++, shift += 7) {
        type += (bytes[i] & 0x7f) * 2 ** shift
        if (bytes[i] < 0x80) break
      }
      if (!seenTypes.includes(type)) seenTypes.push(type)
    })
  }
}

const doc = new Y.Doc()
const text = doc.getText('text')
const provider = new WebsocketProvider(serverUrl, docName, doc, {
  WebSocketPolyfill: RecordingWebSocket,
  disableBc: true,
  params
})
const awareness = provider.awareness

const reply = (msg) => process.stdout.write(JSON.stringify(msg) + '\n')

/** Resolve when `check()` holds, re-checking whenever one of `emitters` fires `event`. */
const waitFor = (check, timeout, watches) => new Promise((resolve, reject) => {
  if (check()) return resolve()
  const listener = () => {
    if (check()) { done(); resolve() }
  }
  const done = () => {
    clearTimeout(timer)
    for (const [target, event, kind] of watches) {
      if (kind === 'observe') target.unobserve(listener)
      else target.off(event, listener)
    }
  }
  const timer = setTimeout(() => { done(); reject(new Error('timeout')) }, timeout)
  for (const [target, event, kind] of watches) {
    if (kind === 'observe') target.observe(listener)
    else target.on(event, listener)
  }
})

const statesObject = () => {
  const out = {}
  for (const [id, state] of awareness.getStates()) out[id] = state
  return out
}

const handlers = {
  wait_synced: async ({ timeout = 5000 }) => {
    await waitFor(() => provider.synced, timeout, [[provider, 'sync']])
    return {}
  },
  insert: async ({ index, text: s }) => { text.insert(index, s); return {} },
  delete: async ({ index, length }) => { text.delete(index, length); return {} },
  type: async ({ text: s, interval = 5 }) => {
    for (const char of s) {
      text.insert(text.length, char)
      await new Promise((resolve) => setTimeout(resolve, interval))
    }
    return { text: text.toString() }
  },
  text: async () => ({ text: text.toString() }),
  wait_text: async ({ text: expected, contains, timeout = 5000 }) => {
    const check = () => expected !== undefined
      ? text.toString() === expected
      : text.toString().includes(contains)
    try {
      await waitFor(check, timeout, [[text, null, 'observe']])
    } catch (e) {
      throw new Error(`timeout; text is ${JSON.stringify(text.toString())}`)
    }
    return { text: text.toString() }
  },
  set_awareness: async ({ state }) => { awareness.setLocalState(state); return {} },
  awareness: async () => ({ states: statesObject(), self: doc.clientID }),
  wait_awareness: async ({ key, value, timeout = 5000 }) => {
    const check = () => [...awareness.getStates()].some(
      ([id, st]) => id !== doc.clientID && st && st[key] === value)
    await waitFor(check, timeout, [[awareness, 'change']])
    return { states: statesObject() }
  },
  seen: async () => ({ types: seenTypes, logged, opens, closes }),
  closes: async () => ({ closes }),
  wait_close: async ({ code, count = 1, timeout = 5000 }) => {
    const check = () => closes.filter(([c]) => c === code).length >= count
    await new Promise((resolve, reject) => {
      if (check()) return resolve()
      const waiter = () => { if (check()) { closeWaiters.delete(waiter); clearTimeout(timer); resolve() } }
      const timer = setTimeout(() => {
        closeWaiters.delete(waiter)
        reject(new Error(`timeout; closes: ${JSON.stringify(closes)}`))
      }, timeout)
      closeWaiters.add(waiter)
    })
    return { closes }
  },
  disconnect: async () => { provider.disconnect(); return {} },
  connect: async () => { provider.connect(); return {} },
  close: async () => {
    provider.destroy()
    doc.destroy()
    return {}
  }
}

// Commands run strictly in order, one at a time, so replies match requests.
let queue = Promise.resolve()
const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (!line.trim()) return
  queue = queue.then(async () => {
    let msg
    try {
      msg = JSON.parse(line)
    } catch (e) {
      return reply({ ok: false, error: `bad JSON: ${e.message}` })
    }
    const handler = handlers[msg.cmd]
    if (!handler) return reply({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` })
    try {
      reply({ id: msg.id, ok: true, ...(await handler(msg)) })
    } catch (e) {
      reply({ id: msg.id, ok: false, error: String(e && e.message ? e.message : e) })
    }
    if (msg.cmd === 'close') process.exit(0)
  })
})
lines.on('close', () => {
  provider.destroy()
  process.exit(0)
})
