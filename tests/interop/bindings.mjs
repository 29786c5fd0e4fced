// Documents written the way each Yjs editor binding writes them, as update bytes.
//
//   node bindings.mjs   ->  one JSON object on stdout:
//     {"<case>": {"root": "<root name>", "updates": ["<base64 update>", ...]}, ...}
//
// Each case is a short editing history: every update is what the binding sends
// for one edit, encoded against the state before it (Y.encodeStateAsUpdate(doc, sv)),
// so the Python tests can log them as successive versions.
//
// - prosemirror: y-prosemirror with prosemirror-schema-basic + prosemirror-schema-list;
//   the first version is prosemirrorJSONToYDoc, later ones go through updateYFragment,
//   the function y-prosemirror's sync plugin calls on every editor transaction.
// - tiptap: the same through @tiptap/y-tiptap (Tiptap 3's fork) with StarterKit's schema.
// - quill: Y.Text.applyDelta with the deltas Quill emits (y-quill does exactly
//   `type.applyDelta(delta)` on Quill's text-change); block formats sit on the newline.
// - codemirror / monaco: plain Y.Text inserts and deletes under their root names, which
//   is all y-codemirror.next and y-monaco do with an editor's changes.
// - json: Y.Map and Y.Array roots (a board), as apps write shared state.

import * as Y from 'yjs'
import { Schema } from 'prosemirror-model'
import { schema as basic } from 'prosemirror-schema-basic'
import { addListNodes } from 'prosemirror-schema-list'
import * as YP from 'y-prosemirror'
import * as YT from '@tiptap/y-tiptap'
import { getSchema } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'

const b64 = (bytes) => Buffer.from(bytes).toString('base64')

/** Run `steps` (functions of the doc) and collect one update per step. */
function record (doc, steps) {
  const updates = []
  for (const step of steps) {
    const before = Y.encodeStateVector(doc)
    step(doc)
    updates.push(b64(Y.encodeStateAsUpdate(doc, before)))
  }
  return updates
}

const text = (t, marks) => marks ? { type: 'text', text: t, marks } : { type: 'text', text: t }
const para = (...content) => ({ type: 'paragraph', content })

// -- ProseMirror (basic schema + lists) ------------------------------------------------------

function prosemirrorCase (binding, schema, root, names) {
  const n = names
  const v1 = {
    type: 'doc',
    content: [
      { type: 'heading', attrs: { level: 1 }, content: [text('Notes')] },
      para(text('Hello world'))
    ]
  }
  const v2 = {
    type: 'doc',
    content: [
      { type: 'heading', attrs: { level: 1 }, content: [text('Notes')] },
      para(
        text('Hello '), text('bold', [{ type: n.bold }]), text(' and '),
        text('em', [{ type: n.italic }]), text(' with '), text('code', [{ type: 'code' }]),
        text(' and '), text('a link', [{ type: 'link', attrs: { href: 'https://example.org' } }])
      ),
      { type: 'heading', attrs: { level: 2 }, content: [text('Lists')] },
      {
        type: n.bulletList,
        content: [
          { type: n.listItem, content: [para(text('one'))] },
          {
            type: n.listItem,
            content: [
              para(text('two')),
              { type: n.bulletList, content: [{ type: n.listItem, content: [para(text('two and a half'))] }] }
            ]
          }
        ]
      },
      {
        type: n.orderedList,
        attrs: { [n.start]: 1 },
        content: [
          { type: n.listItem, content: [para(text('first'))] },
          { type: n.listItem, content: [para(text('second'))] }
        ]
      },
      { type: 'blockquote', content: [para(text('A quote.'))] },
      { type: n.codeBlock, ...(n.language ? { attrs: { language: 'python' } } : {}), content: [text('x = 1\nprint(x)')] },
      para(text('line one'), { type: n.hardBreak }, text('line two')),
      { type: n.horizontalRule },
      para(text('The end.'))
    ]
  }
  const ydoc = binding.prosemirrorJSONToYDoc(schema, v1, root)
  const updates = [b64(Y.encodeStateAsUpdate(ydoc))]
  const fragment = ydoc.getXmlFragment(root)
  const change = (json) => (doc) => {
    doc.transact(() => {
      binding.updateYFragment(doc, fragment, schema.nodeFromJSON(json), { mapping: new Map(), isOMark: new Map() })
    })
  }
  updates.push(...record(ydoc, [change(v2)]))
  return { root, updates }
}

