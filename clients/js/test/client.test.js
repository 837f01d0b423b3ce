// Unit tests of the client's own logic, with the network replaced by scripted fakes:
// the browser end to end test (tests/e2e) runs it against the real stack.
import assert from "node:assert/strict"
import { File } from "node:buffer"
import { test } from "node:test"

import { createClient, MediagateError } from "../mediagate.js"

const POLICY = {
  contentTypes: [
    { contentType: "image/jpeg", kind: "IMAGE", extensions: [".jpg", ".jpeg"], maxBytes: 1000 },
    { contentType: "video/mp4", kind: "VIDEO", extensions: [".mp4"], maxBytes: 5000 },
  ],
  stages: ["general", "intake"],
  defaultStage: "general",
  maxFilenameBytes: 255,
  maxAltChars: 2000,
  uploadUrlExpiresIn: 300,
}

const photo = (name = "photo.jpg", size = 100, type = "image/jpeg") => new File([new Uint8Array(size)], name, { type })

// A GraphQL API answering by operation; `answers` may override any of them.
function fakeApi(answers = {}) {
  const calls = []
  let tickets = 0
  const defaults = {
    uploadPolicy: () => ({ uploadPolicy: POLICY }),
    getUploadUrl: () => {
      tickets += 1
      return {
        getUploadUrl: { uploadUrl: `https://s3.test/put/${tickets}`, fileKey: `key-${tickets}`, expiresIn: 300 },
      }
    },
    confirmUpload: () => ({ confirmUpload: { id: "m1", status: "UPLOADED" } }),
    media: () => ({ media: { id: "m1", status: "COMPLETED", url: "https://s3.test/get" } }),
  }
  const handlers = { ...defaults, ...answers }
  const fetch = async (url, init) => {
    const { query, variables } = JSON.parse(init.body)
    const operation = Object.keys(handlers).find((name) => query.includes(`${name}`))
    calls.push({ operation, variables, authorization: init.headers.Authorization })
    const answer = handlers[operation](variables)
    const body = answer instanceof Error ? { errors: [answer.graphql] } : { data: answer }
    return { ok: true, status: 200, json: async () => body }
  }
  return { fetch, calls, count: (name) => calls.filter((call) => call.operation === name).length }
}

function graphqlError(message, code) {
  const error = new Error(message)
  error.graphql = { message, extensions: { code } }
  return error
}

// XMLHttpRequest whose outcomes are scripted per request, in order:
// {status, body} | "network" | "hang" (until aborted).
function fakeXhr(outcomes) {
  const requests = []
  class FakeXMLHttpRequest {
    constructor() {
      this.listeners = {}
      this.upload = { addEventListener: (type, fn) => (this.listeners[`upload:${type}`] = fn) }
      this.headers = {}
      requests.push(this)
    }
    addEventListener(type, fn) {
      this.listeners[type] = fn
    }
    open(method, url) {
      Object.assign(this, { method, url })
    }
    setRequestHeader(name, value) {
      this.headers[name] = value
    }
    send(body) {
      this.body = body
      const outcome = outcomes.shift() ?? { status: 200 }
      queueMicrotask(() => {
        this.listeners["upload:progress"]?.({ lengthComputable: true, loaded: body.size / 2, total: body.size })
        if (outcome === "hang") return
        if (outcome === "network") return this.listeners.error()
        this.status = outcome.status
        this.responseText = outcome.body ?? ""
        this.listeners["upload:progress"]?.({ lengthComputable: true, loaded: body.size, total: body.size })
        this.listeners.load()
      })
    }
    getResponseHeader(name) {
      return name.toLowerCase() === "etag" ? `"etag-${requests.indexOf(this) + 1}"` : null
    }
    abort() {
      this.aborted = true
      queueMicrotask(() => this.listeners.abort())
    }
  }
  return { XMLHttpRequest: FakeXMLHttpRequest, requests }
}

// Timers that fire at once, remembering the delays asked for.
function instantTimers() {
  const delays = []
  return {
    delays,
    setTimeout: (fn, ms) => {
      delays.push(ms)
      return setImmediate(fn)
    },
    clearTimeout: (timer) => clearImmediate(timer),
  }
}

function client({
  api = fakeApi(),
  xhr = fakeXhr([]),
  timers = instantTimers(),
  WebSocket = null,
  storage = null,
  ...options
} = {}) {
  return createClient({
    endpoint: "https://api.test/graphql",
    token: "t0ken",
    transport: { fetch: api.fetch, XMLHttpRequest: xhr.XMLHttpRequest, WebSocket, ...timers, random: () => 1, storage },
    ...options,
  })
}

