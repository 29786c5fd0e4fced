// TextareaBinding: keeps a <textarea> and a Y.Text equal, in both directions.
//
// Local input becomes the smallest edit on the Y.Text: the old and new values are
// compared around the change (common prefix and suffix), so one keystroke is one
// insert and a selection replaced is one delete plus one insert - never a rewrite.
//
// Remote changes rewrite the textarea's value; the caret and selection are carried
// across with Yjs relative positions taken *before* the change is applied (in
// `beforeTransaction`) and resolved after it, so text landing before the caret
// shifts it exactly as far as needed, and text landing after it leaves it alone.
//
// Undo/redo go through a Y.UndoManager that tracks only this binding's origin:
// one undoes one's own edits, never a collaborator's.

import * as Y from 'yjs'

/**
 * The smallest splice turning `before` into `after`, given that the change ends at
 * `cursor` in `after` (the caret after typing), which decides between equally small
 * answers (typing "a" into "aa" is an insert at the caret, not at index 0).
 *
 * @param {string} before
 * @param {string} after
 * @param {number} cursor
 * @returns {{index: number, remove: number, insert: string}}
 */
export function diff (before, after, cursor = after.length) {
  const minLen = Math.min(before.length, after.length)
  // The suffix may not reach left of the caret: that keeps the edit where the user is.
  const maxSuffix = Math.min(minLen, after.length - Math.min(cursor, after.length))
  let suffix = 0
  while (
    suffix < maxSuffix &&
    before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)
  ) suffix++
  let prefix = 0
  const maxPrefix = minLen - suffix
  while (prefix < maxPrefix && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++
  // Never split a surrogate pair: Y.Text counts UTF-16 units, and half an emoji is garbage.
  if (prefix > 0 && isHighSurrogate(after.charCodeAt(prefix - 1))) prefix--
  if (suffix > 0 && isLowSurrogate(after.charCodeAt(after.length - suffix))) suffix--
  return {
    index: prefix,
    remove: before.length - prefix - suffix,
    insert: after.slice(prefix, after.length - suffix)
  }
}

const isHighSurrogate = (c) => c >= 0xd800 && c <= 0xdbff
const isLowSurrogate = (c) => c >= 0xdc00 && c <= 0xdfff

export class TextareaBinding {
  /**
   * @param {Y.Text} text the shared text; its document must be the provider's
   * @param {HTMLTextAreaElement} textarea
   */
  constructor (text, textarea) {
    this.text = text
    this.doc = /** @type {Y.Doc} */ (text.doc)
    this.textarea = textarea
    /** Transaction origin of edits made here (the undo manager tracks only these). */
    this.origin = this
    this.undoManager = new Y.UndoManager(text, { trackedOrigins: new Set([this.origin]) })
    /** What the textarea showed after the last sync with the Y.Text. */
    this.value = text.toString()
    textarea.value = this.value
    this._saved = null

    this._onInput = () => this._applyLocal()
    this._onKeyDown = (event) => this._handleShortcut(event)
    this._onBeforeInput = (event) => {
      // The browser's own undo (Edit menu, context menu) would undo our value rewrites.
      if (event.inputType === 'historyUndo') { event.preventDefault(); this.undo() }
      if (event.inputType === 'historyRedo') { event.preventDefault(); this.redo() }
    }
    this._onBeforeTransaction = (tr) => {
      if (tr.origin !== this.origin) this._saved = this._saveSelection()
    }
    this._onAfterTransaction = (tr) => {
      if (tr.origin === this.origin) return
      const saved = this._saved
      this._saved = null
      if (tr.changed.has(this.text)) this._applyRemote(saved, tr.origin === this.undoManager)
    }
    textarea.addEventListener('input', this._onInput)
    textarea.addEventListener('keydown', this._onKeyDown)
    textarea.addEventListener('beforeinput', this._onBeforeInput)
    this.doc.on('beforeTransaction', this._onBeforeTransaction)
    this.doc.on('afterTransaction', this._onAfterTransaction)
  }

  undo () { this.undoManager.undo() }
  redo () { this.undoManager.redo() }

  destroy () {
    this.textarea.removeEventListener('input', this._onInput)
    this.textarea.removeEventListener('keydown', this._onKeyDown)
    this.textarea.removeEventListener('beforeinput', this._onBeforeInput)
    this.doc.off('beforeTransaction', this._onBeforeTransaction)
    this.doc.off('afterTransaction', this._onAfterTransaction)
    this.undoManager.destroy()
  }

  _applyLocal () {
    const after = this.textarea.value
    if (after === this.value) return
    const { index, remove, insert } = diff(this.value, after, this.textarea.selectionEnd)
    this.value = after
    this.doc.transact(() => {
      if (remove > 0) this.text.delete(index, remove)
      if (insert.length > 0) this.text.insert(index, insert)
    }, this.origin)
  }

  _handleShortcut (event) {
    if (!(event.ctrlKey || event.metaKey) || event.altKey) return
    const key = event.key.toLowerCase()
    if (key === 'z' && !event.shiftKey) {
      event.preventDefault()
      this.undo()
    } else if ((key === 'z' && event.shiftKey) || (key === 'y' && !event.shiftKey)) {
      event.preventDefault()
      this.redo()
    }
  }

  /** Relative positions of the caret/selection, valid across any change to the text. */
  _saveSelection () {
    const ta = this.textarea
    const focused = document.activeElement === ta
    const { selectionStart: start, selectionEnd: end } = ta
    const collapsed = start === end
    return {
      focused,
      direction: ta.selectionDirection,
      scrollTop: ta.scrollTop,
      // A caret sticks to the character before it (the text its owner is typing);
      // a selection keeps its inner edges, so it never grows with text typed beside it.
      start: Y.createRelativePositionFromTypeIndex(this.text, start, collapsed ? -1 : 0),
      end: Y.createRelativePositionFromTypeIndex(this.text, end, -1)
    }
  }

  _applyRemote (saved, fromUndo) {
    const ta = this.textarea
    const value = this.text.toString()
    if (value === ta.value) {
      this.value = value
      return
    }
    const resolve = (rel) => {
      const abs = rel && Y.createAbsolutePositionFromRelativePosition(rel, this.doc)
      return abs ? abs.index : null
    }
    let start = saved ? resolve(saved.start) : null
    let end = saved ? resolve(saved.end) : null
    if (fromUndo) {
      // Undo/redo moves the caret to where the change happened, as editors do.
      const changed = diff(ta.value, value, value.length)
      start = end = changed.index + changed.insert.length
    }
    ta.value = value
    this.value = value
    if (start !== null && end !== null) {
      ta.setSelectionRange(Math.min(start, end), Math.max(start, end), saved ? saved.direction : 'none')
    }
    if (saved && !fromUndo) ta.scrollTop = saved.scrollTop
  }
}
