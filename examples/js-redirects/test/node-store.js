// The store of src/controller.js on node:fs, rooted at a directory: what the component's
// WASI store does, for tests run by plain node.
import fs from 'node:fs';
import path from 'node:path';

export function nodeStore(root) {
  const at = (p) => path.join(root, p);
  return {
    read(p) {
      try {
        return fs.readFileSync(at(p), 'utf8');
      } catch (e) {
        if (e.code === 'ENOENT') return null;
        throw e;
      }
    },
    writeAtomic(p, text) {
      fs.mkdirSync(path.dirname(at(p)), { recursive: true });
      const tmp = path.join(path.dirname(at(p)), `.${path.basename(p)}.${process.pid}.tmp`);
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, at(p));
    },
    remove(p) {
      fs.unlinkSync(at(p));
    },
  };
}
