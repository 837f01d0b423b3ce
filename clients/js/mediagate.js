// mediagate browser client: checks a file against the upload policy, asks for a presigned
// URL, PUTs the file straight to the store with progress, confirms it, then follows its
// scan and processing live (GraphQL subscription over WebSocket, graphql-transport-ws),
// falling back to polling where WebSocket is not available. Files above a threshold go
// in parts (S3 multipart), several at a time, each retried; an interrupted upload
// resumes after a page reload from the parts the store already holds. No dependencies.
//
//   import { createClient } from "/client/mediagate.js"
//   const client = createClient({ endpoint: "https://api.example.com/graphql", token })
//   const media = await client.upload(file, { sessionId, onProgress, onStatus })

const FINAL_STATUSES = new Set(["COMPLETED", "REJECTED", "SCAN_FAILED"])
const MEDIA_FIELDS = `id sessionId fileKey status originalFilename contentType stage alt
  fileSize rejectionReason url posterUrl width height durationSeconds uploadedAt processedAt createdAt`

const POLICY_QUERY = `query { uploadPolicy {
  contentTypes { contentType kind extensions maxBytes }
  stages defaultStage maxFilenameBytes maxAltChars uploadUrlExpiresIn } }`
const GET_UPLOAD_URL = `mutation($sessionId: UUID!, $filename: String!, $contentType: String!, $stage: String,
  $size: Long) {
  getUploadUrl(sessionId: $sessionId, filename: $filename, contentType: $contentType, stage: $stage, size: $size) {
    uploadUrl fileKey expiresIn } }`
const CONFIRM_UPLOAD = `mutation($sessionId: UUID!, $fileKey: String!, $stage: String, $alt: String) {
  confirmUpload(sessionId: $sessionId, fileKey: $fileKey, stage: $stage, alt: $alt) { id status } }`
const START_MULTIPART = `mutation($sessionId: UUID!, $filename: String!, $contentType: String!,
  $size: Long!, $stage: String) {
  startMultipartUpload(sessionId: $sessionId, filename: $filename, contentType: $contentType,
    size: $size, stage: $stage) { fileKey uploadId partSize partCount expiresIn parts { partNumber url } } }`
const UPLOAD_PART_URLS = `mutation($sessionId: UUID!, $fileKey: String!, $uploadId: String!, $partNumbers: [Int!]!) {
  uploadPartUrls(sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId, partNumbers: $partNumbers) {
    partNumber url } }`
const UPLOADED_PARTS = `query($sessionId: UUID!, $fileKey: String!, $uploadId: String!) {
  uploadedParts(sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId) { partNumber size etag } }`
const COMPLETE_MULTIPART = `mutation($sessionId: UUID!, $fileKey: String!, $uploadId: String!,
  $parts: [CompletedPart!]!, $stage: String, $alt: String) {
  completeMultipartUpload(sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId,
    parts: $parts, stage: $stage, alt: $alt) { id status } }`
const ABORT_MULTIPART = `mutation($sessionId: UUID!, $fileKey: String!, $uploadId: String!) {
  abortMultipartUpload(sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId) { id } }`
const MEDIA_QUERY = `query($id: UUID!) { media(id: $id) { ${MEDIA_FIELDS} } }`
const MEDIA_UPDATED = `subscription($sessionId: UUID!) {
  mediaUpdated(sessionId: $sessionId) { ${MEDIA_FIELDS} } }`

// A URL is renewed this long before it expires rather than sent and refused.
const EXPIRY_MARGIN_MS = 5000
// uploadPartUrls signs at most this many parts per call.
const PART_URL_BATCH = 256
const RESUME_PREFIX = "mediagate:upload:"

export class MediagateError extends Error {
  constructor(message, { code = "INTERNAL_SERVER_ERROR", field, status, cause } = {}) {
    super(message, { cause })
    this.name = "MediagateError"
    this.code = code
    this.field = field
    this.status = status
  }
}

export function createClient(options) {
  return new MediagateClient(options)
}

export class MediagateClient {
  #api
  #follower
  #concurrency
  #multipartThreshold
  #partConcurrency
  #policyRequest = null

