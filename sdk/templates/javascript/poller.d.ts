// TypeScript types for WIT `dispatch:poller/poller@0.2.0` as componentize-js
// 0.23.0 passes it to JavaScript (checked against a build run by the agent).
// Use them from plain JS with `// @ts-check` and JSDoc, as app.js does, or
// from a TypeScript source compiled to JS before componentize-js.
//
// Mapping: records are plain objects with camelCase fields (`mtime-ms` ->
// `mtimeMs`); enums are their WIT names as strings; variants are
// `{ tag, val }`; `u64` is `bigint`, `u32` is `number`; `option<T>` is
// `T | undefined`; `list<u8>` is `Uint8Array`. An import returning
// `result<T, string>` returns T or throws a `ComponentError` whose `payload`
// is the error text. An export returning `result<T, string>` fails by
// throwing a string (throwing anything else traps the instance).

declare module 'dispatch:poller/types@0.2.0' {
  /** Symlinks are reported as `symlink` and never followed in listings. */
  export type EntryKind = 'file' | 'dir' | 'symlink' | 'other';

  export interface Entry {
    /** The entry's own name (one path component, no `/`). */
    name: string;
    kind: EntryKind;
    /** Size in bytes (0 for directories). */
    size: bigint;
    /** Last modification, milliseconds since the Unix epoch. */
    mtimeMs: bigint;
  }

  export type ParamType = 'text' | 'boolean' | 'integer' | 'text-list';

  export interface ParamSpec {
    /** Lowercase with underscores, e.g. `include_hidden`. */
    name: string;
    type: ParamType;
    /** `undefined` makes the parameter required. */
    default: string | undefined;
    help: string;
  }

  export interface Info {
    name: string;
    /** Semver, e.g. `1.2.0`. */
    version: string;
    description: string;
    params: ParamSpec[];
  }

  export interface Param {
    name: string;
    value: string;
  }

  export interface PollRequest {
    /** Every parameter of the schema, defaults filled in by the host. */
    params: Param[];
    /** The host's clock; use it rather than `Date.now()`, which builds may freeze. */
    nowMs: bigint;
  }

  export type ItemKind = 'file' | 'dir';

  export interface Transfer {
    /** Relative to the root, `/`-separated. */
    path: string;
    kind: ItemKind;
  }

  export type FollowUp =
    | { tag: 'touch'; val: string }
    | { tag: 'remove-dir'; val: string };

  export interface Group {
    transfers: Transfer[];
    then: FollowUp[];
  }

  export type Action =
    | { tag: 'transfer'; val: Transfer }
    | { tag: 'touch'; val: string }
    | { tag: 'remove-dir'; val: string }
    | { tag: 'group'; val: Group };

  /** What an import throws when its `result` is an error. */
  export interface ComponentError {
    payload: string;
  }

  /**
   * The exported `plugin` interface: the module's `export const plugin`.
   * A failed poll throws a one-line string.
   */
  export interface Plugin {
    describe(): Info;
    poll(request: PollRequest): Action[];
  }
}

declare module 'dispatch:poller/fs@0.2.0' {
  import type { Entry } from 'dispatch:poller/types@0.2.0';

  /** A directory read in pages; only `openDir` makes one. */
  export class Listing {
    private constructor();
    /** At most `max` entries (4,096 at most), unsorted; `[]` when done. Throws a ComponentError. */
    next(max: number): Entry[];
  }

  /** Throws a ComponentError (e.g. a missing directory). */
  export function openDir(path: string): Listing;
  /** Sorted by name (byte order). Throws a ComponentError. */
  export function listDir(path: string): Entry[];
  /** `undefined` when nothing is there. Throws a ComponentError (e.g. a path outside the root). */
  export function stat(path: string): Entry | undefined;
  /** At most `maxBytes` and the host's bound of 1 MiB. Throws a ComponentError. */
  export function readFile(path: string, maxBytes: number): Uint8Array;
}

declare module 'dispatch:poller/log@0.2.0' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  export function log(level: Level, message: string): void;
}
