// One stock y-webrtc peer: ?room=<document>&signal=<ws://host:port/signal>.
// No WebSocket provider: the text travels only over WebRTC, and collab is the only
// signaling server. iceServers is empty, so only host candidates are gathered.
import * as Y from 'yjs'
import { WebrtcProvider } from 'y-webrtc'

const params = new URLSearchParams(window.location.search)
const doc = new Y.Doc()
const text = doc.getText('text')
const provider = new WebrtcProvider(params.get('room'), doc, {
  signaling: [params.get('signal')],
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
  // Peers reached over a WebRTC data channel (not a BroadcastChannel between tabs).
  webrtcPeers: () => provider.room === null
    ? 0
    : Array.from(provider.room.webrtcConns.values()).filter(conn => conn.connected).length,
  broadcastPeers: () => provider.room === null ? 0 : provider.room.bcConns.size
}
