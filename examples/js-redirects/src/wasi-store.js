// The store of src/controller.js on WASI 0.2 filesystem calls: StarlingMonkey has no `fs`
// module, so the component imports wasi:filesystem (see wit/redirects.wit) and works on the
// descriptor cupd preopens at `/`.
//
// Nothing here runs at module load: componentize-js evaluates the top level of the module
// at build time (snapshotting the heap), when there is no tree to open.
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// Host calls that return `result<_, error-code>` throw an object whose `payload` is the
// error code as a string (`no-entry`, `exist`, …).
const code = (e) => (e && typeof e.payload === 'string' ? e.payload : undefined);

function fsError(op, path, e) {
  return new Error(`${op} ${path}: ${code(e) ?? e}`);
}

function root() {
  const preopen = getDirectories().find(([, path]) => path === '/');
  if (!preopen) throw new Error('no directory is preopened at /');
  return preopen[0];
}

function drop(resource) {
  resource[Symbol.dispose]?.();
}

const CHUNK = 65536n;

export function read(path) {
  const dir = root();
  let fd;
  try {
    fd = dir.openAt({}, path, {}, { read: true });
  } catch (e) {
    if (code(e) === 'no-entry') return null;
    throw fsError('open', path, e);
  }
  try {
    const chunks = [];
    let offset = 0n;
    for (;;) {
      let bytes, end;
      try {
        [bytes, end] = fd.read(CHUNK, offset);
      } catch (e) {
        throw fsError('read', path, e);
      }
      chunks.push(bytes);
      offset += BigInt(bytes.length);
      if (end || bytes.length === 0) break;
    }
    const all = new Uint8Array(Number(offset));
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(all);
    } catch {
      throw new Error(`${path} is not UTF-8`);
    }
  } finally {
    drop(fd);
  }
}

export function writeAtomic(path, text) {
  const dir = root();
  const slash = path.lastIndexOf('/');
  const parent = slash < 0 ? '.' : path.slice(0, slash);
  if (slash >= 0) {
    try {
      dir.createDirectoryAt(parent);
    } catch (e) {
      if (code(e) !== 'exist') throw fsError('mkdir', parent, e);
    }
  }
  const base = slash < 0 ? path : path.slice(slash + 1);
  const tmp = `${parent}/.${base}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`;
  const bytes = new TextEncoder().encode(text);
  let fd;
  try {
    fd = dir.openAt({}, tmp, { create: true, exclusive: true }, { write: true });
  } catch (e) {
    throw fsError('create', tmp, e);
  }
  try {
    let done = 0;
    while (done < bytes.length) {
      done += Number(fd.write(bytes.subarray(done), BigInt(done)));
    }
    fd.syncData();
    drop(fd);
    fd = undefined;
    dir.renameAt(tmp, dir, path);
  } catch (e) {
    if (fd) drop(fd);
    try {
      dir.unlinkFileAt(tmp);
    } catch {
      // The rename error below is the one worth reporting.
    }
    throw fsError('write', path, e);
  }
}

export function remove(path) {
  try {
    root().unlinkFileAt(path);
  } catch (e) {
    throw fsError('remove', path, e);
  }
}
