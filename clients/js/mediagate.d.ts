// Type declarations for mediagate.js, the mediagate browser client.

export type MediaStatus =
  | "PENDING_UPLOAD"
  | "UPLOADED"
  | "SCANNING"
  | "SCAN_FAILED"
  | "PROCESSING"
  | "COMPLETED"
  | "REJECTED"
  | "DELETED"

export interface Media {
  id: string
  sessionId: string
  fileKey: string
  status: MediaStatus
  originalFilename: string
  contentType: string
  stage: string | null
  alt: string | null
  fileSize: number | null
  rejectionReason: string | null
  /** Presigned GET URL of the processed file; null until COMPLETED. */
  url: string | null
  /** Presigned GET URL of a video's poster frame; null for images. */
  posterUrl: string | null
  width: number | null
  height: number | null
  durationSeconds: number | null
  uploadedAt: string | null
  processedAt: string | null
  createdAt: string
}

export interface ContentTypePolicy {
  contentType: string
  kind: "IMAGE" | "VIDEO"
  extensions: string[]
  maxBytes: number
}

export interface UploadPolicy {
  contentTypes: ContentTypePolicy[]
  stages: string[]
  defaultStage: string
  maxFilenameBytes: number
  maxAltChars: number
  uploadUrlExpiresIn: number
  downloadUrlExpiresIn?: number
  multipartPartSize?: number
}

export interface Progress {
  loaded: number
  total: number
}

/** What confirmUpload answers first, then each Media state as it changes. */
export type StatusUpdate = Pick<Media, "id" | "status"> & Partial<Media>

export interface UploadOptions {
  sessionId: string
  stage?: string
  alt?: string
  /** Defaults to the File's own type. */
  contentType?: string
  onProgress?: (progress: Progress) => void
  onStatus?: (media: StatusUpdate) => void
  signal?: AbortSignal
}

export interface UploadAllOptions extends Omit<UploadOptions, "onProgress" | "onStatus"> {
  onProgress?: (file: File, progress: Progress) => void
  onStatus?: (file: File, media: StatusUpdate) => void
}

export interface Transport {
  fetch?: typeof fetch
  XMLHttpRequest?: typeof XMLHttpRequest
  /** null: never open a WebSocket, follow statuses by polling. */
  WebSocket?: typeof WebSocket | null
  setTimeout?: (callback: () => void, ms: number) => unknown
  clearTimeout?: (timer: unknown) => void
  random?: () => number
  /** Where an upload in parts keeps its ids to resume after a reload (localStorage); null: nowhere. */
  storage?: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null
}

export interface ClientOptions {
  /** The GraphQL endpoint, e.g. "https://api.example.com/graphql". */
  endpoint: string
  token?: string
  /** Called before each request: return a fresh token. */
  getToken?: () => string | Promise<string>
  /** Defaults to the endpoint with ws(s):. */
  websocketEndpoint?: string
  /** Retries of a failed PUT or API call (network errors, 5xx, an expired URL). Default 4. */
  retries?: number
  /** First retry delay; doubled each time, with jitter. Default 500. */
  backoffMs?: number
  /** Polling interval where WebSocket is unavailable. Default 2000. */
  pollIntervalMs?: number
  /** Files uploaded at once by uploadAll. Default 3. */
  concurrency?: number
  /** Files larger than this (bytes, default 64 MiB) are uploaded in parts (S3 multipart). */
  multipartThreshold?: number
  /** Parts of one file sent at the same time (default 4); each part is retried. */
  partConcurrency?: number
  transport?: Transport
}

export type ErrorCode =
  | "BAD_USER_INPUT"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "SERVICE_UNAVAILABLE"
  | "NETWORK_ERROR"
  | "STORE_UNAVAILABLE"
  | "UPLOAD_REFUSED"
  | "URL_EXPIRED"
  | "ABORTED"
  | "SOCKET_CLOSED"
  | "INTERNAL_SERVER_ERROR"
  | (string & {})

export class MediagateError extends Error {
  /** The GraphQL `extensions.code`, or the client's own code. */
  code: ErrorCode
  /** The input field at fault, when the server or the policy check names one. */
  field?: string
  status?: number
}

export type Settled<T> = { status: "fulfilled"; value: T } | { status: "rejected"; reason: MediagateError }

export class MediagateClient {
  constructor(options: ClientOptions)
  policy(): Promise<UploadPolicy>
  /** Resolves with the final Media: COMPLETED, REJECTED or SCAN_FAILED. */
  upload(file: File, options: UploadOptions): Promise<Media>
  uploadAll(files: Iterable<File>, options: UploadAllOptions): Promise<Settled<Media>[]>
  request<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<T>
}

export function createClient(options: ClientOptions): MediagateClient