test("a file the policy refuses is refused before any URL is asked for", async () => {
  const api = fakeApi()
  const uploader = client({ api })
  const refusals = [
    [photo("notes.txt", 10, "text/plain"), "contentType"],
    [photo("photo.png"), "filename"],
    [photo("photo.jpg", 1001), "size"],
    [photo("photo.jpg", 0), "size"],
  ]
  for (const [file, field] of refusals) {
    await assert.rejects(uploader.upload(file, { sessionId: "s" }), (error) => {
      assert.ok(error instanceof MediagateError)
      assert.equal(error.code, "BAD_USER_INPUT")
      assert.equal(error.field, field)
      return true
    })
  }
  assert.equal(api.count("getUploadUrl"), 0)
  assert.equal(api.count("uploadPolicy"), 1, "the policy is asked for once")
})

test("a failed PUT is retried with growing delays, then confirmed and followed", async () => {
  const api = fakeApi()
  const xhr = fakeXhr(["network", { status: 503 }, { status: 200 }])
  const timers = instantTimers()
  const progress = []
  const statuses = []
  const media = await client({ api, xhr, timers }).upload(photo(), {
    sessionId: "s",
    onProgress: (event) => progress.push(event),
    onStatus: (update) => statuses.push(update.status),
  })
  assert.equal(media.status, "COMPLETED")
  assert.deepEqual(
    xhr.requests.map((request) => request.url),
    ["https://s3.test/put/1", "https://s3.test/put/1", "https://s3.test/put/1"],
  )
  assert.equal(xhr.requests[2].headers["Content-Type"], "image/jpeg")
  assert.deepEqual(timers.delays.slice(0, 2), [500, 1000], "backoff doubles")
  assert.deepEqual(progress.at(-1), { loaded: 100, total: 100 })
  assert.deepEqual(statuses, ["UPLOADED", "COMPLETED"])
  assert.deepEqual(api.calls.find((call) => call.operation === "confirmUpload").variables.fileKey, "key-1")
  const asked = api.calls.find((call) => call.operation === "getUploadUrl").variables
  assert.equal(asked.size, "100", "the size is sent (as a Long), so the URL signs it")
})

test("retries stop after the configured number", async () => {
  const xhr = fakeXhr(["network", "network", "network"])
  await assert.rejects(client({ xhr, retries: 2 }).upload(photo(), { sessionId: "s" }), { code: "NETWORK_ERROR" })
  assert.equal(xhr.requests.length, 3)
})

test("an expired URL is replaced by a fresh one", async () => {
  const api = fakeApi()
  const expired = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
  const xhr = fakeXhr([{ status: 403, body: expired }, { status: 200 }])
  const media = await client({ api, xhr }).upload(photo(), { sessionId: "s" })
  assert.equal(media.status, "COMPLETED")
  assert.deepEqual(
    xhr.requests.map((request) => request.url),
    ["https://s3.test/put/1", "https://s3.test/put/2"],
  )
  assert.equal(api.count("getUploadUrl"), 2)
  assert.equal(api.calls.find((call) => call.operation === "confirmUpload").variables.fileKey, "key-2")
})

test("a refused PUT that is not transient is not retried", async () => {
  const xhr = fakeXhr([{ status: 403, body: "<Code>SignatureDoesNotMatch</Code>" }])
  await assert.rejects(client({ xhr }).upload(photo(), { sessionId: "s" }), { code: "UPLOAD_REFUSED", status: 403 })
  assert.equal(xhr.requests.length, 1)
})

test("cancelling aborts the PUT and confirms nothing", async () => {
  const api = fakeApi()
  const xhr = fakeXhr(["hang"])
  const controller = new AbortController()
  const pending = client({ api, xhr }).upload(photo(), {
    sessionId: "s",
    signal: controller.signal,
    onProgress: () => controller.abort(),
  })
  await assert.rejects(pending, { code: "ABORTED" })
  assert.equal(xhr.requests[0].aborted, true)
  assert.equal(api.count("confirmUpload"), 0)
})

test("errors carry the GraphQL extensions.code and message", async () => {
  const api = fakeApi({ confirmUpload: () => graphqlError("access denied", "FORBIDDEN") })
  await assert.rejects(client({ api }).upload(photo(), { sessionId: "s" }), {
    code: "FORBIDDEN",
    message: "access denied",
  })
})

