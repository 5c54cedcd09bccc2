/**
 * Checking the shape of JSON that crosses a process boundary (the control socket, the registration journal): a few
 * combinators that build a checker from a description, so that a document of the wrong shape is refused with a clear
 * message naming the first wrong field (`counts.lookups: expected an integer, got "x"`), never trusted with a cast.
 * Checked objects are rebuilt from their declared fields only; other fields are dropped.
 *
 * Hand-written rather than a schema library: the shapes are few and flat, and the daemon keeps no runtime
 * dependency beyond yargs (installs often run without network access).
 */

/** Returns `value` as a T, or throws a ShapeError saying where it differs. `at` is the path to `value`. */
export type Shape<T> = (value: unknown, at: string) => T;

/** A field that may be absent (or undefined). */
export interface OptionalShape<T> extends Shape<T | undefined> {
  readonly optional: true;
}

export type ShapeOf<S> = S extends Shape<infer T> ? T : never;

export class ShapeError extends Error {}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

function fail(at: string, expected: string, value: unknown): never {
  throw new ShapeError(`${at || 'the document'}: expected ${expected}, got ${describe(value)}`);
}

export const string: Shape<string> = (v, at) => (typeof v === 'string' ? v : fail(at, 'a string', v));
export const boolean: Shape<boolean> = (v, at) => (typeof v === 'boolean' ? v : fail(at, 'true or false', v));

/** A safe integer from `min` to `max`. */
export function integer(min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): Shape<number> {
  return (v, at) =>
    Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max
      ? (v as number)
      : fail(at, `an integer from ${min} to ${max}`, v);
}

/** A string matching `pattern` (`what` names it in the error). */
export function matching(pattern: RegExp, what: string): Shape<string> {
  return (v, at) => (typeof v === 'string' && pattern.test(v) ? v : fail(at, what, v));
}

export function literal<const T extends string | number | boolean>(...values: readonly T[]): Shape<T> {
  return (v, at) =>
    (values as readonly unknown[]).includes(v)
      ? (v as T)
      : fail(at, values.map((x) => JSON.stringify(x)).join(' or '), v);
}

export function nullable<T>(shape: Shape<T>): Shape<T | null> {
  return (v, at) => (v === null ? null : shape(v, at));
}

export function optional<T>(shape: Shape<T>): OptionalShape<T> {
  return Object.assign((v: unknown, at: string) => (v === undefined ? undefined : shape(v, at)), {
    optional: true as const,
  });
}

/** The first of `shapes` that accepts the value. */
export function either<A, B>(a: Shape<A>, b: Shape<B>, expected: string): Shape<A | B> {
  return (v, at) => {
    for (const shape of [a, b] as const) {
      try {
        return shape(v, at);
      } catch (err) {
        if (!(err instanceof ShapeError)) throw err;
      }
    }
    return fail(at, expected, v);
  };
}

export function array<T>(item: Shape<T>): Shape<T[]> {
  return (v, at) => (Array.isArray(v) ? v.map((x, i) => item(x, `${at}[${i}]`)) : fail(at, 'an array', v));
}

/** An object used as a map: any keys, every value of `value`'s shape. */
export function dictionary<T>(value: Shape<T>): Shape<Record<string, T>> {
  return (v, at) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(at, 'an object', v);
    const out: Record<string, T> = Object.create(null) as Record<string, T>;
    for (const [key, x] of Object.entries(v)) out[key] = value(x, `${at}.${key}`);
    return out;
  };
}

/**
 * The fields of an object shape for the type T, all of them: `{...} satisfies FieldsOf<T>` fails to compile when T
 * gains a field the shape does not check (the checker would silently drop it).
 */
export type FieldsOf<T> = { readonly [K in keyof Required<T>]: Shape<unknown> };

type Fields = Record<string, Shape<unknown>>;
type MandatoryOf<F extends Fields> = {
  -readonly [K in keyof F as F[K] extends OptionalShape<unknown> ? never : K]: ShapeOf<F[K]>;
};
type OptionalsOf<F extends Fields> = {
  -readonly [K in keyof F as F[K] extends OptionalShape<unknown> ? K : never]?: Exclude<ShapeOf<F[K]>, undefined>;
};
export type ObjectOf<F extends Fields> = MandatoryOf<F> & OptionalsOf<F>;

export function object<F extends Fields>(fields: F): Shape<ObjectOf<F>> {
  return (v, at) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(at, 'an object', v);
    const out: Record<string, unknown> = {};
    for (const [key, shape] of Object.entries(fields)) {
      const field = Object.prototype.hasOwnProperty.call(v, key) ? (v as Record<string, unknown>)[key] : undefined;
      const checked = shape(field, at ? `${at}.${key}` : key);
      if (checked !== undefined) out[key] = checked;
    }
    return out as ObjectOf<F>;
  };
}

/** Parses JSON text and checks its shape; throws an Error that starts with `what`. */
export function parseJson<T>(text: string, shape: Shape<T>, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${what}: not JSON (${(err as Error).message})`);
  }
  try {
    return shape(value, '');
  } catch (err) {
    if (err instanceof ShapeError) throw new Error(`${what}: ${err.message}`);
    throw err;
  }
}
