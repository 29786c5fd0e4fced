// The page's access token (docs/security.md): `?token=` in the page's own URL.
//
// The pages pass it on to every connection (WebSocket and HTTP fallback, as the `token`
// query parameter stock providers send), to every API call (an Authorization: Bearer
// header), and to the links between pages, so a shared link keeps working as it is
// clicked through. The token is read, never verified here: the server does that. Its
// claims only tell the page what to show (a read-only editor, say).

/** The token in the page URL's query, or null. */
export function pageToken (loc = globalThis.location) {
  if (!loc || typeof loc.search !== 'string') return null
  return new URLSearchParams(loc.search).get('token') || null
}

/** The claims of a JWT ({doc, mode, exp, sub}), unverified; {} when it is not one. */
export function tokenClaims (token) {
  if (!token) return {}
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    const json = atob(part + '='.repeat((4 - (part.length % 4)) % 4))
    const claims = JSON.parse(decodeURIComponent(escape(json)))
    return claims && typeof claims === 'object' ? claims : {}
  } catch {
    return {}
  }
}

/** `href` (a path on this server) with the page's token added, if there is one. */
export function withToken (href, token = pageToken()) {
  if (!token) return href
  const url = new URL(href, 'http://page.invalid')
  url.searchParams.set('token', token)
  return url.pathname + url.search + url.hash
}

/** The Authorization header of API calls (empty without a token). */
export function authHeaders (token = pageToken()) {
  return token ? { Authorization: `Bearer ${token}` } : {}
}