// A server end of graphql-transport-ws that acknowledges and then pushes `updates`.
function fakeWebSocket(updates, { closeAfterAck = false } = {}) {
  const sockets = []
  class FakeWebSocket {
    constructor(url, protocol) {
      Object.assign(this, { url, protocol, listeners: {}, sent: [] })
      sockets.push(this)
      queueMicrotask(() => this.listeners.open?.())
    }
    addEventListener(type, fn) {
      this.listeners[type] = fn
    }
    emit(message) {
      queueMicrotask(() => this.listeners.message?.({ data: JSON.stringify(message) }))
    }
    send(text) {
      const message = JSON.parse(text)
      this.sent.push(message)
      if (message.type === "connection_init") {
        if (closeAfterAck) return queueMicrotask(() => this.listeners.close?.({ code: 1006 }))
        this.emit({ type: "connection_ack" })
      }
      if (message.type === "subscribe") {
        for (const media of updates)
          this.emit({ id: message.id, type: "next", payload: { data: { mediaUpdated: media } } })
      }
    }
    close(code) {
      this.closedWith = code
    }
  }
  return { WebSocket: FakeWebSocket, sockets }
}

test("statuses come by subscription, with no polling", async () => {
  const api = fakeApi()
  const ws = fakeWebSocket([
    { id: "other", status: "COMPLETED" },
    { id: "m1", status: "SCANNING" },
    { id: "m1", status: "COMPLETED", url: "https://s3.test/get" },
  ])
  const statuses = []
  const media = await client({ api, WebSocket: ws.WebSocket }).upload(photo(), {
    sessionId: "s",
    onStatus: (update) => statuses.push(update.status),
  })
  assert.equal(media.url, "https://s3.test/get")
  assert.deepEqual(statuses, ["UPLOADED", "SCANNING", "COMPLETED"])
  assert.equal(api.count("media"), 0)
  const [socket] = ws.sockets
  assert.equal(socket.protocol, "graphql-transport-ws")
  assert.deepEqual(socket.sent[0], { type: "connection_init", payload: { authorization: "Bearer t0ken" } })
  assert.deepEqual(socket.sent[1].payload.variables, { sessionId: "s" })
  assert.equal(socket.closedWith, 1000, "the socket closes once nothing is followed")
})

test("a socket that closes hands over to polling", async () => {
  const api = fakeApi()
  const ws = fakeWebSocket([], { closeAfterAck: true })
  const media = await client({ api, WebSocket: ws.WebSocket }).upload(photo(), { sessionId: "s" })
  assert.equal(media.status, "COMPLETED")
  assert.equal(api.count("media"), 1)
})

test("uploadAll keeps to its concurrency and reports each file", async () => {
  let running = 0
  let most = 0
  const xhr = fakeXhr([])
  const Original = xhr.XMLHttpRequest
  class Counting extends Original {
    send(body) {
      running += 1
      most = Math.max(most, running)
      setTimeout(() => {
        running -= 1
        super.send(body)
      }, 5)
    }
  }
  const files = Array.from({ length: 7 }, (_, n) => photo(`photo-${n}.jpg`))
  const seen = new Set()
  const results = await createClient({
    endpoint: "https://api.test/graphql",
    token: "t",
    concurrency: 2,
    transport: { fetch: fakeApi().fetch, XMLHttpRequest: Counting, WebSocket: null, ...instantTimers() },
  }).uploadAll([...files, photo("bad.txt", 1, "text/plain")], {
    sessionId: "s",
    onStatus: (file) => seen.add(file.name),
  })
  assert.equal(most, 2)
  assert.deepEqual(
    results.map((result) => result.status),
    [...Array(7).fill("fulfilled"), "rejected"],
  )
  assert.equal(results.at(-1).reason.field, "contentType")
  assert.equal(seen.size, 7)
})

// localStorage's interface over a Map.
function memoryStorage(entries = {}) {
  const items = new Map(Object.entries(entries))
  return {
    items,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
    removeItem: (key) => items.delete(key),
  }
}

const video = (size) => new File([new Uint8Array(size)], "car.mp4", { type: "video/mp4", lastModified: 42 })

