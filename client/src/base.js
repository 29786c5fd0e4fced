// Where collab lives on the server that served this page: '' at the server's root,
// '/collab' when its ASGI app is mounted there. collab's pages say so in
// <body data-collab-base>; a page that embeds the editor has no such attribute and
// passes its own serverUrl (docs/browser-client.md).

/** The mount point of collab's pages, API and WebSocket: '' or '/prefix' (no trailing '/'). */
export function basePath (doc = globalThis.document) {
  return doc?.body?.dataset.collabBase ?? ''
}
