// One stock y-webrtc peer: ?room=<document>&signal=<ws://host:port/signal>, and with
// &collab=<ws://host:port> also collab's WebSocket provider on the same Y.Doc (the
// setup docs/webrtc.md shows). iceServers is empty, so only host candidates are gathered.
import * as Y from 'yjs'
import { WebrtcProvider } from 'y-webrtc'
import { WebsocketProvider } from 'y-websocket'

const params = new URLSearchParams(window.location.search)
const room = params.get('room')
const doc = new Y.Doc()
const text = doc.getText('text')
const server = params.has('collab') ? new WebsocketProvider(params.get('collab'), room, doc) : null
const provider = new WebrtcProvider(room, doc, {
  signaling: [params.get('signal')],
  ...(server === null ? {} : { awareness: server.awareness }),
  peerOpts: { config: { iceServers: [] } }
})

const view = document.getElementById('text')
text.observe(() => { view.value = text.toString() })

// What the test drives and reads (page.evaluate).
window.webrtc = {
  insert: (index, content) => text.insert(index, content),
  append: content => text.insert(text.length, content),
  text: () => text.toString(),
  signalingConnected: () => provider.signalingConns.every(conn => conn.connected),
  serverSynced: () => server !== null && server.synced,
  // Peers reached over a WebRTC data channel (not a BroadcastChannel between tabs).
  webrtcPeers: () => provider.room === null
    ? 0
    : Array.from(provider.room.webrtcConns.values()).filter(conn => conn.connected).length,
  broadcastPeers: () => provider.room === null ? 0 : provider.room.bcConns.size
}