const basicSchema = new Schema({
  nodes: addListNodes(basic.spec.nodes, 'paragraph block*', 'block'),
  marks: basic.spec.marks
})

const cases = {}
cases.prosemirror = prosemirrorCase(YP, basicSchema, 'prosemirror', {
  bold: 'strong', italic: 'em', bulletList: 'bullet_list', orderedList: 'ordered_list',
  listItem: 'list_item', codeBlock: 'code_block', hardBreak: 'hard_break',
  horizontalRule: 'horizontal_rule', start: 'order', language: false
})
cases.tiptap = prosemirrorCase(YT, getSchema([StarterKit]), 'default', {
  bold: 'bold', italic: 'italic', bulletList: 'bulletList', orderedList: 'orderedList',
  listItem: 'listItem', codeBlock: 'codeBlock', hardBreak: 'hardBreak',
  horizontalRule: 'horizontalRule', start: 'start', language: true
})

// -- Quill -----------------------------------------------------------------------------------

{
  const doc = new Y.Doc()
  const quill = doc.getText('quill')
  const delta = (ops) => (d) => d.transact(() => quill.applyDelta(ops))
  const updates = record(doc, [
    // Type a title, make it a heading (Quill formats the line's newline), type a line.
    delta([{ insert: 'Shopping' }]),
    delta([{ retain: 8 }, { retain: 1, attributes: { header: 2 } }]),
    delta([{ retain: 9 }, { insert: 'Buy ' }, { insert: 'fresh', attributes: { bold: true } },
      { insert: ' bread at ' }, { insert: 'the bakery', attributes: { link: 'https://bakery.example', italic: true } },
      { insert: '\n' }]),
    // A list, a code line and a quote.
    delta([{ retain: 39 }, { insert: 'milk' }, { insert: '\n', attributes: { list: 'bullet' } },
      { insert: 'oat' }, { insert: '\n', attributes: { list: 'bullet', indent: 1 } },
      { insert: 'eggs' }, { insert: '\n', attributes: { list: 'bullet' } },
      { insert: 'Pay' }, { insert: '\n', attributes: { list: 'ordered' } },
      { insert: 'Leave' }, { insert: '\n', attributes: { list: 'ordered' } },
      { insert: 'total = sum(prices)' }, { insert: '\n', attributes: { 'code-block': true } },
      { insert: 'Do not forget ' }, { insert: 'the bag', attributes: { code: true } },
      { insert: '\n', attributes: { blockquote: true } }])
  ])
  cases.quill = { root: 'quill', updates }
}

// -- CodeMirror and Monaco -------------------------------------------------------------------

for (const root of ['codemirror', 'monaco']) {
  const doc = new Y.Doc()
  const code = doc.getText(root)
  cases[root] = {
    root,
    updates: record(doc, [
      (d) => code.insert(0, 'def greet(name):\n    return "hi " + name\n'),
      (d) => d.transact(() => { code.delete(29, 2); code.insert(29, 'hello') }),
      (d) => code.insert(code.length, '\nprint(greet("ada"))\n')
    ])
  }
}

// -- Maps and arrays -------------------------------------------------------------------------

{
  const doc = new Y.Doc()
  const board = doc.getMap('board')
  const cards = doc.getArray('cards')
  const card = (title, done) => {
    const m = new Y.Map()
    m.set('title', title)
    m.set('done', done)
    return m
  }
  cases.json = {
    root: null,
    updates: record(doc, [
      (d) => d.transact(() => {
        board.set('title', 'Sprint 1')
        cards.push([card('Write docs', false), card('Fix bug', false)])
      }),
      (d) => d.transact(() => {
        cards.get(1).set('done', true)
        cards.push([card('Ship', false)])
        board.set('owner', 'ada')
      })
    ])
  }
}

process.stdout.write(JSON.stringify(cases) + '\n')
