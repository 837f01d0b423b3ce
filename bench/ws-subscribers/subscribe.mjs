// N graphql-transport-ws subscribers of one session in one Node process: a light client,
// so that the bench measures the server's delivery rather than its own parsing.
// Usage: node subscribe.mjs WS_URL TOKEN SESSION_ID COUNT
// Prints "open" once every subscriber has its current state; then, for each "collect"
// line read on stdin, prints a JSON array of the next message's arrival time
// (Unix ms, sub-millisecond) at every subscriber.
import { createInterface } from "node:readline"
import WebSocket from "ws"

const [url, token, sessionId, countText] = process.argv.slice(2)
const count = Number(countText)
const query = `subscription($sessionId: UUID!) { mediaUpdated(sessionId: $sessionId) {
  id sessionId fileKey status stage originalFilename rejectionReason url width height } }`
const now = () => performance.timeOrigin + performance.now()

let ready = 0
let arrivals = []
let waiting = null

function open() {
  const socket = new WebSocket(url, "graphql-transport-ws", { perMessageDeflate: false })
  let initial = true
  socket.on("open", () =>
    socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } })),
  )
  socket.on("message", (data) => {
    const at = now()
    const message = JSON.parse(data)
    if (message.type === "connection_ack") {
      socket.send(JSON.stringify({ id: "s", type: "subscribe", payload: { query, variables: { sessionId } } }))
    } else if (message.type === "next" && initial) {
      initial = false
      if (++ready === count) console.log("open")
    } else if (message.type === "next") {
      arrivals.push(at)
      if (waiting && arrivals.length >= count) waiting()
    } else if (message.type === "ping") {
      socket.send(JSON.stringify({ type: "pong" }))
    }
  })
  socket.on("close", (code) => {
    if (code !== 1000) console.error(`socket closed: ${code}`)
  })
}

// Not all handshakes at once (as many clients would not arrive in the same instant).
for (let opened = 0; opened < count; opened += 50) {
  for (let n = opened; n < Math.min(opened + 50, count); n++) open()
  await new Promise((resolve) => setTimeout(resolve, 50))
}

createInterface({ input: process.stdin }).on("line", async (line) => {
  if (line !== "collect") return process.exit(0)
  if (arrivals.length < count) await new Promise((resolve) => (waiting = resolve))
  waiting = null
  console.log(JSON.stringify(arrivals.slice(0, count)))
  arrivals = arrivals.slice(count)
})