  constructor({
    endpoint,
    token,
    getToken,
    websocketEndpoint,
    retries = 4,
    backoffMs = 500,
    pollIntervalMs = 2000,
    concurrency = 3,
    multipartThreshold = 64 * 1024 * 1024,
    partConcurrency = 4,
    transport = {},
  }) {
    if (!endpoint) throw new TypeError("createClient needs an endpoint")
    if (!token && !getToken) throw new TypeError("createClient needs a token or getToken")
    this.#api = new Api({ endpoint, getToken: getToken ?? (async () => token), retries, backoffMs, transport })
    this.#follower = new StatusFollower(this.#api, websocketEndpoint ?? endpoint.replace(/^http/, "ws"), pollIntervalMs)
    this.#concurrency = concurrency
    this.#multipartThreshold = multipartThreshold
    this.#partConcurrency = partConcurrency
  }

  // The server's upload policy, asked once.
  policy() {
    this.#policyRequest ??= this.request(POLICY_QUERY).then((data) => data.uploadPolicy)
    this.#policyRequest.catch(() => (this.#policyRequest = null))
    return this.#policyRequest
  }

  // Uploads one file; resolves with its final Media (COMPLETED, REJECTED or SCAN_FAILED).
  async upload(file, { sessionId, stage, alt, contentType, onProgress, onStatus, signal } = {}) {
    throwIfAborted(signal)
    const type = contentType ?? file.type
    checkFile(file, type, await this.policy())
    const variables = { sessionId, filename: file.name, contentType: type, stage }
    const confirmed =
      file.size > this.#multipartThreshold
        ? await this.#uploadInParts(file, variables, { alt, onProgress, signal })
        : await this.#uploadWhole(file, variables, { alt, onProgress, signal })
    onStatus?.(confirmed)
    return this.#follower.follow(confirmed.id, sessionId, { onStatus, signal })
  }

  // Uploads several files, at most `concurrency` at a time; resolves like Promise.allSettled.
  async uploadAll(files, options = {}) {
    const queue = [...files].map((file, index) => ({ file, index }))
    const results = new Array(queue.length)
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const { file, index } = next
        const perFile = {
          ...options,
          onProgress: options.onProgress && ((progress) => options.onProgress(file, progress)),
          onStatus: options.onStatus && ((media) => options.onStatus(file, media)),
        }
        results[index] = await this.upload(file, perFile).then(
          (value) => ({ status: "fulfilled", value }),
          (reason) => ({ status: "rejected", reason }),
        )
      }
    }
    const workers = Math.max(1, Math.min(this.#concurrency, queue.length))
    await Promise.all(Array.from({ length: workers }, worker))
    return results
  }

  // One GraphQL request over HTTP; resolves with `data`, rejects with a MediagateError.
  request(query, variables = {}) {
    return this.#api.request(query, variables)
  }

  // One PUT, then confirmUpload.
  async #uploadWhole(file, variables, { alt, onProgress, signal }) {
    const { sessionId, stage, contentType } = variables
    // The size is signed into the URL: the store itself refuses a body of another length.
    const sized = { ...variables, size: String(file.size) }
    const fileKey = await this.#api.put(file, contentType, sized, { onProgress, signal })
    throwIfAborted(signal)
    const { confirmUpload } = await this.#api.retrying(
      () => this.request(CONFIRM_UPLOAD, { sessionId, fileKey, stage, alt }),
      signal,
    )
    return confirmUpload
  }

  async #uploadInParts(file, variables, { alt, onProgress, signal }) {
    const upload = await MultipartUpload.open(this.#api, file, variables, signal)
    return upload.send(file, { stage: variables.stage, alt, onProgress, signal }, this.#partConcurrency, () =>
      this.policy(),
    )
  }
}

// The HTTP side every part uses: GraphQL requests, PUTs to the store, retries.
class Api {
  #endpoint
  #retries
  #backoffMs

  constructor({ endpoint, getToken, retries, backoffMs, transport }) {
    this.#endpoint = endpoint
    this.getToken = getToken
    this.#retries = retries
    this.#backoffMs = backoffMs
    this.transport = {
      fetch: transport.fetch ?? globalThis.fetch?.bind(globalThis),
      XMLHttpRequest: transport.XMLHttpRequest ?? globalThis.XMLHttpRequest,
      WebSocket: "WebSocket" in transport ? transport.WebSocket : globalThis.WebSocket,
      setTimeout: transport.setTimeout ?? globalThis.setTimeout.bind(globalThis),
      clearTimeout: transport.clearTimeout ?? globalThis.clearTimeout.bind(globalThis),
      random: transport.random ?? Math.random,
      storage: "storage" in transport ? transport.storage : globalThis.localStorage,
    }
  }

