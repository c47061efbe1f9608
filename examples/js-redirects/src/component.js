// The component's entry point: cup:controller/controller@0.1.0 as componentize-js expects
// it, an exported object named after the interface whose methods are the WIT functions.
//
// The WIT `error` variant is returned by throwing `{ tag, val }`: componentize-js turns a
// thrown value into the `err` case of the function's `result`, reading the case from `tag`
// and its string from `val`. Anything else thrown (a TypeError, an Error without a known
// tag) cannot be lowered and traps the instance, which cupd reports as a crash, not as a
// message; so every exception is translated here.
import * as controllerImpl from './controller.js';
import * as store from './wasi-store.js';

const TAGS = new Set(['not-found', 'invalid', 'failed']);

function call(f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof controllerImpl.CupError && TAGS.has(e.tag)) {
      throw { tag: e.tag, val: e.message };
    }
    throw { tag: 'failed', val: String(e && e.message ? e.message : e) };
  }
}

export const controller = {
  get: (req, name) => call(() => controllerImpl.get(store, req, name)),
  list: (req) => call(() => controllerImpl.list(store, req)),
  put: (req, name, res) => call(() => controllerImpl.put(store, req, name, res)),
  delete: (req, name) => call(() => controllerImpl.delete(store, req, name)),
};
