// The demo page of mediagate's browser client, served by the API (DEMO_PAGE=true) and
// talking to it alone: the client module comes from this origin, so does the API.
// The session and the token come in the address's fragment (#token=…&session=…
// [&multipartThreshold=…]), which browsers send to no server and no Referer; they are
// taken out of the address at once and kept in this tab's sessionStorage, so that a
// reload resumes. Files above multipartThreshold bytes (the client's default: 64 MiB)
// go in parts.
import { createClient } from "/client/mediagate.js"

if (location.hash.length > 1) {
  sessionStorage.setItem("mediagate-demo", location.hash.slice(1))
  history.replaceState(null, "", location.pathname)
}
const params = new URLSearchParams(sessionStorage.getItem("mediagate-demo") ?? "")
const endpoint = new URL("/graphql", location.href).href
const sessionId = params.get("session")
const token = params.get("token")
const multipartThreshold = Number(params.get("multipartThreshold")) || undefined
const client = createClient({ endpoint, token, multipartThreshold })
document.querySelector("#config").textContent = token
  ? `API ${endpoint} · session ${sessionId}`
  : "Open this page as /demo#token=…&session=… (scripts/dev prints the address)."

const list = document.querySelector("#files")
const drop = document.querySelector("#drop")

function row(file) {
  const item = document.createElement("li")
  item.dataset.file = file.name
  item.dataset.progressEvents = "0"
  item.innerHTML = `<span class="name"></span><progress max="1" value="0"></progress>
    <span class="status">QUEUED</span><div class="result"></div>`
  item.querySelector(".name").textContent = file.name
  list.append(item)
  return item
}

function showStatus(item, status) {
  const badge = item.querySelector(".status")
  badge.textContent = badge.dataset.status = status
}

function showResult(item, media) {
  const result = item.querySelector(".result")
  const preview = media.posterUrl ?? (media.contentType.startsWith("image/") ? media.url : null)
  if (media.status === "COMPLETED" && preview) {
    const image = document.createElement("img")
    image.alt = media.alt ?? media.originalFilename
    image.src = preview
    result.append(image)
  } else if (media.rejectionReason) {
    result.innerHTML = `<span class="reason"></span>`
    result.firstChild.textContent = media.rejectionReason
  }
}

async function uploadFiles(files) {
  const rows = new Map([...files].map((file) => [file, row(file)]))
  const results = await client.uploadAll(files, {
    sessionId,
    onProgress: (file, { loaded, total }) => {
      const item = rows.get(file)
      item.querySelector("progress").value = loaded / total
      item.dataset.progressEvents = String(Number(item.dataset.progressEvents) + 1)
      showStatus(item, "UPLOADING")
    },
    onStatus: (file, media) => showStatus(rows.get(file), media.status),
  })
  results.forEach((result, index) => {
    const item = rows.get(files[index])
    if (result.status === "fulfilled") {
      showStatus(item, result.value.status)
      showResult(item, result.value)
    } else {
      showStatus(item, "ERROR")
      item.querySelector(".result").innerHTML = `<span class="reason"></span>`
      item.querySelector(".reason").textContent = `${result.reason.code}: ${result.reason.message}`
    }
  })
}

document.querySelector("#picker").addEventListener("change", (event) => uploadFiles([...event.target.files]))
drop.addEventListener("dragover", (event) => {
  event.preventDefault()
  drop.classList.add("over")
})
drop.addEventListener("dragleave", () => drop.classList.remove("over"))
drop.addEventListener("drop", (event) => {
  event.preventDefault()
  drop.classList.remove("over")
  uploadFiles([...event.dataTransfer.files])
})
// The client module arrives after the page's load event: say when files are taken.
document.body.dataset.ready = "true"
