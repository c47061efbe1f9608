import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import * as c from '../src/controller.js';
import { nodeStore } from './node-store.js';

let root;
let store;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'js-redirects-'));
  store = nodeStore(root);
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const req = { kind: 'Redirect', namespace: 'default' };
const file = () => path.join(root, 'default', '_redirects');
const resource = (name, spec, over = {}) => ({
  apiVersion: 'web.example.com/v1',
  kind: 'Redirect',
  metadata: { namespace: 'default', name, labels: undefined, annotations: undefined },
  spec: JSON.stringify(spec),
  ...over,
});
const rejects = (f, tag, message) =>
  assert.throws(f, (e) => e instanceof c.CupError && e.tag === tag && message.test(e.message));

test('put, get, list, delete round-trip through the file', () => {
  assert.deepEqual(c.list(store, req), []);
  c.put(store, req, 'old-docs', resource('old-docs', { from: '/old', to: '/new' }));
  c.put(store, req, 'blog', resource('blog', { from: '/blog', to: 'https://blog.example.com/', status: 302 }));
  assert.equal(fs.readFileSync(file(), 'utf8'),
    '/old /new 301  # name: old-docs\n/blog https://blog.example.com/ 302  # name: blog\n');
  assert.deepEqual(c.get(store, req, 'old-docs'), resource('old-docs', { from: '/old', to: '/new', status: 301 }));
  assert.deepEqual(c.list(store, req).map((r) => r.metadata.name), ['old-docs', 'blog']);
  c.delete(store, req, 'old-docs');
  c.delete(store, req, 'blog');
  assert.ok(!fs.existsSync(file()), 'the file goes with its last rule');
  assert.deepEqual(fs.readdirSync(path.join(root, 'default')), []);
});

test('hand-written lines survive put and delete', () => {
  fs.mkdirSync(path.dirname(file()));
  fs.writeFileSync(file(), '# Kept\n/legacy /elsewhere 302\n\n/a /b # name: a\n');
  c.put(store, req, 'a', resource('a', { from: '/a', to: '/c', status: 307 }));
  c.put(store, req, 'z', resource('z', { from: '/z', to: '/y' }));
  assert.equal(fs.readFileSync(file(), 'utf8'),
    '# Kept\n/legacy /elsewhere 302\n\n/a /c 307  # name: a\n/z /y 301  # name: z\n');
  assert.deepEqual(c.list(store, req).map((r) => r.metadata.name), ['a', 'z']);
  c.delete(store, req, 'a');
  c.delete(store, req, 'z');
  assert.equal(fs.readFileSync(file(), 'utf8'), '# Kept\n/legacy /elsewhere 302\n\n');
});

test('not-found', () => {
  rejects(() => c.get(store, req, 'nope'), 'not-found', /default\/nope not found/);
  rejects(() => c.delete(store, req, 'nope'), 'not-found', /not found/);
  c.put(store, req, 'a', resource('a', { from: '/a', to: '/b' }));
  rejects(() => c.get(store, req, 'nope'), 'not-found', /not found/);
  rejects(() => c.get(store, { ...req, namespace: 'other' }, 'a'), 'not-found', /other\/a/);
});

test('invalid requests', () => {
  rejects(() => c.list(store, { ...req, kind: 'Flag' }), 'invalid', /kind Redirect/);
  rejects(() => c.list(store, { ...req, namespace: '../etc' }), 'invalid', /namespace/);
  rejects(() => c.get(store, req, 'Bad_Name'), 'invalid', /DNS-1123/);
  const ok = { from: '/a', to: '/b' };
  rejects(() => c.put(store, req, 'a', resource('b', ok)), 'invalid', /metadata.name "b"/);
  rejects(() => c.put(store, req, 'a', resource('a', ok, { kind: 'Other' })), 'invalid', /kind "Other"/);
  rejects(() => c.put(store, req, 'a', resource('a', ok, { apiVersion: 'web.example.com/v2' })), 'invalid', /apiVersion/);
  rejects(() => c.put(store, req, 'a', resource('a', ok, {
    metadata: { namespace: 'prod', name: 'a' },
  })), 'invalid', /metadata.namespace "prod"/);
  rejects(() => c.put(store, req, 'a', resource('a', ok, {
    metadata: { namespace: 'default', name: 'a', labels: [['team', 'web']] },
  })), 'invalid', /labels/);
  rejects(() => c.put(store, req, 'a', resource('a', { ...ok, status: 200 })), 'invalid', /spec.status/);
  rejects(() => c.put(store, req, 'a', resource('a', { ...ok, extra: true })), 'invalid', /spec.extra/);
  rejects(() => c.put(store, req, 'a', { ...resource('a', ok), spec: '{' }), 'invalid', /not JSON/);
  assert.ok(!fs.existsSync(file()), 'nothing written by a refused put');
  // Empty labels are as good as none: there is nothing to lose.
  c.put(store, req, 'a', resource('a', ok, { metadata: { namespace: 'default', name: 'a', labels: [], annotations: undefined } }));
});

test('a malformed named line fails every call on that namespace, naming the line', () => {
  fs.mkdirSync(path.dirname(file()));
  fs.writeFileSync(file(), '/a /b # name: a\n/c /d 200 # name: c\n');
  for (const f of [
    () => c.list(store, req),
    () => c.get(store, req, 'a'),
    () => c.put(store, req, 'x', resource('x', { from: '/x', to: '/y' })),
    () => c.delete(store, req, 'a'),
  ]) {
    rejects(f, 'failed', /default\/_redirects line 2: rule "c": spec.status/);
  }
  assert.equal(fs.readFileSync(file(), 'utf8'), '/a /b # name: a\n/c /d 200 # name: c\n');
});
