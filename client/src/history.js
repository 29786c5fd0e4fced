// The history page: the versions of one document, the text of the chosen version,
// its diff against the current text, and downloads of the exports. It uses the HTTP
// API and never opens the live document; its one write is "Restore this version"
// (after a confirmation), which the server applies as a new change editors see at once.

import { exportUrl, fetchText, formatWhen, listVersions, restoreVersion } from './api.js'
import { lineDiff } from './linediff.js'
import { rememberedName } from './presence.js'

const FORMATS = [['txt', 'Plain text'], ['md', 'Markdown'], ['json', 'JSON']]

/**
 * "by Ada, Grace" for people's names; "2 contributors" when all we have are anonymous
 * connection ids (hex tokens), which mean nothing to a reader.
 */
function contributors (users) {
  if (users.length === 0) return null
  if (users.every((u) => /^[0-9a-f]{6,}$/.test(u))) {
    return `${users.length} contributor${users.length === 1 ? '' : 's'}`
  }
  return `by ${users.join(', ')}`
}

export async function mountHistory (root, docName) {
  const listEl = root.querySelector('#versions')
  const titleEl = root.querySelector('#version-title')
  const textEl = root.querySelector('#version-text')
  const diffEl = root.querySelector('#version-diff')
  const statsEl = root.querySelector('#diff-stats')
  const downloadsEl = root.querySelector('#downloads')
  const panel = root.querySelector('#version-panel')
  const restoreEl = root.querySelector('#restore')

  let versions
  try {
    versions = await listVersions(docName)
  } catch (err) {
    listEl.innerHTML = ''
    const li = document.createElement('li')
    li.className = 'empty'
    li.textContent = err.status === 404 ? 'This document has no history yet.' : `History is unavailable (${err.message}).`
    listEl.append(li)
    panel.hidden = true
    return
  }
  if (versions.length === 0) {
    listEl.innerHTML = '<li class="empty">No versions yet: edit the document and come back.</li>'
    panel.hidden = true
    return
  }

  let current = null
  const currentText = () => current ?? (current = fetchText(docName))
  let selection = 0

  const select = async (index) => {
    selection = index
    const v = versions[index]
    for (const [i, li] of [...listEl.children].entries()) li.setAttribute('aria-selected', String(i === index))
    titleEl.textContent = `Version ${v.id} · ${formatWhen(v.at)}`
    downloadsEl.replaceChildren(...FORMATS.map(([format, label]) => {
      const a = document.createElement('a')
      a.className = 'button'
      a.href = exportUrl(docName, format, v.id)
      a.download = '' // the file name is the server's (Content-Disposition): it knows names with '/'
      a.dataset.format = format
      a.textContent = `Download ${label}`
      return a
    }))
    if (restoreEl) {
      restoreEl.hidden = index === 0 // the latest version is what the document is now
      restoreEl.onclick = () => restore(v)
    }
    textEl.textContent = 'Loading…'
    diffEl.replaceChildren()
    const [text, now] = await Promise.all([fetchText(docName, v.id), currentText()])
    if (selection !== index) return // the user chose another version meanwhile
    textEl.textContent = text
    renderDiff(text, now)
  }

  const restore = async (v) => {
    if (!window.confirm(`Restore version ${v.id}? The document becomes what it was then, for everyone editing it; the restore is kept in the history and can be undone by restoring the version before it.`)) return
    restoreEl.disabled = true
    try {
      await restoreVersion(docName, v.id, rememberedName())
      await mountHistory(root, docName) // the restore is the newest version now
    } catch (err) {
      statsEl.textContent = `Restore failed: ${err.message}`
    } finally {
      restoreEl.disabled = false
    }
  }

  const renderDiff = (before, after) => {
    const lines = lineDiff(before, after)
    let added = 0
    let removed = 0
    diffEl.replaceChildren(...lines.map(({ op, line }) => {
      if (op === '+') added++
      if (op === '-') removed++
      const div = document.createElement('div')
      div.className = op === '+' ? 'add' : op === '-' ? 'del' : 'same'
      div.textContent = `${op} ${line}`
      return div
    }))
    statsEl.textContent = added || removed
      ? `${added} line${added === 1 ? '' : 's'} added, ${removed} removed since this version`
      : 'identical to the current text'
  }

  listEl.replaceChildren(...versions.map((v, i) => {
    const li = document.createElement('li')
    li.tabIndex = 0
    li.setAttribute('role', 'option')
    li.dataset.version = v.id
    const title = document.createElement('span')
    title.className = 'when'
    title.textContent = `Version ${v.id}`
    if (i === 0) {
      const badge = document.createElement('span')
      badge.className = 'badge'
      badge.textContent = 'latest'
      title.append(badge)
    }
    if (v.restoredFrom !== null) {
      const badge = document.createElement('span')
      badge.className = 'badge restored'
      badge.textContent = `restored version ${v.restoredFrom}`
      title.append(badge)
    }
    const meta = document.createElement('span')
    meta.className = 'meta'
    meta.title = v.at ? v.at.toLocaleString() : ''
    meta.textContent = [
      formatWhen(v.at),
      v.size !== null ? `${v.size} chars` : null,
      contributors(v.users)
    ].filter(Boolean).join(' · ')
    li.append(title, meta)
    li.addEventListener('click', () => select(i))
    li.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(i) }
      if (e.key === 'ArrowDown' && i + 1 < versions.length) listEl.children[i + 1].focus()
      if (e.key === 'ArrowUp' && i > 0) listEl.children[i - 1].focus()
    })
    return li
  }))
  // Open on the previous version when there is one: its diff says what changed last.
  await select(versions.length > 1 ? 1 : 0)
}