  async request(query, variables = {}) {
    const token = await this.getToken()
    let response
    try {
      response = await this.transport.fetch(this.#endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      })
    } catch (cause) {
      throw new MediagateError("the API cannot be reached", { code: "NETWORK_ERROR", cause })
    }
    const body = await response.json().catch(() => ({}))
    const [error] = body.errors ?? []
    if (error) {
      const { code, field } = error.extensions ?? {}
      throw new MediagateError(error.message, { code, field, status: response.status })
    }
    if (!response.ok || !body.data) {
      throw new MediagateError(`the API answered ${response.status}`, { status: response.status })
    }
    return body.data
  }

  // Asks for a URL and PUTs the file, renewing the URL when it expired; returns the key.
  async put(file, contentType, variables, { onProgress, signal }) {
    let ticket = null
    return this.retrying(async () => {
      if (!ticket || Date.now() > ticket.expiresAt - EXPIRY_MARGIN_MS) {
        const { getUploadUrl } = await this.request(GET_UPLOAD_URL, variables)
        ticket = { ...getUploadUrl, expiresAt: Date.now() + getUploadUrl.expiresIn * 1000 }
      }
      try {
        await this.send(ticket.uploadUrl, file, contentType, { onProgress, signal })
      } catch (error) {
        if (error.code === "URL_EXPIRED") ticket = null
        throw error
      }
      return ticket.fileKey
    }, signal)
  }

  // The PUT itself, through XMLHttpRequest for its upload progress events; resolves with
  // the store's ETag (a part's receipt for completeMultipartUpload).
  send(url, file, contentType, { onProgress, signal }) {
    return new Promise((resolve, reject) => {
      const xhr = new this.transport.XMLHttpRequest()
      const abort = () => xhr.abort()
      signal?.addEventListener("abort", abort, { once: true })
      const settle = (action) => (value) => {
        signal?.removeEventListener("abort", abort)
        action(value)
      }
      const done = settle(resolve)
      const fail = settle(reject)
      xhr.open("PUT", url, true)
      if (contentType) xhr.setRequestHeader("Content-Type", contentType)
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress?.({ loaded: event.loaded, total: event.total })
      })
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) return done(xhr.getResponseHeader("ETag"))
        fail(storeError(xhr.status, xhr.responseText))
      })
      xhr.addEventListener("error", () =>
        fail(new MediagateError("the upload was interrupted", { code: "NETWORK_ERROR" })),
      )
      xhr.addEventListener("abort", () => fail(abortError()))
      xhr.send(file)
    })
  }

  // Runs `attempt` again after transient failures, waiting longer each time.
  async retrying(attempt, signal) {
    for (let failures = 0; ; failures++) {
      try {
        return await attempt()
      } catch (error) {
        if (!isTransient(error) || failures >= this.#retries || signal?.aborted) throw error
        await this.#wait(this.#backoffMs * 2 ** failures * (0.5 + this.transport.random() / 2), signal)
      }
    }
  }

  #wait(ms, signal) {
    return new Promise((resolve, reject) => {
      const timer = this.transport.setTimeout(() => {
        signal?.removeEventListener("abort", cancel)
        resolve()
      }, ms)
      const cancel = () => {
        this.transport.clearTimeout(timer)
        reject(abortError())
      }
      signal?.addEventListener("abort", cancel, { once: true })
    })
  }
}

// One file sent in parts, `partConcurrency` at a time, each retried, then
// completeMultipartUpload. Its ids are kept in storage (localStorage) under the file's
// name, size and date, so a page reloaded mid-way picks up where the store's parts end.
class MultipartUpload {
  #api
  #resumeKey
  #urls = new Map()
  #signing = null

  constructor(api, { fileKey, uploadId, partSize, partCount, sessionId, resumeKey, done }) {
    this.#api = api
    this.ids = { sessionId, fileKey, uploadId }
    this.partSize = partSize
    this.partCount = partCount
    this.done = done
    this.#resumeKey = resumeKey
  }

