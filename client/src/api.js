// The history HTTP API (served by collab on the page's own host), read defensively:
// each function returns plain values for the pages and throws ApiError with the
// server's own message when a request fails.

import { basePath } from './base.js'
import { authHeaders, withToken } from './token.js'

export class ApiError extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

const enc = encodeURIComponent

/**
 * A document name as a URL path (no leading '/'): each segment encoded, the '/' between
 * segments kept, so `team-a/notes` is `team-a/notes` and never `team-a%2Fnotes` (which
 * the server refuses). `: @ + = ,` are left as they are: they are allowed in a path.
 */
export function docPath (name) {
  return name.split('/').map((segment) => enc(segment).replace(/%(3A|40|2B|3D|2C)/g, decodeURIComponent)).join('/')
}

async function request (path, init = {}) {
  // The page's token (?token=) rides in a header, so it stays out of server logs.
  const headers = { Accept: 'application/json', ...authHeaders(), ...init.headers }
  const response = await fetch(basePath() + path, { cache: 'no-store', ...init, headers })
  const type = response.headers.get('content-type') || ''
  const body = type.includes('json') ? await response.json() : await response.text()
  if (!response.ok) {
    const message = body && typeof body === 'object' && body.error ? body.error : `HTTP ${response.status}`
    throw new ApiError(response.status, message)
  }
  return body
}

const list = (body, key) => Array.isArray(body) ? body : (body && Array.isArray(body[key]) ? body[key] : [])

/** Document summaries: [{name, updated, size}], most recently changed first. */
export async function listDocuments () {
  const docs = list(await request('/api/docs'), 'docs').map((d) => typeof d === 'string'
    ? { name: d, updated: null, size: null }
    : {
        name: String(d.name ?? d.doc ?? d.id),
        updated: toDate(d.updated_at ?? d.updated ?? d.last_modified ?? d.modified ?? d.timestamp),
        size: d.size ?? d.length ?? null
      })
  return docs.sort((x, y) => (y.updated?.getTime() ?? 0) - (x.updated?.getTime() ?? 0) || x.name.localeCompare(y.name))
}

/** Versions of `doc`, newest first: [{id, at: Date|null, size, users: string[], restoredFrom}]. */
export async function listVersions (doc) {
  const versions = list(await request(`/api/docs/${docPath(doc)}/versions`), 'versions').map((v) => ({
    id: String(v.id ?? v.version ?? v.seq),
    at: toDate(v.timestamp ?? v.time ?? v.at ?? v.created_at ?? v.created),
    size: v.size ?? v.length ?? null,
    users: (v.users ?? v.contributors ?? v.authors ?? []).map(personName).filter(Boolean),
    restoredFrom: v.restored_from ?? null
  }))
  return versions.sort((x, y) => (y.at?.getTime() ?? 0) - (x.at?.getTime() ?? 0))
}

/** The text of `doc` at version `at`, or now when `at` is null. */
export async function fetchText (doc, at = null) {
  const body = await request(`/api/docs/${docPath(doc)}/text${at === null ? '' : `?at=${enc(at)}`}`)
  return typeof body === 'string' ? body : String(body.text ?? '')
}

/**
 * Make `doc` equal version `version` again: one new change, recorded in its history
 * as a restore by `author`, that live editors see at once. Resolves to {seq, restored_from}.
 */
export async function restoreVersion (doc, version, author = null) {
  const body = { version: Number(version), ...(author ? { author } : {}) }
  return request(`/api/docs/${enc(doc)}/restore`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body)
  })
}

/** The URL that downloads `doc` (at version `at`, if given) as txt, md or json. */
export function exportUrl (doc, format, at = null) {
  // A download link cannot carry a header: the token goes in its query.
  return withToken(`${basePath()}/api/docs/${docPath(doc)}/export?format=${enc(format)}${at === null ? '' : `&at=${enc(at)}`}`)
}

function personName (p) {
  if (p === null || p === undefined) return ''
  if (typeof p !== 'object') return String(p)
  return String(p.name ?? p.user ?? p.client ?? p.id ?? '')
}

function toDate (value) {
  if (value === null || value === undefined || value === '') return null
  // Numbers are seconds since the epoch (Python's time.time()), or milliseconds if huge.
  const date = typeof value === 'number' ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value)
  return Number.isNaN(date.getTime()) ? null : date
}

/** "3 min ago", "yesterday 14:02", "12 Mar 2026 09:15": dates people read at a glance. */
export function formatWhen (date, now = new Date()) {
  if (!date) return 'unknown time'
  const seconds = (now.getTime() - date.getTime()) / 1000
  if (seconds < 45) return 'just now'
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  if (seconds < 12 * 3600 && now.getDate() === date.getDate()) return `today ${time}`
  return `${date.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' })} ${time}`
}
