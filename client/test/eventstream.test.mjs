// The HTTP fallback's framing in the browser client (src/eventstream.js), against the
// bytes docs/protocol.md gives and collab/wire/fallback.py produces.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventStreamParser, encodeBatch, fromBase64 } from '../src/eventstream.js'

test('a batch is varUint8Array-framed messages, in order', () => {
  const batch = encodeBatch([Uint8Array.of(0, 0, 1, 0), Uint8Array.of(3)])
  assert.deepEqual([...batch], [4, 0, 0, 1, 0, 1, 3])
  assert.deepEqual([...encodeBatch([new Uint8Array(200)])].slice(0, 2), [0xc8, 0x01])
})

test('event data is the base64 of a message', () => {
  assert.deepEqual([...fromBase64('AAEC')], [0, 1, 2])
  assert.deepEqual([...fromBase64('')], [])
})

const stream = 'id: 1\ndata: AAEC\n\n: keepalive\n\nid: 2\ndata: Aw==\n\n' +
  'id: 3\nevent: close\ndata: {"code": 1013, "reason": "outbox over 1 bytes"}\n\n'

test('the parser reads a stream cut anywhere into the same events', () => {
  const whole = new EventStreamParser().feed(stream)
  assert.deepEqual(whole, [
    { id: '1', event: 'message', data: 'AAEC' },
    { id: '2', event: 'message', data: 'Aw==' },
    { id: '3', event: 'close', data: '{"code": 1013, "reason": "outbox over 1 bytes"}' }
  ])
  for (let cut = 0; cut <= stream.length; cut++) {
    for (let second = cut; second <= stream.length; second += 7) {
      const parser = new EventStreamParser()
      const events = [
        ...parser.feed(stream.slice(0, cut)),
        ...parser.feed(stream.slice(cut, second)),
        ...parser.feed(stream.slice(second))
      ]
      assert.deepEqual(events, whole)
      assert.equal(parser.lastEventId, '3')
    }
  }
})

test('the parser follows the event stream rules', () => {
  const parser = new EventStreamParser()
  const events = parser.feed(
    'retry: 10\r\nid: 3\r\ndata: a\r\ndata: b\r\n\r\n' + // CRLF; data lines join with LF
    'id: 4\n\n' + // no data: not dispatched, but the id counts
    'data:AAA=\n\n' + // no space after the colon; the last id carries over
    'event: x\ndata\n\n' // a field with no value
  )
  assert.deepEqual(events, [
    { id: '3', event: 'message', data: 'a\nb' },
    { id: '4', event: 'message', data: 'AAA=' },
    { id: '4', event: 'x', data: '' }
  ])
})