  // The upload this file was in the middle of (the parts the store holds), or a new one.
  static async open(api, file, variables, signal) {
    const { sessionId } = variables
    const resumeKey = `${RESUME_PREFIX}${sessionId}:${file.name}:${file.size}:${file.lastModified}`
    const saved = readSaved(api.transport.storage, resumeKey)
    if (saved) {
      const ids = { sessionId, fileKey: saved.fileKey, uploadId: saved.uploadId }
      try {
        const { uploadedParts } = await api.retrying(() => api.request(UPLOADED_PARTS, ids), signal)
        const done = new Map(uploadedParts.map((part) => [part.partNumber, { etag: part.etag, size: part.size }]))
        return new MultipartUpload(api, { ...saved, sessionId, resumeKey, done })
      } catch (error) {
        // Completed, aborted or expired meanwhile: start afresh.
        if (!["CONFLICT", "NOT_FOUND"].includes(error.code)) throw error
        api.transport.storage?.removeItem(resumeKey)
      }
    }
    const { startMultipartUpload: started } = await api.retrying(
      () => api.request(START_MULTIPART, { ...variables, size: String(file.size) }),
      signal,
    )
    const { fileKey, uploadId, partSize, partCount } = started
    const upload = new MultipartUpload(api, {
      fileKey,
      uploadId,
      partSize,
      partCount,
      sessionId,
      resumeKey,
      done: new Map(),
    })
    upload.#keepUrls(started.parts, started.expiresIn)
    api.transport.storage?.setItem(resumeKey, JSON.stringify({ fileKey, uploadId, partSize, partCount }))
    return upload
  }

  async send(file, { stage, alt, onProgress, signal }, partConcurrency, policy) {
    const loaded = new Map([...this.done].map(([number, part]) => [number, part.size]))
    const report = () => {
      let sum = 0
      for (const bytes of loaded.values()) sum += bytes
      onProgress?.({ loaded: sum, total: file.size })
    }
    report()
    const pending = []
    for (let number = 1; number <= this.partCount; number++) {
      if (!this.done.has(number)) pending.push(number)
    }
    const sendNext = async () => {
      for (let number = pending.shift(); number; number = pending.shift()) {
        const start = (number - 1) * this.partSize
        const blob = file.slice(start, Math.min(start + this.partSize, file.size))
        const etag = await this.#api.retrying(async () => {
          const url = await this.#partUrl(number, pending, policy)
          try {
            return await this.#api.send(url, blob, null, {
              onProgress: (progress) => {
                loaded.set(number, progress.loaded)
                report()
              },
              signal,
            })
          } catch (error) {
            if (error.code === "URL_EXPIRED") this.#urls.delete(number)
            throw error
          }
        }, signal)
        if (!etag) {
          throw new MediagateError("the store does not show this page the part's ETag (CORS ExposeHeaders)", {
            code: "UPLOAD_REFUSED",
          })
        }
        this.done.set(number, { etag, size: blob.size })
        loaded.set(number, blob.size)
        report()
      }
    }
    try {
      const senders = Math.max(1, Math.min(partConcurrency, pending.length))
      await Promise.all(Array.from({ length: senders }, sendNext))
      const parts = [...this.done].sort(([a], [b]) => a - b).map(([partNumber, { etag }]) => ({ partNumber, etag }))
      const { completeMultipartUpload } = await this.#api.retrying(
        () => this.#api.request(COMPLETE_MULTIPART, { ...this.ids, parts, stage, alt }),
        signal,
      )
      this.#forget()
      return completeMultipartUpload
    } catch (error) {
      if (error.code === "ABORTED") {
        this.#forget()
        this.#api.request(ABORT_MULTIPART, this.ids).catch(() => {})
      }
      throw error
    }
  }

  #forget() {
    this.#api.transport.storage?.removeItem(this.#resumeKey)
  }

  // A valid URL for this part, asking for a batch (this part and those queued after it)
  // when it has none; parallel senders share one request.
  async #partUrl(number, pending, policy) {
    const valid = (n) => {
      const known = this.#urls.get(n)
      return known && Date.now() < known.expiresAt - EXPIRY_MARGIN_MS ? known.url : null
    }
    while (!valid(number)) {
      if (!this.#signing) {
        const partNumbers = [number, ...pending.filter((n) => !valid(n))].slice(0, PART_URL_BATCH)
        this.#signing = Promise.all([this.#api.request(UPLOAD_PART_URLS, { ...this.ids, partNumbers }), policy()])
          .then(([{ uploadPartUrls }, { uploadUrlExpiresIn }]) => this.#keepUrls(uploadPartUrls, uploadUrlExpiresIn))
          .finally(() => (this.#signing = null))
      }
      await this.#signing
    }
    return valid(number)
  }

  #keepUrls(parts, expiresIn) {
    const expiresAt = Date.now() + expiresIn * 1000
    for (const { partNumber, url } of parts) this.#urls.set(partNumber, { url, expiresAt })
  }
}

