// Presence: who I am (a name I chose, remembered in localStorage, and a colour) and
// who else is here, carried by y-websocket's awareness as `{user: {name, color}}` -
// the shape y-codemirror, y-quill and friends use, so other Yjs apps show us too.

const NAME_KEY = 'collab.name'

// Colours readable as text on white and as dots on a light bar.
const COLORS = ['#d1495b', '#2e86ab', '#3a7d44', '#8e5bd6', '#e07a1f', '#1b998b', '#c2185b', '#5c6bc0', '#a0522d', '#00838f', '#6d4c41', '#7b1fa2']
const ADJECTIVES = ['Amber', 'Brisk', 'Calm', 'Deft', 'Eager', 'Fleet', 'Gentle', 'Keen', 'Lucid', 'Quiet']
const ANIMALS = ['Otter', 'Heron', 'Lynx', 'Finch', 'Badger', 'Marten', 'Ibis', 'Wren', 'Fox', 'Seal']

function pick (list, n) { return list[Math.abs(n) % list.length] }

/** A colour that stays the same for one client id. */
export function colorFor (clientID) { return pick(COLORS, clientID) }

/**
 * This client's colour, moved off any colour an *older* client (lower id) already shows,
 * so two people in one room rarely share one; the older one never changes.
 */
export function chooseColor (awareness) {
  const own = awareness.clientID
  const taken = new Set()
  for (const [clientID, state] of awareness.getStates()) {
    if (clientID < own && state?.user?.color) taken.add(state.user.color)
  }
  const start = Math.abs(own) % COLORS.length
  for (let i = 0; i < COLORS.length; i++) {
    const color = COLORS[(start + i) % COLORS.length]
    if (!taken.has(color)) return color
  }
  return COLORS[start]
}

function storage () {
  try { return window.localStorage } catch { return null } // disabled storage (privacy mode)
}

/** The remembered name, or a friendly made-up one (not stored until the user picks one). */
export function loadName (clientID) {
  const stored = storage()?.getItem(NAME_KEY)
  if (stored && stored.trim()) return stored.trim()
  return `${pick(ADJECTIVES, clientID >> 4)} ${pick(ANIMALS, clientID)}`
}

/** The name the user chose, or null when they never chose one. */
export function rememberedName () {
  const stored = storage()?.getItem(NAME_KEY)
  return stored && stored.trim() ? stored.trim() : null
}

export function saveName (name) {
  storage()?.setItem(NAME_KEY, name)
}

/**
 * Publish `name` as this client's presence.
 * @param {import('y-protocols/awareness').Awareness} awareness
 */
export function setUser (awareness, name, color = chooseColor(awareness)) {
  awareness.setLocalStateField('user', { name, color })
}

/**
 * The other people here, one entry per client, sorted by name.
 * @returns {{clientID: number, name: string, color: string}[]}
 */
export function others (awareness) {
  const out = []
  for (const [clientID, state] of awareness.getStates()) {
    if (clientID === awareness.clientID || !state) continue
    const user = state.user || {}
    const name = typeof user.name === 'string' && user.name.trim() ? user.name.trim() : `Guest ${clientID % 1000}`
    const color = typeof user.color === 'string' && /^#[0-9a-fA-F]{3,8}$/.test(user.color) ? user.color : colorFor(clientID)
    out.push({ clientID, name: name.slice(0, 60), color })
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.clientID - b.clientID)
}
