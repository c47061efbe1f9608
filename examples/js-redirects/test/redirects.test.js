import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FormatError, deleteRule, formatRule, isLabel, parse, putRule, rules, specProblem,
} from '../src/redirects.js';

const FILE = [
  '# Moved pages',
  '/old /new 301  # name: old-docs',
  '',
  '/blog/* https://blog.example.com/:splat 302',
  '/x https://example.com/a#frag 308 # name: frag',
  '/short /s # name: short',
  '',
].join('\n');

test('named rules are served, in file order; other lines are not', () => {
  assert.deepEqual(rules(FILE), [
    { name: 'old-docs', spec: { from: '/old', to: '/new', status: 301 } },
    { name: 'frag', spec: { from: '/x', to: 'https://example.com/a#frag', status: 308 } },
    { name: 'short', spec: { from: '/short', to: '/s', status: 301 } },
  ]);
});

test('a comment line that looks like a name comment is a comment', () => {
  assert.deepEqual(rules('# /a /b # name: a\n   # name: b\n'), []);
});

test('put replaces the named line in place and keeps every other byte', () => {
  const out = putRule(FILE, 'old-docs', { from: '/old', to: '/newer', status: 308 });
  assert.equal(out, FILE.replace('/old /new 301  # name: old-docs', '/old /newer 308  # name: old-docs'));
});

test('put appends a new rule, adding the missing final line break', () => {
  assert.equal(putRule('/a /b  # name: a', 'c', { from: '/c', to: '/d' }), '/a /b  # name: a\n/c /d 301  # name: c\n');
  assert.equal(putRule(null, 'c', { from: '/c', to: '/d', status: 302 }), '/c /d 302  # name: c\n');
});

test('CRLF files stay CRLF', () => {
  const crlf = '# top\r\n/a /b # name: a\r\n';
  assert.equal(putRule(crlf, 'a', { from: '/a', to: '/z' }), '# top\r\n/a /z 301  # name: a\r\n');
  assert.equal(putRule(crlf, 'b', { from: '/b', to: '/c' }), crlf + '/b /c 301  # name: b\r\n');
  assert.deepEqual(deleteRule(crlf, 'a'), { found: true, content: '# top\r\n' });
});

test('delete removes only the named line', () => {
  assert.deepEqual(deleteRule(FILE, 'frag'), {
    found: true,
    content: FILE.replace('/x https://example.com/a#frag 308 # name: frag\n', ''),
  });
  assert.deepEqual(deleteRule(FILE, 'nope'), { found: false });
  assert.deepEqual(deleteRule(null, 'nope'), { found: false });
});

test('delete of the last rule asks for the file to go only when nothing but blank lines remain', () => {
  assert.deepEqual(deleteRule('\n/a /b # name: a\n  \n', 'a'), { found: true, content: null });
  assert.deepEqual(deleteRule('# keep me\n/a /b # name: a\n', 'a'), { found: true, content: '# keep me\n' });
  assert.deepEqual(deleteRule('/x /y\n/a /b # name: a\n', 'a'), { found: true, content: '/x /y\n' });
});

test('a malformed named rule is an error naming its line', () => {
  for (const [text, message] of [
    ['\n/a /b 200 # name: a', /line 2: .*status.*301, 302, 307, 308/],
    ['/a /b 301! # name: a', /line 1: .*status "301!"/],
    ['/a # name: a', /line 1: .*FROM TO \[STATUS\], found 1/],
    ['/a /b 301 Country=nz # name: a', /found 4 fields/],
    ['a /b # name: a', /spec.from/],
    ['/a ftp://x # name: a', /spec.to/],
    ['/a /b # name: Not_A_Label', /not a DNS-1123 label/],
    ['/a /b # name: a\n/c /d # name: a', /line 2: name "a" is already used on line 1/],
  ]) {
    assert.throws(() => parse(text), (e) => e instanceof FormatError && message.test(e.message), text);
  }
});

test('specProblem mirrors the schema', () => {
  assert.equal(specProblem({ from: '/a', to: '/b' }), null);
  assert.equal(specProblem({ from: '/a', to: 'https://e.com/x?y=1#z', status: 307 }), null);
  assert.match(specProblem({ to: '/b' }), /spec.from: required/);
  assert.match(specProblem({ from: '/a', to: '/b', status: 200 }), /spec.status/);
  assert.match(specProblem({ from: '/a', to: '/b', status: '301' }), /spec.status/);
  assert.match(specProblem({ from: '/a', to: '/b', extra: 1 }), /spec.extra: unknown field/);
  assert.match(specProblem({ from: '/a b', to: '/b' }), /whitespace/);
  assert.match(specProblem({ from: '/a', to: '/b\u0000' }), /control/);
  assert.match(specProblem({ from: '/a', to: 'mailto:x' }), /spec.to/);
  assert.match(specProblem([]), /object/);
});

test('formatRule writes the status explicitly', () => {
  assert.equal(formatRule('a', { from: '/a', to: '/b' }), '/a /b 301  # name: a');
});

test('isLabel', () => {
  assert.ok(isLabel('a'));
  assert.ok(isLabel('old-docs-2'));
  for (const bad of ['', '-a', 'a-', 'A', 'a_b', 'a.b', '../x', 'a'.repeat(64)]) assert.ok(!isLabel(bad), bad);
});