// A media item's status until it is final: pushed by subscription (one per session,
// shared by the uploads that wait on its media), else polled.
class StatusFollower {
  #api
  #websocketEndpoint
  #pollIntervalMs
  #live = null
  #sessions = new Map()

  constructor(api, websocketEndpoint, pollIntervalMs) {
    this.#api = api
    this.#websocketEndpoint = websocketEndpoint
    this.#pollIntervalMs = pollIntervalMs
  }

  follow(mediaId, sessionId, { onStatus, signal }) {
    return new Promise((resolve, reject) => {
      let stop = () => {}
      const finish = (settle) => (value) => {
        stop()
        signal?.removeEventListener("abort", cancel)
        settle(value)
      }
      const succeed = finish(resolve)
      const fail = finish(reject)
      const cancel = () => fail(abortError())
      signal?.addEventListener("abort", cancel, { once: true })
      const seen = (media) => {
        onStatus?.(media)
        if (FINAL_STATUSES.has(media.status)) succeed(media)
      }
      const poll = () => {
        stop()
        stop = this.#poll(mediaId, seen, fail)
      }
      if (!this.#api.transport.WebSocket) return poll()
      stop = this.#watch(sessionId, mediaId, {
        next: seen,
        error: (error) => (error.code === "SOCKET_CLOSED" ? poll() : fail(error)),
      })
    })
  }

  #watch(sessionId, mediaId, handlers) {
    let session = this.#sessions.get(sessionId)
    if (!session) {
      session = { handlers: new Map(), stop: () => {} }
      const watched = session
      this.#sessions.set(sessionId, watched)
      try {
        watched.stop = this.#liveSocket().subscribe(
          MEDIA_UPDATED,
          { sessionId },
          {
            next: (data) => watched.handlers.get(data.mediaUpdated.id)?.next(data.mediaUpdated),
            error: (error) => {
              this.#sessions.delete(sessionId)
              for (const handler of [...watched.handlers.values()]) handler.error(error)
            },
          },
        )
      } catch (cause) {
        this.#sessions.delete(sessionId)
        queueMicrotask(() => handlers.error(new MediagateError("no live connection", { code: "SOCKET_CLOSED", cause })))
      }
    }
    session.handlers.set(mediaId, handlers)
    return () => {
      if (session.handlers.delete(mediaId) && session.handlers.size === 0) {
        if (this.#sessions.get(sessionId) === session) this.#sessions.delete(sessionId)
        session.stop()
      }
    }
  }

  #poll(mediaId, seen, fail) {
    let timer = null
    let stopped = false
    const { transport } = this.#api
    const check = async () => {
      try {
        const { media } = await this.#api.retrying(() => this.#api.request(MEDIA_QUERY, { id: mediaId }))
        if (stopped) return
        seen(media)
      } catch (error) {
        return fail(error)
      }
      if (!stopped) timer = transport.setTimeout(check, this.#pollIntervalMs)
    }
    check()
    return () => {
      stopped = true
      if (timer !== null) transport.clearTimeout(timer)
    }
  }

  #liveSocket() {
    this.#live ??= new LiveSocket(
      this.#websocketEndpoint,
      this.#api.getToken,
      this.#api.transport.WebSocket,
      (socket) => {
        if (this.#live === socket) this.#live = null
      },
    )
    return this.#live
  }
}

function readSaved(storage, resumeKey) {
  try {
    return JSON.parse(storage?.getItem(resumeKey) ?? "null")
  } catch {
    return null
  }
}

// One WebSocket for all of a client's subscriptions, speaking graphql-transport-ws;
// opened on first use, closed when its last subscription ends.
class LiveSocket {
  constructor(url, getToken, WebSocketClass, onClosed) {
    this.subscriptions = new Map()
    this.nextId = 1
    this.onClosed = onClosed
    this.socket = new WebSocketClass(url, "graphql-transport-ws")
    this.acknowledged = false
    this.socket.addEventListener("open", async () => {
      const token = await getToken()
      this.sendMessage({ type: "connection_init", payload: { authorization: `Bearer ${token}` } })
    })
    this.socket.addEventListener("message", (event) => this.receive(JSON.parse(event.data)))
    this.socket.addEventListener("close", (event) => this.closed(event))
  }

