// @ts-check
// The `manifest` poller in JavaScript (componentize-js, WIT dispatch:poller@0.2.0).
//
// Each folder of the root is sent, as one directory transfer, once its
// manifest (`manifest.json` by default) lists files that are all present with
// the listed sizes. A folder that is not ready is logged at debug level with
// the reason, which the agent shows on the poller's page.
//
// Build: npm run build (see README.md). Types: poller.d.ts. In short: enums
// are strings ('dir'), variants are {tag, val}, u64 values (size, mtimeMs,
// nowMs) are bigint, an import returning result<T, string> returns T or throws
// a ComponentError whose `payload` is the text, and poll fails by throwing a
// string (throwing anything else traps).

import { listDir, readFile } from 'dispatch:poller/fs@0.2.0';
import { log } from 'dispatch:poller/log@0.2.0';

// The host refuses larger files anyway; asking for its bound keeps the error
// text the host's own.
const MAX_MANIFEST_BYTES = 1048576;

/**
 * The text of an error thrown by an import (a ComponentError: its `payload`).
 * @param {unknown} e
 */
function errorText(e) {
  if (typeof e === 'string') return e;
  const payload = /** @type {{payload?: unknown}} */ (e)?.payload;
  if (typeof payload === 'string') return payload;
  return String(e);
}

const U64_MAX = 2n ** 64n - 1n;

/**
 * A JSON.parse reviver reading literals such as `1048576` exactly, as bigint
 * (sizes are u64; a double is exact only up to 2^53). `context.source` is the
 * literal's text; `5.0`, `-1` or `1e3` stay numbers, which are not sizes.
 * @param {string} _key
 * @param {unknown} value
 * @param {{source?: string}} [context] (optional only for TypeScript's lib, which lacks it)
 */
function wholeNumbersAsBigInt(_key, value, context) {
  const source = context?.source ?? '';
  return typeof value === 'number' && /^[0-9]+$/.test(source) ? BigInt(source) : value;
}

/** A manifest without the expected shape; `reason` says why. */
class Invalid {
  /** @param {string} reason */
  constructor(reason) {
    this.reason = reason;
  }
}

/**
 * The [name, size] pairs of a manifest, in its order, or throws an Invalid.
 * @param {Uint8Array} bytes
 * @returns {[string, bigint][]}
 */
function parseManifest(bytes) {
  let doc;
  try {
    // ignoreBOM keeps a byte-order mark, which JSON (and so JSON.parse) refuses.
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    doc = JSON.parse(text, wholeNumbersAsBigInt);
  } catch (e) {
    throw new Invalid(e instanceof SyntaxError ? e.message : 'not UTF-8');
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Invalid('not a JSON object');
  }
  if (!Array.isArray(doc.files)) throw new Invalid('`files` is not an array');
  return doc.files.map((/** @type {any} */ item, /** @type {number} */ i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      throw new Invalid(`files[${i}] is not an object`);
    }
    const { name, size } = item;
    if (typeof name !== 'string') throw new Invalid(`files[${i}].name is not a string`);
    if (typeof size !== 'bigint' || size > U64_MAX) {
      throw new Invalid(`files[${i}].size is not a whole number of bytes`);
    }
    if (name === '' || name.startsWith('/') || name.split('/').includes('..')) {
      throw new Invalid(`files[${i}].name \`${name}\` is empty, absolute or has a \`..\``);
    }
    return /** @type {[string, bigint]} */ ([name, size]);
  });
}

/**
 * The entries of the directory `path` by name, read once per directory: a
 * host call per folder rather than one per listed file.
 * @param {Map<string, Map<string, import('dispatch:poller/types@0.2.0').Entry> | null>} cache
 * @param {string} path
 */
function entriesOf(cache, path) {
  let entries = cache.get(path);
  if (entries === undefined) {
    entries = new Map(listDir(path).map((e) => [e.name, e]));
    cache.set(path, entries);
  }
  return entries;
}

/**
 * The entry of `name` (which may hold `/`) inside `folder`, or undefined when
 * it, or a folder on its way, is missing. Symlinks are not followed: a
 * directory transfer does not send them.
 * @param {Map<string, Map<string, import('dispatch:poller/types@0.2.0').Entry> | null>} cache
 * @param {string} folder
 * @param {string} name
 */
function lookUp(cache, folder, name) {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  let dir = folder;
  for (const [i, part] of parts.entries()) {
    const entry = entriesOf(cache, dir).get(part);
    if (entry === undefined || i === parts.length - 1) return entry;
    if (entry.kind !== 'dir') return undefined;
    dir = `${dir}/${part}`;
  }
  return undefined;
}

/**
 * Why `folder` is not ready yet, or null when it is.
 * @param {string} folder
 * @param {string} manifest
 * @returns {string | null}
 */
function notReadyReason(folder, manifest) {
  const cache = new Map();
  let bytes;
  try {
    if (lookUp(cache, folder, manifest) === undefined) return `no ${manifest}`;
    bytes = readFile(`${folder}/${manifest}`, MAX_MANIFEST_BYTES);
  } catch (e) {
    return errorText(e);
  }
  let files;
  try {
    files = parseManifest(bytes);
  } catch (e) {
    if (e instanceof Invalid) return `${manifest} is not valid: ${e.reason}`;
    throw e;
  }
  for (const [name, size] of files) {
    let entry;
    try {
      entry = lookUp(cache, folder, name);
    } catch (e) {
      return errorText(e);
    }
    if (entry === undefined) return `missing ${name}`;
    if (entry.kind !== 'file') return `${name} is not a file`;
    if (entry.size !== size) return `${name} is ${entry.size} bytes, the manifest says ${size}`;
  }
  return null;
}

/**
 * @param {Map<string, string>} params
 * @param {string} name
 */
function boolean(params, name) {
  const value = params.get(name) ?? 'false';
  if (value !== 'true' && value !== 'false') {
    throw `parameter \`${name}\` must be true or false, not \`${value}\``;
  }
  return value === 'true';
}

/** @type {import('dispatch:poller/types@0.2.0').Plugin} */
export const plugin = {
  describe() {
    return {
      name: 'manifest',
      version: '0.1.0',
      description:
        'Sends each folder of the root once its manifest lists files that are all present with the listed sizes.',
      params: [
        {
          name: 'manifest',
          type: 'text',
          default: 'manifest.json',
          help: "The manifest's file name inside each folder",
        },
        {
          name: 'include_hidden',
          type: 'boolean',
          default: 'false',
          help: "Also consider names starting with '.' (often partial uploads)",
        },
      ],
    };
  },

  poll(request) {
    const params = new Map(request.params.map((p) => [p.name, p.value]));
    const manifest = params.get('manifest') ?? 'manifest.json';
    const includeHidden = boolean(params, 'include_hidden');
    let entries;
    try {
      entries = listDir(''); // sorted by name, in byte order
    } catch (e) {
      throw errorText(e);
    }
    /** @type {import('dispatch:poller/types@0.2.0').Action[]} */
    const actions = [];
    for (const e of entries) {
      if (e.kind !== 'dir' || (!includeHidden && e.name.startsWith('.'))) continue;
      const reason = notReadyReason(e.name, manifest);
      if (reason === null) {
        actions.push({ tag: 'transfer', val: { path: e.name, kind: 'dir' } });
      } else {
        log('debug', `not ready: ${e.name}: ${reason}`);
      }
    }
    return actions;
  },
};
