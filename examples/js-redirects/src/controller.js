// The controller's four calls over a small store interface, so the same code runs in the
// component (src/wasi-store.js) and under `node --test` (test/node-store.js).
//
// A store reads and writes files by paths relative to the tree root:
//   read(path)              -> string, or null when the file does not exist
//   writeAtomic(path, text) -> creates the parent directory if needed, writes a temporary
//                              file in the same directory and renames it over `path`
//   remove(path)
import {
  FormatError, deleteRule, isLabel, putRule, rules, specProblem,
} from './redirects.js';

export const GROUP = 'web.example.com';
export const VERSION = 'v1';
export const KIND = 'Redirect';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const FILE = '_redirects';

/** A failure the API reports: `tag` is the WIT `error` case, the message reaches the client. */
export class CupError extends Error {
  constructor(tag, message) {
    super(message);
    this.tag = tag;
  }
}
const notFound = (m) => new CupError('not-found', m);
const invalid = (m) => new CupError('invalid', m);
const failed = (m) => new CupError('failed', m);

function checkRequest(req) {
  if (req.kind !== KIND) throw invalid(`this controller serves kind ${KIND}, not ${JSON.stringify(req.kind)}`);
  if (!isLabel(req.namespace)) throw invalid(`namespace ${JSON.stringify(req.namespace)} is not a DNS-1123 label`);
  return `${req.namespace}/${FILE}`;
}

function checkName(name) {
  if (!isLabel(name)) throw invalid(`name ${JSON.stringify(name)} is not a DNS-1123 label (lowercase letters, digits and -, at most 63)`);
}

// Parses the file, reporting a malformed named rule as `failed`: the request is fine, the
// stored file is not, and the message says which line to fix.
function withFormat(path, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof FormatError) throw failed(`${path} ${e.message}`);
    throw e;
  }
}

function toResource(namespace, { name, spec }) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { namespace, name, labels: undefined, annotations: undefined },
    spec: JSON.stringify(spec),
  };
}

function isEmptyPairs(pairs) {
  return pairs === undefined || pairs === null || pairs.length === 0;
}

export function get(store, req, name) {
  const path = checkRequest(req);
  checkName(name);
  const content = store.read(path);
  const rule = content === null ? undefined
    : withFormat(path, () => rules(content)).find((r) => r.name === name);
  if (!rule) throw notFound(`redirect ${req.namespace}/${name} not found`);
  return toResource(req.namespace, rule);
}

export function list(store, req) {
  const path = checkRequest(req);
  const content = store.read(path);
  if (content === null) return [];
  return withFormat(path, () => rules(content)).map((r) => toResource(req.namespace, r));
}

export function put(store, req, name, res) {
  const path = checkRequest(req);
  checkName(name);
  if (res.apiVersion !== API_VERSION) throw invalid(`apiVersion must be ${API_VERSION}, not ${JSON.stringify(res.apiVersion)}`);
  if (res.kind !== req.kind) throw invalid(`kind ${JSON.stringify(res.kind)} does not match the request's ${req.kind}`);
  if (res.metadata.namespace !== req.namespace) throw invalid(`metadata.namespace ${JSON.stringify(res.metadata.namespace)} does not match the request's ${JSON.stringify(req.namespace)}`);
  if (res.metadata.name !== name) throw invalid(`metadata.name ${JSON.stringify(res.metadata.name)} does not match the request's ${JSON.stringify(name)}`);
  // A _redirects line has nowhere to keep them; dropping them silently would lose data.
  if (!isEmptyPairs(res.metadata.labels)) throw invalid('labels cannot be stored in a _redirects file');
  if (!isEmptyPairs(res.metadata.annotations)) throw invalid('annotations cannot be stored in a _redirects file');
  let spec;
  try {
    spec = JSON.parse(res.spec);
  } catch (e) {
    throw invalid(`spec is not JSON: ${e.message}`);
  }
  const problem = specProblem(spec);
  if (problem) throw invalid(problem);
  const content = store.read(path);
  store.writeAtomic(path, withFormat(path, () => putRule(content, name, spec)));
}

// `delete` is a reserved word for a function declaration, not for an export name.
function remove(store, req, name) {
  const path = checkRequest(req);
  checkName(name);
  const content = store.read(path);
  const result = withFormat(path, () => deleteRule(content, name));
  if (!result.found) throw notFound(`redirect ${req.namespace}/${name} not found`);
  if (result.content === null) store.remove(path);
  else store.writeAtomic(path, result.content);
}
export { remove as delete };
