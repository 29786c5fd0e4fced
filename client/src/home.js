// The start page: the documents on this server and a form to create a new one.
// A document exists once someone edits it, so "create" just opens the editor.

import { basePath } from './base.js'
import { docPath, formatWhen, listDocuments } from './api.js'
import { withToken } from './token.js'

// The server's rule (collab/names.py): segments joined by '/', none empty, '.' or '..'.
const SEGMENT = /^[A-Za-z0-9._~:@+=,-]+$/
const validName = (name) => name.length <= 128 && name.split('/').every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')

function suggestName () {
  const words = ['notes', 'draft', 'plan', 'ideas', 'memo', 'sketch']
  const word = words[Math.floor(Math.random() * words.length)]
  return `${word}-${Math.random().toString(36).slice(2, 7)}`
}

export async function mountHome (root) {
  const form = root.querySelector('#new-doc')
  const input = root.querySelector('#new-name')
  const hint = root.querySelector('#new-hint')
  const listEl = root.querySelector('#doc-list')
  input.placeholder = suggestName()
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const name = input.value.trim() || input.placeholder
    if (!validName(name)) {
      hint.textContent = 'Use letters, digits and . _ - ~ : @ + = , in parts joined by / (up to 128).'
      hint.dataset.error = 'true'
      input.focus()
      return
    }
    window.location.assign(withToken(`${basePath()}/d/${docPath(name)}`))
  })

  try {
    const docs = await listDocuments()
    if (docs.length === 0) {
      listEl.innerHTML = '<li class="empty">No documents yet. Create the first one above.</li>'
      return
    }
    listEl.replaceChildren(...docs.map((d) => {
      const li = document.createElement('li')
      const a = document.createElement('a')
      a.href = withToken(`${basePath()}/d/${docPath(d.name)}`)
      a.className = 'doc-name'
      a.textContent = d.name
      const meta = document.createElement('span')
      meta.className = 'meta'
      meta.textContent = [d.updated ? formatWhen(d.updated) : null, d.size !== null ? `${d.size} chars` : null]
        .filter(Boolean).join(' · ')
      const history = document.createElement('a')
      history.href = withToken(`${basePath()}/history/${docPath(d.name)}`)
      history.className = 'secondary'
      history.textContent = 'History'
      li.append(a, meta, history)
      return li
    }))
  } catch (err) {
    listEl.innerHTML = ''
    const li = document.createElement('li')
    li.className = 'empty'
    li.textContent = `The document list is unavailable (${err.message}). You can still open a document by name.`
    listEl.append(li)
  }
}
