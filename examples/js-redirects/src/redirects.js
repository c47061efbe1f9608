// The `_redirects` file format, as plain text in and out: no filesystem, no WASI, so that
// `node --test` exercises it directly.
//
// One rule per line, `FROM TO [STATUS]`, fields separated by whitespace, STATUS 301 when
// absent. A rule this controller serves carries its resource name in a trailing comment,
// `/old /new 301  # name: old-docs`. Every other line (blank lines, comments, rules without
// a name comment) is kept byte for byte and never served.

export const STATUSES = [301, 302, 307, 308];
export const DEFAULT_STATUS = 301;

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Whitespace before `#` is required, so a `#` inside a field (a URL fragment) is not a comment.
const NAME_COMMENT = /^(.*?)\s+#\s*name:\s*(\S+)\s*$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A line of the file that cannot be read as a named rule; `line` counts from 1. */
export class FormatError extends Error {
  constructor(line, message) {
    super(`line ${line}: ${message}`);
    this.line = line;
  }
}

/** Whether `s` is a DNS-1123 label: what this controller accepts as a name or namespace. */
export function isLabel(s) {
  return typeof s === 'string' && s.length <= 63 && LABEL.test(s);
}

/**
 * Why `spec` (a parsed JSON value) is not a redirect spec, or null when it is one.
 * The checks mirror the JSON Schema in defs/redirects.json: the file format needs them
 * whoever calls, since a field with whitespace would change the line's meaning.
 */
export function specProblem(spec) {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    return 'spec must be an object';
  }
  for (const key of Object.keys(spec)) {
    if (!['from', 'to', 'status'].includes(key)) return `spec.${key}: unknown field`;
  }
  const { from, to, status } = spec;
  if (typeof from !== 'string') return 'spec.from: required, a string';
  if (!from.startsWith('/')) return 'spec.from: must be an absolute path (start with /)';
  if (/\s/.test(from) || CONTROL.test(from)) return 'spec.from: must not contain whitespace or control characters';
  if (typeof to !== 'string') return 'spec.to: required, a string';
  if (!(to.startsWith('/') || /^https?:\/\/./.test(to))) {
    return 'spec.to: must be a path (start with /) or an http(s) URL';
  }
  if (/\s/.test(to) || CONTROL.test(to)) return 'spec.to: must not contain whitespace or control characters';
  if (status !== undefined && !STATUSES.includes(status)) {
    return `spec.status: must be one of ${STATUSES.join(', ')}`;
  }
  return null;
}

/** `spec` with the status filled in, keys in the order the API returns them. */
export function normalizeSpec(spec) {
  return { from: spec.from, to: spec.to, status: spec.status ?? DEFAULT_STATUS };
}

/** The line `put` writes for a rule. */
export function formatRule(name, spec) {
  const { from, to, status } = normalizeSpec(spec);
  return `${from} ${to} ${status}  # name: ${name}`;
}

/**
 * Reads the rule on one line (without its line break): `{ name, spec }` for a named rule,
 * null for a line this controller leaves alone. Throws FormatError for a line with a name
 * comment that is not a rule this controller can serve: such a line is someone's mistake,
 * and guessing would hide it.
 */
export function parseLine(text, lineNo) {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return null;
  const m = NAME_COMMENT.exec(text);
  if (!m) return null;
  const name = m[2];
  if (!isLabel(name)) {
    throw new FormatError(lineNo, `name ${JSON.stringify(name)} is not a DNS-1123 label`);
  }
  const fields = m[1].trim().split(/\s+/);
  if (fields.length < 2 || fields.length > 3) {
    throw new FormatError(lineNo, `rule ${JSON.stringify(name)} must be FROM TO [STATUS], found ${fields.length} fields`);
  }
  let status;
  if (fields.length === 3) {
    if (!/^[0-9]+$/.test(fields[2])) {
      throw new FormatError(lineNo, `rule ${JSON.stringify(name)}: status ${JSON.stringify(fields[2])} is not one of ${STATUSES.join(', ')}`);
    }
    status = Number(fields[2]);
  }
  const spec = { from: fields[0], to: fields[1], status };
  const problem = specProblem(spec);
  if (problem) throw new FormatError(lineNo, `rule ${JSON.stringify(name)}: ${problem}`);
  return { name, spec: normalizeSpec(spec) };
}

/**
 * Splits a file into lines, each `{ text, eol, rule }`: `eol` is the line break that ended
 * it (`\n`, `\r\n` or `` for a last line without one), `rule` what parseLine found.
 * Throws FormatError also for two lines with the same name.
 */
export function parse(content) {
  const lines = [];
  const seen = new Map();
  const re = /([^\n]*?)(\r?\n|$)/gy;
  let m;
  while (re.lastIndex < content.length && (m = re.exec(content)) !== null) {
    const [, text, eol] = m;
    const rule = parseLine(text, lines.length + 1);
    if (rule) {
      if (seen.has(rule.name)) {
        throw new FormatError(lines.length + 1, `name ${JSON.stringify(rule.name)} is already used on line ${seen.get(rule.name)}`);
      }
      seen.set(rule.name, lines.length + 1);
    }
    lines.push({ text, eol, rule });
  }
  return lines;
}

/** The named rules of a file, in file order. */
export function rules(content) {
  return parse(content).filter((l) => l.rule).map((l) => l.rule);
}

/**
 * The file with rule `name` set to `spec`: its line replaced in place (keeping its line
 * break), or appended when there is none. `content` null means no file yet.
 */
export function putRule(content, name, spec) {
  const line = formatRule(name, spec);
  if (content === null || content === '') return line + '\n';
  const lines = parse(content);
  const at = lines.findIndex((l) => l.rule && l.rule.name === name);
  if (at >= 0) {
    lines[at] = { ...lines[at], text: line };
  } else {
    const last = lines[lines.length - 1];
    const eol = lines.find((l) => l.eol !== '')?.eol ?? '\n';
    if (last.eol === '') last.eol = eol;
    lines.push({ text: line, eol });
  }
  return lines.map((l) => l.text + l.eol).join('');
}

/**
 * The file without rule `name`: `{ found: false }` when there is no such rule, else
 * `{ found: true, content }` where `content` is null when only blank lines would remain
 * (the file should go).
 */
export function deleteRule(content, name) {
  if (content === null) return { found: false };
  const lines = parse(content);
  const at = lines.findIndex((l) => l.rule && l.rule.name === name);
  if (at < 0) return { found: false };
  lines.splice(at, 1);
  if (lines.every((l) => l.text.trim() === '')) return { found: true, content: null };
  return { found: true, content: lines.map((l) => l.text + l.eol).join('') };
}