  subscribe(query, variables, sink) {
    const id = String(this.nextId++)
    this.subscriptions.set(id, { payload: { query, variables }, sink })
    if (this.acknowledged) this.start(id)
    return () => {
      if (!this.subscriptions.delete(id)) return
      if (this.acknowledged) this.sendMessage({ id, type: "complete" })
      if (this.subscriptions.size === 0) this.close()
    }
  }

  start(id) {
    this.sendMessage({ id, type: "subscribe", payload: this.subscriptions.get(id).payload })
  }

  receive(message) {
    const subscription = this.subscriptions.get(message.id)
    switch (message.type) {
      case "connection_ack":
        this.acknowledged = true
        for (const id of this.subscriptions.keys()) this.start(id)
        break
      case "ping":
        this.sendMessage({ type: "pong" })
        break
      case "next":
        if (message.payload.errors?.length) {
          subscription?.sink.error(graphqlError(message.payload.errors[0]))
        } else {
          subscription?.sink.next(message.payload.data)
        }
        break
      case "error":
        this.subscriptions.delete(message.id)
        subscription?.sink.error(graphqlError(message.payload[0]))
        break
      case "complete":
        this.subscriptions.delete(message.id)
        break
    }
  }

  sendMessage(message) {
    this.socket.send(JSON.stringify(message))
  }

  // Whatever the reason (no WebSocket here, token expired, dropped), the uploads
  // that were following go on by polling, with a fresh token each time.
  closed(event) {
    this.onClosed(this)
    const error = new MediagateError(`the live connection closed (${event.code})`, { code: "SOCKET_CLOSED" })
    const sinks = [...this.subscriptions.values()].map(({ sink }) => sink)
    this.subscriptions.clear()
    for (const sink of sinks) sink.error(error)
  }

  close() {
    this.onClosed(this)
    this.socket.close(1000, "done")
  }
}

function checkFile(file, contentType, policy) {
  const allowed = policy.contentTypes.find((entry) => entry.contentType === contentType)
  if (!allowed) {
    const names = policy.contentTypes.map((entry) => entry.contentType).join(", ")
    throw new MediagateError(`${file.name}: the type must be one of ${names}`, {
      code: "BAD_USER_INPUT",
      field: "contentType",
    })
  }
  const extension = file.name.includes(".") ? file.name.slice(file.name.lastIndexOf(".")).toLowerCase() : ""
  if (!allowed.extensions.includes(extension)) {
    throw new MediagateError(`${file.name}: a ${contentType} file must end in ${allowed.extensions.join(", ")}`, {
      code: "BAD_USER_INPUT",
      field: "filename",
    })
  }
  if (new TextEncoder().encode(file.name).length > policy.maxFilenameBytes) {
    throw new MediagateError(`${file.name}: the name is too long`, { code: "BAD_USER_INPUT", field: "filename" })
  }
  if (file.size === 0 || file.size > allowed.maxBytes) {
    throw new MediagateError(`${file.name}: the size must be 1 to ${allowed.maxBytes} bytes`, {
      code: "BAD_USER_INPUT",
      field: "size",
    })
  }
}

function storeError(status, body) {
  if (status === 403 && /expired/i.test(body ?? "")) {
    return new MediagateError("the upload URL expired", { code: "URL_EXPIRED", status })
  }
  const code = status >= 500 || status === 408 || status === 429 ? "STORE_UNAVAILABLE" : "UPLOAD_REFUSED"
  return new MediagateError(`the store refused the upload (${status})`, { code, status })
}

function isTransient(error) {
  return ["NETWORK_ERROR", "STORE_UNAVAILABLE", "URL_EXPIRED", "SERVICE_UNAVAILABLE"].includes(error.code)
}

function graphqlError(error) {
  const { code, field } = error?.extensions ?? {}
  return new MediagateError(error?.message ?? "unknown error", { code, field })
}

function abortError() {
  return new MediagateError("the upload was cancelled", { code: "ABORTED" })
}

function throwIfAborted(signal) {
  if (signal?.aborted) throw abortError()
}
