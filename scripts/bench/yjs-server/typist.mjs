// A load generator on stock Yjs (yjs 13, y-protocols, ws), for fanout.py's saturation phases.
//
// The Python generator (load.py) costs about as much CPU per edit as the servers it
// measures, so on this 2-core machine it saturated before they did. This one does the
// same work in Node: `docs` x `editorsPerDoc` editors, each a Y.Doc on its own ws
// connection that syncs (step 1 / step 2), then types `rate` edits/s (a token such as
// `e12.345;` inserted at a random spot, sent as a sync update) for `duration` seconds,
// from a seeded random offset. What editors receive is not applied: they only find the
// tokens in it, as load.py's saturation editors do.
//
// Usage: node typist.mjs '<json>' with {url, query, docs, editorsPerDoc, rate, duration,
// drainTimeout, prefix, seed}. Writes "typing" on stdout when the first edit is due,
// "drained" when every token has reached every other editor of its document (or the
// drain timed out), then one line of JSON: edits, expected, delivered, duplicates,
// echoes, missing, latenciesMs (per delivery, from the send to the frame's arrival),
// wallSeconds and generatorBusy (this process's CPU over the same window / wall time).

import WebSocket from 'ws'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

const SYNC = 0
const TOKEN = /e(\d+)\.(\d+);/g

const opts = JSON.parse(process.argv[2])
const nowNs = () => process.hrtime.bigint()

// mulberry32: a small seeded generator, so that every server gets the same load.
function rng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const random = rng(opts.seed)
const sent = new Map() // token -> send time (ns)
let expected = 0
let delivered = 0
let duplicates = 0
let echoes = 0
let recording = false
const latencies = []
let onDelivered = null

class Editor {
  constructor (index, docIndex, url) {
    this.index = index
    this.docIndex = docIndex
    this.own = `e${index}.`
    this.seen = new Set()
    this.rand = rng(opts.seed * 7919 + index)
    this.doc = new Y.Doc()
    this.text = this.doc.getText('text')
    this.n = 0
    this.synced = new Promise(resolve => { this.onSynced = resolve })
    this.doc.on('update', (update, origin) => {
      if (origin !== 'local') return
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, SYNC)
      syncProtocol.writeUpdate(encoder, update)
      this.ws.send(encoding.toUint8Array(encoder))
    })
    this.url = url
  }

  open () {
    this.ws = new WebSocket(this.url, { perMessageDeflate: false })
    this.ws.binaryType = 'nodebuffer'
    this.ws.on('open', () => {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, SYNC)
      syncProtocol.writeSyncStep1(encoder, this.doc)
      this.ws.send(encoding.toUint8Array(encoder))
    })
    this.ws.on('message', data => this.receive(data))
    this.ws.on('error', err => { console.error(`editor ${this.index}: ${err.message}`); process.exit(2) })
    return this.synced
  }

  receive (data) {
    const at = nowNs()
    if (data.length < 2 || data[0] !== SYNC) return // awareness and anything else
    if (this.isSynced) {
      if (!recording) return
      TOKEN.lastIndex = 0
      const text = data.toString('latin1')
      let m
      while ((m = TOKEN.exec(text)) !== null) {
        const token = m[0]
        if (token.startsWith(this.own)) { echoes++; continue }
        const t = sent.get(token)
        if (t === undefined) continue
        if (this.seen.has(token)) { duplicates++; continue }
        this.seen.add(token)
        delivered++
        latencies.push(Number(at - t) / 1e6)
        if (onDelivered !== null && delivered >= expected) onDelivered()
      }
      return
    }
    const decoder = decoding.createDecoder(data)
    decoding.readVarUint(decoder)
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, SYNC)
    const kind = syncProtocol.readSyncMessage(decoder, encoder, this.doc, 'remote')
    if (encoding.length(encoder) > 1) this.ws.send(encoding.toUint8Array(encoder))
    if (kind === syncProtocol.messageYjsSyncStep2) { this.isSynced = true; this.onSynced() }
  }

  edit (receivers) {
    const token = `${this.own}${this.n++};`
    sent.set(token, nowNs())
    expected += receivers
    this.doc.transact(() => {
      this.text.insert(Math.floor(this.rand() * (this.text.length + 1)), token)
    }, 'local')
  }
}

const editors = []
for (let d = 0; d < opts.docs; d++) {
  for (let e = 0; e < opts.editorsPerDoc; e++) {
    editors.push(new Editor(d * opts.editorsPerDoc + e, d, `${opts.url}/${opts.prefix}-${d}${opts.query}`))
  }
}
// The first editor of each document syncs alone: pycrdt-websocket leaves clients that open
// a new room at the same instant unsynced (a race in its room start; load.py does the same).
const syncTimeout = setTimeout(() => { console.error('editors did not sync in 60 s'); process.exit(3) }, 60000)
const firsts = editors.filter(e => e.index % opts.editorsPerDoc === 0)
await Promise.all(firsts.map(e => e.open()))
await Promise.all(editors.filter(e => e.index % opts.editorsPerDoc !== 0).map(e => e.open()))
clearTimeout(syncTimeout)

const periodMs = 1000 / opts.rate
const offsets = editors.map(() => random() * periodMs)
const receivers = opts.editorsPerDoc - 1
const durationMs = opts.duration * 1000
const next = editors.map(() => 0) // edits typed so far, per editor

recording = true
process.stdout.write('typing\n')
const cpu0 = process.cpuUsage()
const t0 = performance.now()
await new Promise(resolve => {
  const tick = () => {
    const elapsed = performance.now() - t0
    let pending = false
    for (let i = 0; i < editors.length; i++) {
      let due = offsets[i] + next[i] * periodMs
      while (due <= elapsed && due < durationMs) {
        editors[i].edit(receivers)
        next[i]++
        due = offsets[i] + next[i] * periodMs
      }
      if (due < durationMs) pending = true
    }
    if (pending) setTimeout(tick, 1)
    else resolve()
  }
  tick()
})
await new Promise(resolve => {
  if (delivered >= expected) return resolve()
  onDelivered = resolve
  setTimeout(resolve, opts.drainTimeout * 1000)
})
const wallSeconds = (performance.now() - t0) / 1000
const cpu = process.cpuUsage(cpu0)
process.stdout.write('drained\n')
process.stdout.write(JSON.stringify({
  edits: sent.size,
  expected,
  delivered,
  duplicates,
  echoes,
  missing: expected - delivered,
  latenciesMs: latencies,
  wallSeconds,
  generatorBusy: (cpu.user + cpu.system) / 1e6 / wallSeconds
}) + '\n', () => {
  // exit only once the line is written: a pipe takes it in several writes
  for (const editor of editors) editor.ws.terminate()
  process.exit(0)
})