function multipartApi(overrides = {}) {
  return fakeApi({
    startMultipartUpload: () => ({
      startMultipartUpload: {
        fileKey: "big-key",
        uploadId: "up-1",
        partSize: 1000,
        partCount: 3,
        expiresIn: 300,
        parts: [1, 2, 3].map((partNumber) => ({ partNumber, url: `https://s3.test/part/${partNumber}` })),
      },
    }),
    uploadPartUrls: ({ partNumbers }) => ({
      uploadPartUrls: partNumbers.map((partNumber) => ({ partNumber, url: `https://s3.test/fresh/${partNumber}` })),
    }),
    uploadedParts: () => ({ uploadedParts: [] }),
    completeMultipartUpload: () => ({ completeMultipartUpload: { id: "m1", status: "UPLOADED" } }),
    abortMultipartUpload: () => ({ abortMultipartUpload: { id: "m1" } }),
    ...overrides,
  })
}

test("a file above the threshold goes in parts, a failed part is sent again", async () => {
  const api = multipartApi()
  const xhr = fakeXhr(["network"])
  const storage = memoryStorage()
  const progress = []
  const uploader = client({ api, xhr, multipartThreshold: 1000, storage })
  const media = await uploader.upload(video(2500), { sessionId: "s1", onProgress: (p) => progress.push(p) })

  assert.equal(media.status, "COMPLETED")
  const started = api.calls.find((call) => call.operation === "startMultipartUpload")
  assert.equal(started.variables.size, "2500", "sizes travel as decimal strings (Long)")
  assert.deepEqual(
    xhr.requests.map((request) => [request.url, request.body.size]),
    [
      ["https://s3.test/part/1", 1000],
      ["https://s3.test/part/2", 1000],
      ["https://s3.test/part/3", 500],
      ["https://s3.test/part/1", 1000],
    ],
  )
  const completed = api.calls.find((call) => call.operation === "completeMultipartUpload")
  assert.deepEqual(
    completed.variables.parts.map((part) => part.partNumber),
    [1, 2, 3],
  )
  assert.deepEqual(completed.variables.parts[0].etag, '"etag-4"', "the retried part's ETag")
  assert.equal(api.count("confirmUpload"), 0)
  assert.equal(storage.items.size, 0, "nothing left to resume")
  assert.deepEqual(progress.at(-1), { loaded: 2500, total: 2500 })
})

test("a reloaded page resumes the upload from the parts the store holds", async () => {
  const saved = { fileKey: "big-key", uploadId: "up-1", partSize: 1000, partCount: 3 }
  const storage = memoryStorage({ "mediagate:upload:s1:car.mp4:2500:42": JSON.stringify(saved) })
  const api = multipartApi({
    uploadedParts: () => ({
      uploadedParts: [
        { partNumber: 1, size: 1000, etag: '"one"' },
        { partNumber: 3, size: 500, etag: '"three"' },
      ],
    }),
  })
  const xhr = fakeXhr([])
  const uploader = client({ api, xhr, multipartThreshold: 1000, storage })

  await uploader.upload(video(2500), { sessionId: "s1" })

  assert.equal(api.count("startMultipartUpload"), 0)
  assert.deepEqual(api.calls.find((call) => call.operation === "uploadPartUrls").variables.partNumbers, [2])
  assert.deepEqual(
    xhr.requests.map((request) => [request.url, request.body.size]),
    [["https://s3.test/fresh/2", 1000]],
  )
  const { parts } = api.calls.find((call) => call.operation === "completeMultipartUpload").variables
  assert.deepEqual(parts, [
    { partNumber: 1, etag: '"one"' },
    { partNumber: 2, etag: '"etag-1"' },
    { partNumber: 3, etag: '"three"' },
  ])
  assert.equal(storage.items.size, 0)
})

test("an upload that cannot be resumed any more starts afresh", async () => {
  const saved = { fileKey: "old-key", uploadId: "gone", partSize: 1000, partCount: 3 }
  const storage = memoryStorage({ "mediagate:upload:s1:car.mp4:2500:42": JSON.stringify(saved) })
  const api = multipartApi({ uploadedParts: () => graphqlError("the upload is REJECTED", "CONFLICT") })
  const uploader = client({ api, xhr: fakeXhr([]), multipartThreshold: 1000, storage })

  await uploader.upload(video(2500), { sessionId: "s1" })

  assert.equal(api.count("startMultipartUpload"), 1)
  assert.equal(api.calls.find((call) => call.operation === "completeMultipartUpload").variables.uploadId, "up-1")
})
