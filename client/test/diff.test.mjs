// Unit tests of the pure parts of the client (run: node --test test/).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { diff } from '../src/binding.js'
import { lineDiff } from '../src/linediff.js'

const splice = (s, { index, remove, insert }) => s.slice(0, index) + insert + s.slice(index + remove)

test('typing one character is one insert at the caret', () => {
  assert.deepEqual(diff('aa', 'aaa', 2), { index: 1, remove: 0, insert: 'a' })
  assert.deepEqual(diff('hello', 'hellxo', 5), { index: 4, remove: 0, insert: 'x' })
  assert.deepEqual(diff('', 'x', 1), { index: 0, remove: 0, insert: 'x' })
})

test('backspace and replacing a selection are minimal', () => {
  assert.deepEqual(diff('abc', 'ac', 1), { index: 1, remove: 1, insert: '' })
  assert.deepEqual(diff('the brown fox', 'the red fox', 7), { index: 4, remove: 5, insert: 'red' })
})

test('surrogate pairs are never split', () => {
  const d = diff('a😀b', 'a😃b', 3)
  assert.equal(d.index, 1)
  assert.equal(d.remove, 2)
  assert.equal(d.insert, '😃')
})

test('random edits: the splice turns before into after, and is no larger than needed', () => {
  let seed = 7
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
  const alphabet = Array.from('ab \n😀é') // code points: an edit never holds half an emoji
  const word = (n) => Array.from({ length: n }, () => alphabet[rand(alphabet.length)])
  for (let i = 0; i < 3000; i++) {
    const points = word(rand(12))
    const atPoint = rand(points.length + 1)
    const removedPoints = rand(points.length - atPoint + 1)
    const insertedPoints = word(rand(4))
    const before = points.join('')
    const inserted = insertedPoints.join('')
    const at = points.slice(0, atPoint).join('').length
    const after = points.slice(0, atPoint).join('') + inserted + points.slice(atPoint + removedPoints).join('')
    const d = diff(before, after, at + inserted.length)
    assert.equal(splice(before, d), after, JSON.stringify({ before, after, d }))
    assert.ok(d.insert.length <= inserted.length, JSON.stringify({ before, after, d }))
  }
})

test('line diff keeps common lines and marks the changed ones', () => {
  assert.deepEqual(lineDiff('a\nb\nc', 'a\nB\nc\nd'), [
    { op: ' ', line: 'a' }, { op: '-', line: 'b' }, { op: '+', line: 'B' },
    { op: ' ', line: 'c' }, { op: '+', line: 'd' }
  ])
  assert.deepEqual(lineDiff('', 'x'), [{ op: '+', line: 'x' }])
  assert.deepEqual(lineDiff('same', 'same'), [{ op: ' ', line: 'same' }])
})
