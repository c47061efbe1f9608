// The built component, run by node: jco transpiles target/redirects.component.wasm to
// JavaScript plus core wasm, and preview2-shim provides WASI with a temporary directory
// preopened at `/`, as cupd preopens the tree. This exercises what the plain-node tests
// cannot: src/wasi-store.js, and how errors cross the component boundary.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';

const dir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const wasm = path.join(dir, 'target', 'redirects.component.wasm');
const skip = !fs.existsSync(wasm) && 'target/redirects.component.wasm is not built (./build.sh)';

let controller;
let root;
before(async () => {
  if (skip) return;
  const out = path.join(dir, 'target', 'transpiled');
  fs.rmSync(out, { recursive: true, force: true });
  execFileSync(path.join(dir, 'node_modules', '.bin', 'jco'),
    ['transpile', wasm, '-o', out, '--name', 'redirects', '--no-typescript', '--quiet'], { stdio: 'inherit' });
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'js-redirects-component-'));
  _setPreopens({ '/': root });
  ({ controller } = await import(pathToFileURL(path.join(out, 'redirects.js'))));
});
after(() => root && fs.rmSync(root, { recursive: true, force: true }));

const req = { kind: 'Redirect', namespace: 'default' };
const file = () => path.join(root, 'default', '_redirects');
const resource = (name, spec) => ({
  apiVersion: 'web.example.com/v1',
  kind: 'Redirect',
  metadata: { namespace: 'default', name, labels: undefined, annotations: undefined },
  spec: JSON.stringify(spec),
});
// jco wraps the `err` payload of a result in a ComponentError whose `payload` is the variant.
const fails = (f, tag, message) =>
  assert.throws(f, (e) => e.payload?.tag === tag && message.test(e.payload.val));

test('the component reads and rewrites _redirects through WASI', { skip }, () => {
  fs.mkdirSync(path.dirname(file()));
  fs.writeFileSync(file(), '# Kept\n/legacy /elsewhere\n');
  assert.deepEqual(controller.list(req), []);
  controller.put(req, 'old-docs', resource('old-docs', { from: '/old', to: '/new' }));
  controller.put(req, 'blog', resource('blog', { from: '/blog', to: 'https://blog.example.com/', status: 302 }));
  controller.put(req, 'old-docs', resource('old-docs', { from: '/old', to: '/newer', status: 308 }));
  assert.equal(fs.readFileSync(file(), 'utf8'),
    '# Kept\n/legacy /elsewhere\n/old /newer 308  # name: old-docs\n/blog https://blog.example.com/ 302  # name: blog\n');
  assert.deepEqual(fs.readdirSync(path.dirname(file())), ['_redirects'], 'no temporary file left');
  assert.deepEqual(controller.get(req, 'blog'), resource('blog', { from: '/blog', to: 'https://blog.example.com/', status: 302 }));
  assert.deepEqual(controller.list(req).map((r) => r.metadata.name), ['old-docs', 'blog']);
  controller.delete(req, 'old-docs');
  controller.delete(req, 'blog');
  assert.equal(fs.readFileSync(file(), 'utf8'), '# Kept\n/legacy /elsewhere\n');
  fs.writeFileSync(file(), '\n');
  controller.put(req, 'a', resource('a', { from: '/a', to: '/b' }));
  controller.delete(req, 'a');
  assert.ok(!fs.existsSync(file()), 'the file goes when only blank lines remain');
});

test('errors cross the boundary as the WIT error variant', { skip }, () => {
  fails(() => controller.get(req, 'nope'), 'not-found', /default\/nope not found/);
  fails(() => controller.delete({ ...req, namespace: 'other' }, 'nope'), 'not-found', /other\/nope/);
  fails(() => controller.get(req, 'Bad'), 'invalid', /DNS-1123/);
  fails(() => controller.put(req, 'a', resource('b', { from: '/a', to: '/b' })), 'invalid', /metadata.name/);
  fails(() => controller.list({ ...req, kind: 'Flag' }), 'invalid', /kind/);
  fs.mkdirSync(path.dirname(file()), { recursive: true });
  fs.writeFileSync(file(), '/a /b 200 # name: a\n');
  fails(() => controller.list(req), 'failed', /line 1/);
  // A file that is not UTF-8 reaches the adapter as a plain Error: it must still be `failed`,
  // not a trap.
  fs.writeFileSync(file(), Buffer.from([0x2f, 0xff, 0x0a]));
  fails(() => controller.list(req), 'failed', /not UTF-8/);
  controller.list({ ...req, namespace: 'empty' });
});
