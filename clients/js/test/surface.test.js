// The declarations (mediagate.d.ts) are the module's public surface, no more, no less.
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { test } from "node:test"

import * as client from "../mediagate.js"

const declarations = readFileSync(new URL("../mediagate.d.ts", import.meta.url), "utf8")

function declaredMembers(className) {
  const body = declarations.split(`export class ${className}`)[1].split("\n}")[0]
  return new Set([...body.matchAll(/^  (\w+)[<(]/gm)].map((match) => match[1]).filter((name) => name !== "constructor"))
}

function publicMethods(cls) {
  return new Set(Object.getOwnPropertyNames(cls.prototype).filter((name) => name !== "constructor"))
}

test("the module exports the values its declarations export", () => {
  const declared = new Set(
    [...declarations.matchAll(/^export (?:declare )?(?:class|function) (\w+)/gm)].map((m) => m[1]),
  )
  assert.deepEqual(new Set(Object.keys(client)), declared)
})

test("the client's methods are the declared ones, the rest private", () => {
  assert.deepEqual(publicMethods(client.MediagateClient), declaredMembers("MediagateClient"))
})

test("an instance shows no state of its own", () => {
  const instance = client.createClient({ endpoint: "https://api.test/graphql", token: "t" })
  assert.deepEqual(Object.keys(instance), [])
})
